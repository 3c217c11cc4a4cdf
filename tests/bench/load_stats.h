// What once-load measures: the payload that carries a message's publish
// time, the latency samples, and the one-line result.
#ifndef ONCE_TESTS_BENCH_LOAD_STATS_H_
#define ONCE_TESTS_BENCH_LOAD_STATS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "tests/bench/load_options.h"
#include "tests/bench/load_payload.h"

namespace once::load {

// Latency percentiles, in milliseconds, of `samples` (nanoseconds; sorted
// in place). 0 when empty.
struct Percentiles {
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  int64_t samples = 0;
};
Percentiles ComputePercentiles(std::vector<int64_t>* samples);

// Counters shared by the driver's connections and its main thread.
struct RunCounters {
  std::atomic<int64_t> published{0};  // messages confirmed by the service
  std::atomic<int64_t> consumed{0};   // deliveries seen
  std::atomic<int64_t> acked{0};      // acks the service confirmed as applied
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> start_nanos{0};
  std::atomic<int64_t> consume_start_nanos{0};  // when the consumers began
  std::atomic<int64_t> last_publish_nanos{0};   // the last publish confirmation
  std::atomic<int64_t> last_ack_nanos{0};       // the last ack confirmation
  std::atomic<bool> stop_publishing{false};
  std::atomic<bool> stop_consuming{false};

  // The first error, for the report (stderr).
  void Error(absl::string_view what);
  std::string first_error() const;

 private:
  mutable absl::Mutex mu_;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

struct LoadResult {
  LoadOptions options;
  double publish_seconds = 0;  // start .. last publish confirmation
  double consume_seconds = 0;  // consumers' start .. last ack confirmation
  int64_t published = 0, consumed = 0, acked = 0, errors = 0;
  Percentiles latency;
};

// "once-load transport=ws backend=disk ... published=N consumed=N
// publish_msg_s=... consume_msg_s=... p50_ms=... p99_ms=... p999_ms=..."
// (consumed there is the acked count), or the same fields as JSON.
std::string FormatResult(const LoadResult& r, bool json);

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_STATS_H_
