#include "coordinator/metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace once::coordinator {
namespace {

void Header(std::string* out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

std::string TopicLabel(absl::string_view topic) {
  return absl::StrCat("topic=\"", EscapeLabelValue(topic), "\"");
}

std::string GroupLabels(absl::string_view topic, absl::string_view group) {
  return absl::StrCat("topic=\"", EscapeLabelValue(topic), "\",group=\"", EscapeLabelValue(group),
                      "\"");
}

}  // namespace

void RenderFsyncHistogram(const broker::FsyncHistogram::Snapshot& h, std::string* out) {
  constexpr absl::string_view kName = "once_fsync_duration_seconds";
  Header(out, kName, "histogram",
         "Time the disk logs' fdatasync calls took (all disk topics; group commit and "
         "segment rolls).");
  for (size_t i = 0; i < h.cumulative.size(); ++i) {
    absl::StrAppend(out, kName, "_bucket{le=\"",
                    absl::StrFormat("%g", broker::FsyncHistogram::kBounds[i]), "\"} ",
                    h.cumulative[i], "\n");
  }
  absl::StrAppend(out, kName, "_bucket{le=\"+Inf\"} ", h.count, "\n");
  absl::StrAppend(out, kName, "_sum ", absl::StrFormat("%.9g", h.sum_seconds), "\n");
  absl::StrAppend(out, kName, "_count ", h.count, "\n");
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

void LatencyHistogram::Observe(double seconds) {
  ++count_;
  sum_ += seconds;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++buckets_[i];
      return;
    }
  }
}

void LatencyHistogram::Render(absl::string_view name, absl::string_view labels,
                              std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i];
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"", absl::StrFormat("%g", kBounds[i]),
                    "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"+Inf\"} ", count_, "\n");
  const std::string braces = labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ", absl::StrFormat("%.9g", sum_), "\n");
  absl::StrAppend(out, name, "_count", braces, " ", count_, "\n");
}

void Metrics::ConnectionOpened() {
  open_connections_.fetch_add(1);
  connections_total_.fetch_add(1);
}

void Metrics::ConnectionClosed() { open_connections_.fetch_sub(1); }

void Metrics::ConnectionRejected() { connections_rejected_.fetch_add(1); }

void Metrics::CountResponse(int http_status) {
  absl::MutexLock lock(&mu_);
  ++responses_[http_status];
}

void Metrics::CountPublish(absl::string_view topic, broker::Backend backend, int64_t messages,
                           int64_t duplicates, int64_t bytes, double seconds) {
  absl::MutexLock lock(&mu_);
  TopicCounters& t = topics_[topic];
  ++t.publish_requests;
  t.messages += messages;
  t.duplicates += duplicates;
  t.bytes += bytes;
  publish_latency_[std::string(broker::BackendName(backend))].Observe(seconds);
}

void Metrics::CountPublishError(absl::string_view topic) {
  absl::MutexLock lock(&mu_);
  ++topics_[topic].publish_errors;
}

void Metrics::CountDelivered(absl::string_view topic, absl::string_view group, int64_t messages,
                             int64_t redelivered) {
  absl::MutexLock lock(&mu_);
  GroupCounters& g = groups_[GroupKey(topic, group)];
  g.delivered += messages;
  g.redelivered += redelivered;
}

void Metrics::CountAcked(absl::string_view topic, absl::string_view group, int64_t applied,
                         int64_t refused) {
  absl::MutexLock lock(&mu_);
  GroupCounters& g = groups_[GroupKey(topic, group)];
  g.acked += applied;
  g.refused += refused;
}

void Metrics::CountNacked(absl::string_view topic, absl::string_view group, int64_t applied,
                          int64_t refused) {
  absl::MutexLock lock(&mu_);
  GroupCounters& g = groups_[GroupKey(topic, group)];
  g.nacked += applied;
  g.refused += refused;
}

std::string Metrics::Render(const BrokerSnapshot& snapshot) const {
  std::string out;
  Header(&out, "once_ready", "gauge", "1 once the broker has opened and recovered.");
  absl::StrAppend(&out, "once_ready ", snapshot.ready ? 1 : 0, "\n");

  Header(&out, "once_http_connections_open", "gauge", "Open HTTP connections.");
  absl::StrAppend(&out, "once_http_connections_open ", open_connections_.load(), "\n");
  Header(&out, "once_http_connections_total", "counter", "HTTP connections accepted.");
  absl::StrAppend(&out, "once_http_connections_total ", connections_total_.load(), "\n");
  Header(&out, "once_http_connections_rejected_total", "counter",
         "Connections refused with 503 or closed because max_connections was reached.");
  absl::StrAppend(&out, "once_http_connections_rejected_total ", connections_rejected_.load(),
                  "\n");

  Header(&out, "once_fetches_waiting", "gauge",
         "Fetches in progress, long polls waiting for messages included.");
  absl::StrAppend(&out, "once_fetches_waiting ", snapshot.waiting_fetches, "\n");

  absl::MutexLock lock(&mu_);
  Header(&out, "once_http_responses_total", "counter", "HTTP responses sent, by status code.");
  for (const auto& [code, n] : responses_) {
    absl::StrAppend(&out, "once_http_responses_total{code=\"", code, "\"} ", n, "\n");
  }

  Header(&out, "once_publish_requests_total", "counter", "Publish requests that succeeded.");
  for (const auto& [topic, t] : topics_) {
    absl::StrAppend(&out, "once_publish_requests_total{", TopicLabel(topic), "} ",
                    t.publish_requests, "\n");
  }
  Header(&out, "once_publish_errors_total", "counter",
         "Publish requests the broker refused or failed.");
  for (const auto& [topic, t] : topics_) {
    absl::StrAppend(&out, "once_publish_errors_total{", TopicLabel(topic), "} ", t.publish_errors,
                    "\n");
  }
  Header(&out, "once_published_messages_total", "counter",
         "Messages published (durable under the topic's policy), duplicates included.");
  for (const auto& [topic, t] : topics_) {
    absl::StrAppend(&out, "once_published_messages_total{", TopicLabel(topic), "} ", t.messages,
                    "\n");
  }
  Header(&out, "once_published_duplicates_total", "counter",
         "Messages answered as duplicates of an earlier publish (idempotency key).");
  for (const auto& [topic, t] : topics_) {
    absl::StrAppend(&out, "once_published_duplicates_total{", TopicLabel(topic), "} ", t.duplicates,
                    "\n");
  }
  Header(&out, "once_published_bytes_total", "counter", "Payload bytes published.");
  for (const auto& [topic, t] : topics_) {
    absl::StrAppend(&out, "once_published_bytes_total{", TopicLabel(topic), "} ", t.bytes, "\n");
  }
  Header(&out, "once_publish_duration_seconds", "histogram",
         "Time from a publish call to the broker until it is durable under the topic's policy "
         "(includes the fsync of fsync=always topics), by backend.");
  for (const auto& [backend, h] : publish_latency_) {
    h.Render("once_publish_duration_seconds", absl::StrCat("backend=\"", backend, "\""), &out);
  }

  Header(&out, "once_delivered_messages_total", "counter", "Messages delivered by fetch.");
  for (const auto& [key, g] : groups_) {
    absl::StrAppend(&out, "once_delivered_messages_total{", GroupLabels(key.first, key.second),
                    "} ", g.delivered, "\n");
  }
  Header(&out, "once_redelivered_messages_total", "counter", "Deliveries with delivery_count > 1.");
  for (const auto& [key, g] : groups_) {
    absl::StrAppend(&out, "once_redelivered_messages_total{", GroupLabels(key.first, key.second),
                    "} ", g.redelivered, "\n");
  }
  Header(&out, "once_acked_messages_total", "counter", "Deliveries acked.");
  for (const auto& [key, g] : groups_) {
    absl::StrAppend(&out, "once_acked_messages_total{", GroupLabels(key.first, key.second), "} ",
                    g.acked, "\n");
  }
  Header(&out, "once_nacked_messages_total", "counter", "Deliveries nacked.");
  for (const auto& [key, g] : groups_) {
    absl::StrAppend(&out, "once_nacked_messages_total{", GroupLabels(key.first, key.second), "} ",
                    g.nacked, "\n");
  }
  Header(&out, "once_refused_tokens_total", "counter",
         "Ack or nack tokens refused (stale or invalid).");
  for (const auto& [key, g] : groups_) {
    absl::StrAppend(&out, "once_refused_tokens_total{", GroupLabels(key.first, key.second), "} ",
                    g.refused, "\n");
  }

  Header(&out, "once_topic_partitions", "gauge", "Partitions of the topic.");
  for (const broker::TopicDescription& t : snapshot.topics) {
    absl::StrAppend(&out, "once_topic_partitions{", TopicLabel(t.name), "} ", t.partitions.size(),
                    "\n");
  }
  struct TopicTotals {
    int64_t messages = 0, bytes = 0, appends = 0, syncs = 0;
  };
  std::vector<std::pair<std::string, TopicTotals>> totals;
  for (const broker::TopicDescription& t : snapshot.topics) {
    TopicTotals sum;
    for (const broker::PartitionDescription& p : t.partitions) {
      sum.messages += p.stats.next_offset - p.stats.first_offset;
      sum.bytes += p.stats.size_bytes;
      sum.appends += p.stats.appends;
      sum.syncs += p.stats.syncs;
    }
    totals.emplace_back(TopicLabel(t.name), sum);
  }
  // Each family's samples together, as the format requires.
  auto topic_family = [&](absl::string_view name, absl::string_view type, absl::string_view help,
                          int64_t TopicTotals::*field) {
    Header(&out, name, type, help);
    for (const auto& [label, sum] : totals) {
      absl::StrAppend(&out, name, "{", label, "} ", sum.*field, "\n");
    }
  };
  topic_family("once_topic_messages", "gauge", "Messages held (next offset - first offset).",
               &TopicTotals::messages);
  topic_family("once_topic_bytes", "gauge", "Bytes held (memory) or on disk (disk).",
               &TopicTotals::bytes);
  topic_family("once_log_appends_total", "counter", "Log appends since the broker opened.",
               &TopicTotals::appends);
  topic_family("once_log_syncs_total", "counter", "fdatasync calls since the broker opened.",
               &TopicTotals::syncs);
  RenderFsyncHistogram(broker::FsyncHistogram::Global().Read(), &out);

  auto group_family = [&](absl::string_view name, absl::string_view type, absl::string_view help,
                          auto value) {
    Header(&out, name, type, help);
    for (const broker::GroupDescription& g : snapshot.groups) {
      absl::StrAppend(&out, name, "{", GroupLabels(g.topic, g.name), "} ", value(g), "\n");
    }
  };
  group_family("once_group_lag", "gauge", "Messages the group is not done with.",
               [](const broker::GroupDescription& g) { return g.lag; });
  group_family("once_group_leased", "gauge", "Deliveries out (leases or unacked deliveries).",
               [](const broker::GroupDescription& g) { return g.leased; });
  group_family(
      "once_group_consumers", "gauge", "Consumers the group knows.",
      [](const broker::GroupDescription& g) { return static_cast<int64_t>(g.consumers.size()); });
  group_family("once_group_dead_lettered_total", "counter",
               "Messages moved to the dead-letter topic (since the group was created for disk "
               "topics, since open for memory topics).",
               [](const broker::GroupDescription& g) { return g.dead_lettered; });
  absl::MutexLock extra_lock(&extra_mu_);
  if (extra_) extra_(&out);
  return out;
}

void Metrics::SetExtraRenderer(std::function<void(std::string*)> render) {
  absl::MutexLock lock(&extra_mu_);
  extra_ = std::move(render);
}

}  // namespace once::coordinator
