#include "coordinator/service_options.h"

#include <arpa/inet.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"

namespace once::coordinator {
namespace {

absl::Status CheckRange(absl::string_view name, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be in [", min, ", ", max, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text) {
  ListenAddress address;
  absl::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address \"", text, "\": expected [IPv6]:PORT"));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address \"", text, "\": expected HOST:PORT"));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address \"", text, "\": write an IPv6 address as [ADDRESS]:PORT"));
    }
  }
  unsigned char buf[16];
  const std::string host_str(host);
  if (inet_pton(AF_INET, host_str.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, host_str.c_str(), buf) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", text, "\": \"", host,
                                                   "\" is not an IPv4 or IPv6 address"));
  }
  uint32_t port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number > 65535 || port.empty() ||
      port.front() == '+' || port.front() == '-') {
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", text, "\": port \"", port,
                                                   "\" is not a number in [0, 65535]"));
  }
  address.host = host_str;
  address.port = static_cast<uint16_t>(port_number);
  return address;
}

absl::Status ValidateServiceOptions(const ServiceOptions& o) {
  if (o.data_dir.empty()) return absl::InvalidArgumentError("data_dir must not be empty");
  ONCE_RETURN_IF_ERROR(ParseListenAddress(o.listen).status());
  ONCE_RETURN_IF_ERROR(CheckRange("max_body_bytes", o.limits.max_body_bytes, 1 << 10, 1 << 30));
  ONCE_RETURN_IF_ERROR(CheckRange("max_header_bytes", o.limits.max_header_bytes, 1 << 10, 1 << 20));
  ONCE_RETURN_IF_ERROR(CheckRange("max_connections", o.limits.max_connections, 1, 1'000'000));
  ONCE_RETURN_IF_ERROR(
      CheckRange("idle_timeout_ms", o.limits.idle_timeout_ms, 100, 24 * 3600 * 1000));
  ONCE_RETURN_IF_ERROR(CheckRange("max_wait_ms", o.limits.max_wait_ms, 0, 3600 * 1000));
  ONCE_RETURN_IF_ERROR(CheckRange("io_threads", o.io_threads, 1, 64));
  ONCE_RETURN_IF_ERROR(CheckRange("worker_threads", o.worker_threads, 1, 256));
  ONCE_RETURN_IF_ERROR(CheckRange("append_threads", o.append_threads, 1, 64));
  ONCE_RETURN_IF_ERROR(
      CheckRange("memory_budget_bytes", o.memory_budget_bytes, 0, int64_t{1} << 50));
  ONCE_RETURN_IF_ERROR(
      CheckRange("maintenance_interval_ms", o.maintenance_interval_ms, 10, 60'000));
  ONCE_RETURN_IF_ERROR(
      CheckRange("group_commit_interval_ms", o.group_commit_interval_ms, 0, 1'000));
  ONCE_RETURN_IF_ERROR(CheckRange("drain_timeout_ms", o.drain_timeout_ms, 0, 600'000));
  ONCE_RETURN_IF_ERROR(
      CheckRange("txn_vote_timeout_ms", o.txn_vote_timeout_ms, 1, 24 * 3600 * 1000));
  ONCE_RETURN_IF_ERROR(CheckRange("txn_batch_max", o.txn_batch_max, 1, 10'000));
  ONCE_RETURN_IF_ERROR(CheckRange("txn_linger_ms", o.txn_linger_ms, 0, 1'000));
  ONCE_RETURN_IF_ERROR(CheckRange("txn_commit_retry_ms", o.txn_commit_retry_ms, 10, 60'000));
  ONCE_RETURN_IF_ERROR(CheckRange("txn_tick_ms", o.txn_tick_ms, 5, 10'000));
  absl::Status topic = broker::ValidateTopicConfig(o.default_topic);
  if (!topic.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("default topic settings: ", topic.message()));
  }
  return absl::OkStatus();
}

std::string DescribeOptions(const ServiceOptions& o) {
  const broker::TopicConfig& t = o.default_topic;
  return absl::StrCat("  data_dir = ", o.data_dir, "\n",                                  //
                      "  listen = ", o.listen, "\n",                                      //
                      "  max_body_bytes = ", o.limits.max_body_bytes, "\n",               //
                      "  max_header_bytes = ", o.limits.max_header_bytes, "\n",           //
                      "  max_connections = ", o.limits.max_connections, "\n",             //
                      "  idle_timeout_ms = ", o.limits.idle_timeout_ms, "\n",             //
                      "  max_wait_ms = ", o.limits.max_wait_ms, "\n",                     //
                      "  io_threads = ", o.io_threads, "\n",                              //
                      "  worker_threads = ", o.worker_threads, "\n",                      //
                      "  append_threads = ", o.append_threads, "\n",                      //
                      "  memory_budget_bytes = ", o.memory_budget_bytes, "\n",            //
                      "  on_corruption = ", CorruptionPolicyName(o.on_corruption), "\n",  //
                      "  maintenance_interval_ms = ", o.maintenance_interval_ms, "\n",    //
                      "  group_commit_interval_ms = ", o.group_commit_interval_ms, "\n",  //
                      "  drain_timeout_ms = ", o.drain_timeout_ms, "\n",                  //
                      "  default_partitions = ", t.partitions, "\n",                      //
                      "  default_backend = ", broker::BackendName(t.backend), "\n",       //
                      "  default_fsync = ", broker::FsyncPolicyName(t.fsync), "\n",       //
                      "  default_retention_ms = ", t.retention_ms, "\n",                  //
                      "  default_retention_bytes = ", t.retention_bytes, "\n",            //
                      "  default_max_message_bytes = ", t.max_message_bytes, "\n",        //
                      "  default_dedup_window_ms = ", t.dedup_window_ms, "\n",            //
                      "  txn_sync = ", o.txn_sync_full ? "full" : "normal", "\n",         //
                      "  txn_vote_timeout_ms = ", o.txn_vote_timeout_ms, "\n",            //
                      "  txn_batch_max = ", o.txn_batch_max, "\n",                        //
                      "  txn_linger_ms = ", o.txn_linger_ms, "\n",                        //
                      "  txn_commit_retry_ms = ", o.txn_commit_retry_ms, "\n",            //
                      "  txn_tick_ms = ", o.txn_tick_ms, "\n");
}

absl::string_view CorruptionPolicyName(broker::CorruptionPolicy policy) {
  return policy == broker::CorruptionPolicy::kTruncate ? "truncate" : "refuse";
}

absl::StatusOr<broker::CorruptionPolicy> ParseCorruptionPolicy(absl::string_view text) {
  if (text == "refuse") return broker::CorruptionPolicy::kRefuse;
  if (text == "truncate") return broker::CorruptionPolicy::kTruncate;
  return absl::InvalidArgumentError(
      absl::StrCat("on_corruption must be \"refuse\" or \"truncate\", got \"", text, "\""));
}

}  // namespace once::coordinator
