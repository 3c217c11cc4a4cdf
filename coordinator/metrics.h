// Metrics: the service's counters, and their rendering in the Prometheus
// text exposition format (version 0.0.4) for GET /metrics.
//
// Counters count what actually happened in this process (they restart at
// zero with it, as Prometheus counters may). Gauges about the broker's
// state (lag, leases, sizes) are not kept here: the caller snapshots them
// at scrape time and passes them to Render.
//
// Thread-safe: one mutex around small maps; no I/O under it.
#ifndef ONCE_COORDINATOR_METRICS_H_
#define ONCE_COORDINATOR_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "broker/consumer_group.h"
#include "broker/fsync_histogram.h"
#include "broker/topic.h"

namespace once::coordinator {

// A cumulative histogram over fixed bounds (seconds). Not thread-safe by
// itself.
class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in seconds; +Inf is implicit.
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};

  void Observe(double seconds);
  // Appends the _bucket, _sum and _count lines of `name` with `labels`
  // ("" or `key="value",...` without braces).
  void Render(absl::string_view name, absl::string_view labels, std::string* out) const;
  uint64_t count() const { return count_; }

 private:
  std::array<uint64_t, kBounds.size()> buckets_{};  // not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The broker's state at scrape time.
struct BrokerSnapshot {
  bool ready = false;
  int64_t waiting_fetches = 0;  // long polls waiting right now
  std::vector<broker::TopicDescription> topics;
  std::vector<broker::GroupDescription> groups;
};

class Metrics {
 public:
  // ---- connections (the listener and the sessions)
  void ConnectionOpened();
  void ConnectionClosed();
  void ConnectionRejected();
  int64_t open_connections() const { return open_connections_.load(); }

  // ---- requests: one per response sent, by HTTP status
  void CountResponse(int http_status);

  // ---- the broker's work, as the API did it
  // A publish that succeeded: `messages` stored or found duplicate
  // (`duplicates` of them), `bytes` of payload, in `seconds` (until
  // durable under the topic's policy).
  void CountPublish(absl::string_view topic, broker::Backend backend, int64_t messages,
                    int64_t duplicates, int64_t bytes, double seconds);
  void CountPublishError(absl::string_view topic);
  void CountDelivered(absl::string_view topic, absl::string_view group, int64_t messages,
                      int64_t redelivered);
  void CountAcked(absl::string_view topic, absl::string_view group, int64_t applied,
                  int64_t refused);
  void CountNacked(absl::string_view topic, absl::string_view group, int64_t applied,
                   int64_t refused);

  // The exposition text: the counters above and the gauges of `snapshot`.
  std::string Render(const BrokerSnapshot& snapshot) const;

  // Another component's metrics (the 2PC coordinator's), appended to every
  // Render. Thread-safe; `render` must be thread-safe too.
  void SetExtraRenderer(std::function<void(std::string*)> render);

 private:
  struct TopicCounters {
    int64_t publish_requests = 0;
    int64_t publish_errors = 0;
    int64_t messages = 0;
    int64_t duplicates = 0;
    int64_t bytes = 0;
  };
  struct GroupCounters {
    int64_t delivered = 0;
    int64_t redelivered = 0;
    int64_t acked = 0;
    int64_t nacked = 0;
    int64_t refused = 0;
  };
  using GroupKey = std::pair<std::string, std::string>;

  mutable absl::Mutex extra_mu_;
  std::function<void(std::string*)> extra_ ABSL_GUARDED_BY(extra_mu_);

  std::atomic<int64_t> open_connections_{0};
  std::atomic<int64_t> connections_total_{0};
  std::atomic<int64_t> connections_rejected_{0};

  mutable absl::Mutex mu_;
  absl::btree_map<int, int64_t> responses_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<std::string, TopicCounters> topics_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<GroupKey, GroupCounters> groups_ ABSL_GUARDED_BY(mu_);
  // By backend name: "memory", "disk".
  absl::btree_map<std::string, LatencyHistogram> publish_latency_ ABSL_GUARDED_BY(mu_);
};

// Appends the once_fsync_duration_seconds histogram family (HELP, TYPE
// and samples) of `h` to `out`. Render includes the process-wide
// broker::FsyncHistogram::Global().
void RenderFsyncHistogram(const broker::FsyncHistogram::Snapshot& h, std::string* out);

// `value` escaped for a Prometheus label value (backslash, quote, newline).
std::string EscapeLabelValue(absl::string_view value);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_METRICS_H_
