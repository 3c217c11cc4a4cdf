// The benchmarks' message payload: the publish time as 16 lowercase hex
// digits (nanoseconds on the steady clock), then padding. once-load and
// eo-bench-consumer both read it to measure end-to-end latency; the steady
// clock is shared by every process on the machine.
#ifndef ONCE_TESTS_BENCH_LOAD_PAYLOAD_H_
#define ONCE_TESTS_BENCH_LOAD_PAYLOAD_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::load {

// Nanoseconds on the steady clock.
inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A message value of `bytes` (>= 16) bytes: the publish time as 16 hex
// digits, then padding. JSON-safe as is.
std::string MakePayload(int64_t publish_nanos, int bytes);
// The publish time in `value`; kInvalidArgument when it is not one of ours.
absl::StatusOr<int64_t> PayloadTime(absl::string_view value);

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_PAYLOAD_H_
