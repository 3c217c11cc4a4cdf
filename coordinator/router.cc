#include "coordinator/router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/api_error.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

bool IsPlaceholder(absl::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (size_t i = 0; i < segment.size(); ++i) {
    char c = segment[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= segment.size()) {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      absl::StrCat("bad percent-encoding in path segment \"", segment, "\""));
    }
    const int hi = HexValue(segment[i + 1]), lo = HexValue(segment[i + 2]);
    if (hi < 0 || lo < 0) {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      absl::StrCat("bad percent-encoding in path segment \"", segment, "\""));
    }
    const char decoded = static_cast<char>(hi * 16 + lo);
    if (decoded == '\0' || decoded == '/') {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      absl::StrCat("path segment \"", segment, "\" encodes a NUL or '/'"));
    }
    out.push_back(decoded);
    i += 2;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> SplitPath(absl::string_view target) {
  if (target.empty() || target.front() != '/') {
    return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                    "the request target must be an absolute path starting with '/'");
  }
  absl::string_view path = target.substr(0, target.find_first_of("?#"));
  std::vector<std::string> segments;
  if (path == "/") return segments;
  for (absl::string_view raw : absl::StrSplit(path.substr(1), '/')) {
    absl::StatusOr<std::string> segment = PercentDecode(raw);
    if (!segment.ok()) return segment.status();
    segments.push_back(*std::move(segment));
  }
  return segments;
}

void Router::Add(absl::string_view method, absl::string_view pattern, Handler handler) {
  for (const Route& r : routes_) {
    if (r.method == method && r.pattern == pattern) {
      spdlog::error("route {} {} added twice; keeping the first", std::string(method),
                    std::string(pattern));
      return;
    }
  }
  Route route;
  route.method = std::string(method);
  route.pattern = std::string(pattern);
  if (pattern != "/") {
    route.segments = absl::StrSplit(pattern.substr(pattern.empty() ? 0 : 1), '/');
  }
  route.handler = std::move(handler);
  routes_.push_back(std::move(route));
}

absl::StatusOr<Router::Match> Router::Find(absl::string_view method, absl::string_view target,
                                           std::string* allow) const {
  absl::StatusOr<std::vector<std::string>> segments = SplitPath(target);
  if (!segments.ok()) return segments.status();
  std::vector<std::string> allowed;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments->size()) continue;
    Match match;
    bool matches = true;
    for (size_t i = 0; i < route.segments.size() && matches; ++i) {
      const std::string& want = route.segments[i];
      const std::string& got = (*segments)[i];
      if (IsPlaceholder(want)) {
        if (got.empty()) {
          matches = false;
        } else {
          match.params.emplace_back(want.substr(1, want.size() - 2), got);
        }
      } else {
        matches = want == got;
      }
    }
    if (!matches) continue;
    if (route.method != method) {
      if (std::find(allowed.begin(), allowed.end(), route.method) == allowed.end()) {
        allowed.push_back(route.method);
      }
      continue;
    }
    match.handler = &route.handler;
    return match;
  }
  absl::string_view path = target.substr(0, target.find_first_of("?#"));
  if (!allowed.empty()) {
    std::string allow_list = absl::StrJoin(allowed, ", ");
    if (allow != nullptr) *allow = allow_list;
    return ApiError(absl::StatusCode::kInvalidArgument, kMethodNotAllowed,
                    absl::StrCat("method ", method, " is not allowed on ", path,
                                 " (allowed: ", allow_list, ")"));
  }
  return ApiError(absl::StatusCode::kNotFound, kRouteNotFound,
                  absl::StrCat("no route for ", method, " ", path));
}

void Router::Dispatch(ApiRequest request, Responder responder) const {
  std::string allow;
  absl::StatusOr<Match> match = Find(request.method, request.target, &allow);
  if (!match.ok()) {
    ApiResponse response = ErrorResponse(match.status());
    if (!allow.empty()) response.headers.emplace_back("Allow", allow);
    responder.Send(std::move(response));
    return;
  }
  for (auto& [name, value] : match->params) request.params[name] = std::move(value);
  (*match->handler)(std::move(request), std::move(responder));
}

}  // namespace once::coordinator
