// FsyncHistogram: how long the disk logs' fdatasync calls take, for
// /metrics ("once_fsync_duration_seconds"). One process-wide instance
// (Global()) that every DiskLog feeds, because a sync's cost is a property
// of the device, not of one partition; tests may make their own.
//
// Thread-safe and lock-free: Observe is a few relaxed atomic adds, cheap
// next to the fdatasync it measures. A Read racing with Observe may see a
// sample in `count` but not yet in `sum_seconds` (or the reverse); the
// buckets and count of one Read are always consistent with each other
// (count is the sum of the buckets read).
#ifndef ONCE_BROKER_FSYNC_HISTOGRAM_H_
#define ONCE_BROKER_FSYNC_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace once::broker {

class FsyncHistogram {
 public:
  // Upper bounds of the buckets, in seconds; +Inf is implicit. From 50 us
  // (a write-back cached device) to 2.5 s (a device in trouble).
  static constexpr std::array<double, 15> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                     0.0025,  0.005,  0.01,    0.025,  0.05,
                                                     0.1,     0.25,   0.5,     1.0,    2.5};

  struct Snapshot {
    // cumulative[i]: samples <= kBounds[i].
    std::array<uint64_t, kBounds.size()> cumulative{};
    uint64_t count = 0;  // every sample (the +Inf bucket)
    double sum_seconds = 0;
  };

  FsyncHistogram() = default;
  FsyncHistogram(const FsyncHistogram&) = delete;
  FsyncHistogram& operator=(const FsyncHistogram&) = delete;

  // The instance the disk logs record into.
  static FsyncHistogram& Global();

  // Records one fdatasync that took `took` (negative counts as zero).
  void Observe(absl::Duration took);
  Snapshot Read() const;

 private:
  // Not cumulative; the last one is +Inf.
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<int64_t> sum_nanos_{0};
};

}  // namespace once::broker

#endif  // ONCE_BROKER_FSYNC_HISTOGRAM_H_
