#include "tests/bench/load_stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"

namespace once::load {

Percentiles ComputePercentiles(std::vector<int64_t>* samples) {
  Percentiles p;
  p.samples = static_cast<int64_t>(samples->size());
  if (samples->empty()) return p;
  std::sort(samples->begin(), samples->end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * static_cast<double>(samples->size()));
    i = std::min(i, samples->size() - 1);
    return static_cast<double>((*samples)[i]) / 1e6;
  };
  p.p50_ms = at(0.50);
  p.p99_ms = at(0.99);
  p.p999_ms = at(0.999);
  p.max_ms = static_cast<double>(samples->back()) / 1e6;
  return p;
}

void RunCounters::Error(absl::string_view what) {
  errors.fetch_add(1);
  absl::MutexLock lock(&mu_);
  if (first_error_.empty()) first_error_ = std::string(what);
}

std::string RunCounters::first_error() const {
  absl::MutexLock lock(&mu_);
  return first_error_;
}

std::string FormatResult(const LoadResult& r, bool json) {
  const LoadOptions& o = r.options;
  const double pub_rate = r.publish_seconds > 0 ? r.published / r.publish_seconds : 0;
  const double con_rate = r.consume_seconds > 0 ? r.acked / r.consume_seconds : 0;
  const std::string transport = o.transport == Transport::kWebSocket ? "ws" : "http";
  const std::string fsync = o.backend == "disk" ? o.fsync : "-";
  if (json) {
    boost::json::object j;
    j["transport"] = transport;
    j["backend"] = o.backend;
    j["fsync"] = fsync;
    j["connections"] = o.connections;
    j["partitions"] = o.partitions;
    j["batch"] = o.batch;
    j["rate"] = o.rate;
    j["duration_s"] = o.duration_s;
    j["backlog"] = o.backlog;
    j["delivery_tags"] = o.delivery_tags;
    j["message_bytes"] = o.message_bytes;
    j["published"] = r.published;
    j["delivered"] = r.consumed;
    j["consumed"] = r.acked;
    j["errors"] = r.errors;
    j["publish_msg_s"] = pub_rate;
    j["consume_msg_s"] = con_rate;
    j["p50_ms"] = r.latency.p50_ms;
    j["p99_ms"] = r.latency.p99_ms;
    j["p999_ms"] = r.latency.p999_ms;
    j["max_ms"] = r.latency.max_ms;
    j["latency_samples"] = r.latency.samples;
    return boost::json::serialize(j);
  }
  return absl::StrFormat(
      "once-load transport=%s backend=%s fsync=%s connections=%d partitions=%d batch=%d "
      "rate=%.0f duration_s=%.1f%s published=%d consumed=%d errors=%d publish_msg_s=%.0f "
      "consume_msg_s=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f",
      transport, o.backend, fsync, o.connections, o.partitions, o.batch, o.rate, o.duration_s,
      o.backlog ? " backlog=true" : "", r.published, r.acked, r.errors, pub_rate, con_rate,
      r.latency.p50_ms, r.latency.p99_ms, r.latency.p999_ms);
}

}  // namespace once::load
