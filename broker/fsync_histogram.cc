#include "broker/fsync_histogram.h"

namespace once::broker {

FsyncHistogram& FsyncHistogram::Global() {
  // Never destroyed: disk logs may sync while static destructors run.
  static FsyncHistogram* const global = new FsyncHistogram();
  return *global;
}

void FsyncHistogram::Observe(absl::Duration took) {
  if (took < absl::ZeroDuration()) took = absl::ZeroDuration();
  const double seconds = absl::ToDoubleSeconds(took);
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(absl::ToInt64Nanoseconds(took), std::memory_order_relaxed);
}

FsyncHistogram::Snapshot FsyncHistogram::Read() const {
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running + buckets_[kBounds.size()].load(std::memory_order_relaxed);
  s.sum_seconds = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

}  // namespace once::broker
