#include "tests/bench/load_payload.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace once::load {

std::string MakePayload(int64_t publish_nanos, int bytes) {
  std::string v = absl::StrFormat("%016x", static_cast<uint64_t>(publish_nanos));
  v.resize(static_cast<size_t>(std::max(bytes, 16)), 'x');
  return v;
}

absl::StatusOr<int64_t> PayloadTime(absl::string_view value) {
  if (value.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload of ", value.size(), " bytes has no 16-digit timestamp"));
  }
  uint64_t t = 0;
  for (char c : value.substr(0, 16)) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "payload does not start with a hex timestamp: \"", value.substr(0, 16), "\""));
    }
    t = t * 16 + static_cast<uint64_t>(d);
  }
  return static_cast<int64_t>(t);
}

}  // namespace once::load
