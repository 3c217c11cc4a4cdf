// A small blocking HTTP/1.1 client for once-load: one keep-alive
// connection, one request at a time, every call bounded by a timeout.
// Not thread-safe: one per thread.
#ifndef ONCE_TESTS_BENCH_LOAD_HTTP_H_
#define ONCE_TESTS_BENCH_LOAD_HTTP_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/verb.hpp"

namespace once::load {

struct HttpReply {
  int status = 0;
  std::string body;
};

class HttpClient {
 public:
  static absl::StatusOr<std::unique_ptr<HttpClient>> Connect(const std::string& host, uint16_t port,
                                                             std::chrono::milliseconds timeout);

  // Sends one request (a JSON body when `body` is not empty) and reads
  // the answer. kDeadlineExceeded after `timeout`, kUnavailable when the
  // connection fails; either leaves the client unusable.
  absl::StatusOr<HttpReply> Request(boost::beast::http::verb verb, const std::string& target,
                                    absl::string_view body, std::chrono::milliseconds timeout);

 private:
  HttpClient(const std::string& host, uint16_t port);
  // Runs the io_context until `done` or the deadline.
  bool RunUntil(const bool& done, std::chrono::steady_clock::time_point deadline);

  std::string host_header_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool broken_ = false;
};

// `reply` when its status is `expected` (or either of two), else an error
// naming `what`, the status and the body.
absl::Status ExpectStatus(const absl::StatusOr<HttpReply>& reply, absl::string_view what,
                          int expected, int also = 0);

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_HTTP_H_
