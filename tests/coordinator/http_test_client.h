// A blocking HTTP/1.1 client for tests, on Boost.Beast, in which every
// operation has a deadline: it runs its own io_context for at most the
// timeout and closes the socket when time is up. One connection,
// reconnected on demand.
#ifndef ONCE_TESTS_COORDINATOR_HTTP_TEST_CLIENT_H_
#define ONCE_TESTS_COORDINATOR_HTTP_TEST_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/json/value.hpp"

namespace once::testing {

struct HttpResult {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool keep_alive = true;

  // The header's value, or "" when absent (case-insensitive name).
  std::string header(absl::string_view name) const;
  // The body parsed as JSON (null when it is not JSON).
  boost::json::value json() const;
  // error.code of an error body, or "".
  std::string error_code() const;
};

class HttpTestClient {
 public:
  explicit HttpTestClient(uint16_t port,
                          std::chrono::milliseconds timeout = std::chrono::seconds(15));
  ~HttpTestClient();

  absl::Status Connect();
  bool connected() const { return socket_.is_open(); }
  void Close();

  // Sends one request (connecting first if needed) and reads the answer.
  // A non-empty body gets Content-Type: application/json unless
  // `headers` sets one.
  absl::StatusOr<HttpResult> Request(
      absl::string_view method, absl::string_view target, absl::string_view body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Convenience: Request with a JSON body.
  absl::StatusOr<HttpResult> Json(absl::string_view method, absl::string_view target,
                                  const boost::json::value& body);

  // Raw bytes on the connection (connecting first if needed).
  absl::Status SendRaw(absl::string_view bytes);
  absl::StatusOr<HttpResult> ReadResponse();

  // Waits up to `timeout` for the server to close the connection: OK when
  // it did (EOF or reset), kDeadlineExceeded when it stayed open.
  absl::Status WaitForClose(std::chrono::milliseconds timeout);

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  // Runs the io_context until `done` or the deadline; on the deadline
  // closes the socket (or, with `keep_open`, only cancels the operation)
  // and lets the cancelled handler run.
  bool RunUntil(const bool& done, std::chrono::milliseconds timeout, bool keep_open = false);

  const uint16_t port_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace once::testing

#endif  // ONCE_TESTS_COORDINATOR_HTTP_TEST_CLIENT_H_
