#include "broker/fsync_histogram.h"

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "absl/time/time.h"
#include "broker/disk_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

TEST(FsyncHistogramTest, StartsEmpty) {
  FsyncHistogram h;
  const FsyncHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum_seconds, 0);
  for (uint64_t c : s.cumulative) EXPECT_EQ(c, 0u);
}

TEST(FsyncHistogramTest, BucketsAreCumulativeAndBoundsInclusive) {
  FsyncHistogram h;
  h.Observe(absl::Microseconds(10));   // <= 50us: bucket 0
  h.Observe(absl::Microseconds(50));   // == 50us: still bucket 0 (le is inclusive)
  h.Observe(absl::Microseconds(700));  // <= 1ms: bucket 4
  h.Observe(absl::Milliseconds(30));   // <= 50ms: bucket 9
  h.Observe(absl::Seconds(10));        // over every bound: +Inf only
  h.Observe(absl::Microseconds(-5));   // a clock step backwards counts as 0
  const FsyncHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.cumulative[0], 3u);
  EXPECT_EQ(s.cumulative[3], 3u);  // <= 0.5 ms
  EXPECT_EQ(s.cumulative[4], 4u);  // <= 1 ms
  EXPECT_EQ(s.cumulative[8], 4u);  // <= 25 ms
  EXPECT_EQ(s.cumulative[9], 5u);  // <= 50 ms
  EXPECT_EQ(s.cumulative.back(), 5u);
  EXPECT_NEAR(s.sum_seconds, 10.03076, 1e-6);
  for (size_t i = 1; i < s.cumulative.size(); ++i) {
    EXPECT_GE(s.cumulative[i], s.cumulative[i - 1]) << "bucket " << i;
  }
}

TEST(FsyncHistogramTest, DiskLogWithFsyncAlwaysRecordsEachSync) {
  std::string tmpl = ::testing::TempDir();
  if (!tmpl.empty() && tmpl.back() != '/') tmpl += '/';
  tmpl += "fsync_histogram_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const uint64_t before = FsyncHistogram::Global().Read().count;
  {
    DiskLogOptions o;
    o.dir = tmpl + "/p0";
    o.fsync = FsyncPolicy::kAlways;
    ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DiskLog> log, DiskLog::Open(o));
    for (int i = 0; i < 3; ++i) {
      Record r;
      r.value = "v";
      ONCE_ASSERT_OK(log->Append({r}).status());
    }
    // One appender at a time: each Append ran its own fdatasync.
    EXPECT_GE(FsyncHistogram::Global().Read().count, before + 3);
    EXPECT_EQ(FsyncHistogram::Global().Read().count - before,
              static_cast<uint64_t>(log->Stats().syncs));
  }
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace once::broker
