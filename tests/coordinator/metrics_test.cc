#include "coordinator/metrics.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CountsWhatHappened) {
  Metrics m;
  m.ConnectionOpened();
  m.ConnectionOpened();
  m.ConnectionClosed();
  m.ConnectionRejected();
  m.CountResponse(200);
  m.CountResponse(200);
  m.CountResponse(404);
  m.CountPublish("orders", broker::Backend::kDisk, 3, 1, 30, 0.0004);
  m.CountPublishError("orders");
  m.CountDelivered("orders", "billing", 5, 2);
  m.CountAcked("orders", "billing", 4, 1);
  m.CountNacked("orders", "billing", 1, 0);
  const std::string text = m.Render(BrokerSnapshot());
  EXPECT_EQ(m.open_connections(), 1);
  EXPECT_THAT(text, HasSubstr("once_http_connections_open 1\n"));
  EXPECT_THAT(text, HasSubstr("once_http_connections_total 2\n"));
  EXPECT_THAT(text, HasSubstr("once_http_connections_rejected_total 1\n"));
  EXPECT_THAT(text, HasSubstr("once_http_responses_total{code=\"200\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("once_http_responses_total{code=\"404\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("once_published_messages_total{topic=\"orders\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("once_published_duplicates_total{topic=\"orders\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("once_published_bytes_total{topic=\"orders\"} 30\n"));
  EXPECT_THAT(text, HasSubstr("once_publish_errors_total{topic=\"orders\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("once_delivered_messages_total{topic=\"orders\",group=\"billing\"} 5\n"));
  EXPECT_THAT(text,
              HasSubstr("once_redelivered_messages_total{topic=\"orders\",group=\"billing\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("once_acked_messages_total{topic=\"orders\",group=\"billing\"} 4\n"));
  EXPECT_THAT(text,
              HasSubstr("once_nacked_messages_total{topic=\"orders\",group=\"billing\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("once_refused_tokens_total{topic=\"orders\",group=\"billing\"} 1\n"));
  EXPECT_THAT(
      text, HasSubstr("once_publish_duration_seconds_bucket{backend=\"disk\",le=\"0.0005\"} 1\n"));
  EXPECT_THAT(
      text, HasSubstr("once_publish_duration_seconds_bucket{backend=\"disk\",le=\"0.00025\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("once_publish_duration_seconds_count{backend=\"disk\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("once_ready 0\n"));
}

TEST(MetricsTest, RendersTheSnapshotGauges) {
  Metrics m;
  BrokerSnapshot s;
  s.ready = true;
  s.waiting_fetches = 2;
  broker::TopicDescription t;
  t.name = "t";
  broker::PartitionDescription p;
  p.stats.first_offset = 2;
  p.stats.next_offset = 10;
  p.stats.size_bytes = 100;
  p.stats.syncs = 4;
  t.partitions = {p, p};
  s.topics.push_back(t);
  broker::GroupDescription g;
  g.topic = "t";
  g.name = "g";
  g.lag = 7;
  g.leased = 3;
  g.consumers.resize(2);
  s.groups.push_back(g);
  const std::string text = m.Render(s);
  EXPECT_THAT(text, HasSubstr("once_ready 1\n"));
  EXPECT_THAT(text, HasSubstr("once_fetches_waiting 2\n"));
  EXPECT_THAT(text, HasSubstr("once_topic_partitions{topic=\"t\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("once_topic_messages{topic=\"t\"} 16\n"));
  EXPECT_THAT(text, HasSubstr("once_topic_bytes{topic=\"t\"} 200\n"));
  EXPECT_THAT(text, HasSubstr("once_log_syncs_total{topic=\"t\"} 8\n"));
  EXPECT_THAT(text, HasSubstr("once_group_lag{topic=\"t\",group=\"g\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("once_group_leased{topic=\"t\",group=\"g\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("once_group_consumers{topic=\"t\",group=\"g\"} 2\n"));
}

// The exposition format wants each family's samples together, after its
// one TYPE line.
TEST(MetricsTest, FamiliesAreContiguous) {
  Metrics m;
  m.CountPublish("a", broker::Backend::kMemory, 1, 0, 1, 0.1);
  m.CountPublish("b", broker::Backend::kDisk, 1, 0, 1, 0.1);
  BrokerSnapshot s;
  for (const char* name : {"a", "b"}) {
    broker::TopicDescription t;
    t.name = name;
    s.topics.push_back(t);
  }
  std::vector<std::string> order;
  for (absl::string_view line : absl::StrSplit(m.Render(s), '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::string family(line.substr(0, line.find_first_of("{ ")));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(family, suffix) && absl::StartsWith(family, "once_publish_duration")) {
        family = "once_publish_duration_seconds";
      }
    }
    if (order.empty() || order.back() != family) order.push_back(family);
  }
  std::vector<std::string> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end())
      << "a metric family appears in two runs";
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(LatencyHistogramTest, BucketsAreCumulative) {
  LatencyHistogram h;
  h.Observe(0.00005);
  h.Observe(0.003);
  h.Observe(100);
  std::string out;
  h.Render("x", "", &out);
  EXPECT_THAT(out, HasSubstr("x_bucket{le=\"0.0001\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{le=\"0.005\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{le=\"2.5\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("x_count 3\n"));
  EXPECT_THAT(out, Not(HasSubstr("{}")));
}

}  // namespace
}  // namespace once::coordinator
