// once_fsync_duration_seconds in /metrics: the rendering of a
// broker::FsyncHistogram snapshot, and its presence in Metrics::Render.
#include <string>

#include "absl/time/time.h"
#include "broker/fsync_histogram.h"
#include "coordinator/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

using ::testing::HasSubstr;

TEST(FsyncMetricsTest, RendersAPrometheusHistogram) {
  broker::FsyncHistogram h;
  h.Observe(absl::Microseconds(80));
  h.Observe(absl::Milliseconds(3));
  h.Observe(absl::Seconds(5));
  std::string out;
  RenderFsyncHistogram(h.Read(), &out);
  EXPECT_THAT(out, HasSubstr("# TYPE once_fsync_duration_seconds histogram\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"5e-05\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"0.005\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"2.5\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_sum 5.00308\n"));
  EXPECT_THAT(out, HasSubstr("once_fsync_duration_seconds_count 3\n"));
}

TEST(FsyncMetricsTest, MetricsRenderIncludesTheProcessWideHistogram) {
  broker::FsyncHistogram::Global().Observe(absl::Microseconds(200));
  const uint64_t count = broker::FsyncHistogram::Global().Read().count;
  const std::string text = Metrics().Render(BrokerSnapshot());
  EXPECT_THAT(text, HasSubstr("# TYPE once_fsync_duration_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("once_fsync_duration_seconds_count " + std::to_string(count) + "\n"));
}

}  // namespace
}  // namespace once::coordinator
