// One HTTP exchange as the API layer sees it: the request a session read
// (ApiRequest), the answer a handler gives (ApiResponse), and the handle
// through which it gives it (Responder). This layer knows nothing of
// Beast or sockets, so that the router and the handlers can be tested
// without a network.
#ifndef ONCE_COORDINATOR_API_EXCHANGE_H_
#define ONCE_COORDINATOR_API_EXCHANGE_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace once::coordinator {

struct ApiRequest {
  std::string method;  // "GET", "PUT", ... as sent
  std::string target;  // the request-target as sent: path and query
  // Filled by the router: the values of the route's {placeholders},
  // percent-decoded.
  absl::flat_hash_map<std::string, std::string> params;
  // The headers the API reads; empty when absent.
  std::string content_type;
  std::string idempotency_key;
  bool has_idempotency_key = false;
  std::string body;

  // The param's value, or "" when the route has no such placeholder.
  const std::string& param(absl::string_view name) const;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers, e.g. Allow on a 405.
  std::vector<std::pair<std::string, std::string>> headers;
  // Ask the session to close the connection after this response.
  bool close = false;
};

// The one-shot channel through which a handler answers. Copies share one
// state: the first Send wins and later ones are ignored (and logged). If
// every copy is destroyed without a Send, a 500 is sent instead, so a
// handler that loses track of a request can never leave a client hanging.
//
// Thread-safe: Send may be called from any thread (the session posts the
// response to its own strand).
class Responder {
 public:
  using SendFn = std::function<void(ApiResponse)>;

  explicit Responder(SendFn send);

  void Send(ApiResponse response) const;
  // True once Send ran (on some copy).
  bool sent() const;

 private:
  class State;
  std::shared_ptr<State> state_;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_API_EXCHANGE_H_
