// Router: maps (method, path) to a handler. Routes are patterns of
// '/'-separated segments where "{name}" matches any one non-empty segment
// and captures it, percent-decoded, into ApiRequest::params:
//
//   router.Add("PUT", "/v1/topics/{topic}", handler);
//
// A path that matches no pattern is 404 route_not_found; one that matches
// a pattern under other methods only is 405 method_not_allowed with an
// Allow header. The query string is ignored for matching. Routes are
// added before the router is shared; Dispatch is then thread-safe.
#ifndef ONCE_COORDINATOR_ROUTER_H_
#define ONCE_COORDINATOR_ROUTER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/api_exchange.h"

namespace once::coordinator {

class Router {
 public:
  // Handlers answer through the Responder exactly once, from any thread,
  // and must not block for long (run blocking work elsewhere).
  using Handler = std::function<void(ApiRequest request, Responder responder)>;

  // `pattern` must start with '/'. Adding the same method and pattern
  // twice is a programming error (the second is ignored and logged).
  void Add(absl::string_view method, absl::string_view pattern, Handler handler);

  // Fills request.params and calls the matching handler, or answers the
  // routing error itself.
  void Dispatch(ApiRequest request, Responder responder) const;

  struct Match {
    const Handler* handler = nullptr;
    std::vector<std::pair<std::string, std::string>> params;
  };
  // The routing decision alone: kNotFound (route_not_found),
  // kInvalidArgument (bad_request: a target that is not an absolute path,
  // bad percent-encoding), or method_not_allowed; `allow` receives the
  // allowed methods for the last. Exposed for tests.
  absl::StatusOr<Match> Find(absl::string_view method, absl::string_view target,
                             std::string* allow = nullptr) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{x}" for a placeholder
    Handler handler;
  };
  std::vector<Route> routes_;
};

// Splits the path of `target` (before any '?' or '#') into its segments,
// percent-decoded. kInvalidArgument when the target is not an
// origin-form path ("/..."), a segment has bad percent-encoding or
// decodes to a NUL or '/'. An empty path "/" has no segments; empty
// segments ("//", a trailing '/') are kept as "".
absl::StatusOr<std::vector<std::string>> SplitPath(absl::string_view target);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_ROUTER_H_
