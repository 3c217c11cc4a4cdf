// The service's settings (onced's flags map onto these), their defaults,
// validation and the effective-config text onced prints at start.
#ifndef ONCE_COORDINATOR_SERVICE_OPTIONS_H_
#define ONCE_COORDINATOR_SERVICE_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/broker.h"
#include "broker/topic_config.h"

namespace once::coordinator {

// Bounds on what one client can make the server hold.
struct HttpLimits {
  // A request body larger than this is answered 413 and the connection
  // closed. 1 KiB..1 GiB.
  int64_t max_body_bytes = int64_t{16} << 20;
  // Request line plus headers; larger is 431. 1 KiB..1 MiB.
  int64_t max_header_bytes = 16 << 10;
  // Connections beyond this are answered 503 and closed. 1..1,000,000.
  int max_connections = 1024;
  // A connection must deliver a complete request within this (from
  // connect, or from the previous answer) and take each answer within
  // this, or it is closed: silent and slow clients cost nothing lasting.
  // 100 ms..1 day.
  int64_t idle_timeout_ms = 60'000;
  // The longest wait_ms a fetch may ask for (long poll). 0..1 hour.
  int64_t max_wait_ms = 30'000;
};

struct ServiceOptions {
  std::string data_dir = "./data";
  // HOST:PORT; port 0 binds an ephemeral port (the real one is printed).
  std::string listen = "127.0.0.1:8080";
  HttpLimits limits;
  // Threads running the network (Asio io_context). 1..64.
  int io_threads = 2;
  // Threads running blocking broker calls (a publish waiting for its
  // fsync, an ack's durable write), so that they never stall the network
  // threads. More of them let more publishes share one fsync. 1..256.
  int worker_threads = 8;
  // Threads that sync the other partitions of a publish to several
  // fsync=always partitions, so that their fdatasyncs overlap
  // (broker::BrokerOptions::append_threads). 1..64.
  int append_threads = 4;
  int64_t memory_budget_bytes = int64_t{1} << 30;
  broker::CorruptionPolicy on_corruption = broker::CorruptionPolicy::kRefuse;
  // What a topic gets for the settings its create request leaves out.
  broker::TopicConfig default_topic;
  // Retention, lease deadlines and space reclaim run this often. 10 ms..1 min.
  int64_t maintenance_interval_ms = 1000;
  // The least time between two commits of the consumer groups' store
  // (groups.db), so that a steady stream of acks costs at most one fsync
  // per interval instead of one after another, each queued at the device
  // in front of the topics' fsyncs (broker/group_store.h). An ack's answer
  // waits up to this long more, so a consumer that waits for each ack's
  // answer slows down (the SDK's at-least-once consumer: 12k -> 6k msg/s
  // at 2 ms); hence off by default. 0..1000; 0: commit as soon as the last
  // commit ended.
  int64_t group_commit_interval_ms = 0;
  // On SIGTERM/SIGINT, in-flight requests get this long to finish before
  // the service stops anyway. 0..10 min.
  int64_t drain_timeout_ms = 10'000;
  // The 2PC coordinator of exactly-once groups (coordinator/txn_coordinator.h).
  // coordinator.db's PRAGMA synchronous: FULL (a decision survives power
  // loss) or NORMAL (it survives a crash of onced). --txn-sync full|normal.
  bool txn_sync_full = true;
  // A PREPARE without a vote within this is aborted. 1 ms..1 day.
  int64_t txn_vote_timeout_ms = 10'000;
  // Most messages in one transaction. 1..10,000. Large by default: every
  // transaction costs the participant two fsyncs and the coordinator a
  // share of one, whatever its size (measured: 1000 doubles the rate of
  // 100); a batch takes only what is available, so it adds no latency.
  int txn_batch_max = 1000;
  // How long a partial batch waits for more messages before its PREPARE.
  // 0..1000. 0 (the default): a batch takes what is available at once.
  // Both are defaults: an exactly-once group may set its own
  // (txn_batch_max, txn_linger_ms in broker/group_config.h).
  int64_t txn_linger_ms = 0;
  // COMMIT is re-sent until DONE, first after this, doubling up to 60 s.
  // 10 ms..1 min.
  int64_t txn_commit_retry_ms = 1'000;
  // The coordinator's timers (vote timeouts, COMMIT re-sends) run this
  // often. 5 ms..10 s.
  int64_t txn_tick_ms = 50;
  // Service::Run handles SIGTERM and SIGINT itself (onced); tests that
  // embed a service turn this off.
  bool handle_signals = true;
};

struct ListenAddress {
  std::string host;  // an IPv4 or IPv6 address (no brackets)
  uint16_t port = 0;
};

// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0". kInvalidArgument naming
// what is wrong. Host names are not resolved: give an address.
absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text);

// kInvalidArgument naming the first setting out of range (the default
// topic settings included).
absl::Status ValidateServiceOptions(const ServiceOptions& options);

// One "name = value" line per setting, for the start-up banner.
std::string DescribeOptions(const ServiceOptions& options);

absl::string_view CorruptionPolicyName(broker::CorruptionPolicy policy);  // "refuse", "truncate"
absl::StatusOr<broker::CorruptionPolicy> ParseCorruptionPolicy(absl::string_view text);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_SERVICE_OPTIONS_H_
