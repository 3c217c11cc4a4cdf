// onced: the Once service. Flags (with dashes or underscores) override
// environment variables ONCE_<FLAG_NAME_IN_CAPITALS>, which override the
// defaults: `onced --data-dir /var/lib/once --listen 127.0.0.1:8080`.
//
// Prints its effective configuration and then "listening on http://..."
// on stdout (tests read the port from that line); logs go to stderr.
// Exit status: 0 after a clean SIGTERM/SIGINT drain, 1 when it could not
// start or stopped on an error, 2 for bad flags.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "broker/topic_config.h"
#include "coordinator/service.h"
#include "coordinator/service_options.h"
#include "schema/command_line.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {
const once::coordinator::ServiceOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, data_dir, kDefaults.data_dir, "Data directory (topics, groups, LOCK).");
ABSL_FLAG(std::string, listen, kDefaults.listen,
          "HOST:PORT to serve HTTP on; port 0 picks a free one.");
ABSL_FLAG(int64_t, max_body_bytes, kDefaults.limits.max_body_bytes,
          "Largest request body; larger is answered 413.");
ABSL_FLAG(int64_t, max_header_bytes, kDefaults.limits.max_header_bytes,
          "Largest request line plus headers; larger is answered 431.");
ABSL_FLAG(int32_t, max_connections, kDefaults.limits.max_connections,
          "Open connections beyond this are answered 503.");
ABSL_FLAG(int64_t, idle_timeout_ms, kDefaults.limits.idle_timeout_ms,
          "A connection must send a complete request (and read each answer) within this.");
ABSL_FLAG(int64_t, max_wait_ms, kDefaults.limits.max_wait_ms,
          "Longest wait_ms a fetch may ask for.");
ABSL_FLAG(int32_t, io_threads, kDefaults.io_threads, "Network threads.");
ABSL_FLAG(int32_t, worker_threads, kDefaults.worker_threads,
          "Threads for blocking broker calls (publishes waiting on fsync, acks).");
ABSL_FLAG(
    int32_t, append_threads, kDefaults.append_threads,
    "Threads that sync the other partitions of a publish to several fsync=always partitions.");
ABSL_FLAG(int64_t, memory_budget_bytes, kDefaults.memory_budget_bytes,
          "Bytes all memory topics together may hold.");
ABSL_FLAG(std::string, on_corruption, "refuse",
          "Damage found in a disk segment at start: refuse (do not start) or truncate.");
ABSL_FLAG(int64_t, maintenance_interval_ms, kDefaults.maintenance_interval_ms,
          "How often retention, lease deadlines and space reclaim run.");
ABSL_FLAG(int64_t, group_commit_interval_ms, kDefaults.group_commit_interval_ms,
          "Least milliseconds between two commits of the consumer groups' store (acks "
          "share one fsync per interval); 0..1000.");
ABSL_FLAG(int64_t, drain_timeout_ms, kDefaults.drain_timeout_ms,
          "On SIGTERM/SIGINT, how long in-flight requests get to finish.");
ABSL_FLAG(int32_t, default_partitions, kDefaults.default_topic.partitions,
          "Partitions of a topic created without \"partitions\".");
ABSL_FLAG(std::string, default_backend, "disk",
          "Backend of a topic created without \"backend\": memory or disk.");
ABSL_FLAG(std::string, default_fsync, "always",
          "fsync policy of a topic created without \"fsync\": always, interval or never.");
ABSL_FLAG(int64_t, default_retention_ms, kDefaults.default_topic.retention_ms,
          "Retention of a topic created without \"retention_ms\" (< 0: forever).");
ABSL_FLAG(int64_t, default_retention_bytes, kDefaults.default_topic.retention_bytes,
          "Per-partition size limit of a topic created without \"retention_bytes\" (< 0: none).");
ABSL_FLAG(int64_t, default_max_message_bytes, kDefaults.default_topic.max_message_bytes,
          "Largest message of a topic created without \"max_message_bytes\".");
ABSL_FLAG(int64_t, default_dedup_window_ms, kDefaults.default_topic.dedup_window_ms,
          "Idempotency-key window of a topic created without \"dedup_window_ms\".");
ABSL_FLAG(std::string, txn_sync, "full",
          "coordinator.db durability: full (decisions survive power loss) or normal.");
ABSL_FLAG(int64_t, txn_vote_timeout_ms, kDefaults.txn_vote_timeout_ms,
          "A PREPARE without a vote within this is aborted.");
ABSL_FLAG(int32_t, txn_batch_max, kDefaults.txn_batch_max,
          "Most messages in one exactly-once transaction (a group's txn_batch_max overrides).");
ABSL_FLAG(int64_t, txn_linger_ms, kDefaults.txn_linger_ms,
          "How long a partial exactly-once batch waits for more messages (a group's "
          "txn_linger_ms overrides).");
ABSL_FLAG(int64_t, txn_commit_retry_ms, kDefaults.txn_commit_retry_ms,
          "First COMMIT re-send delay (doubling, up to 60 s) until DONE.");
ABSL_FLAG(int64_t, txn_tick_ms, kDefaults.txn_tick_ms, "How often the coordinator's timers run.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

namespace {

// Every flag above, for the environment fallbacks.
const char* const kFlagNames[] = {
    "data_dir",
    "listen",
    "max_body_bytes",
    "max_header_bytes",
    "max_connections",
    "idle_timeout_ms",
    "max_wait_ms",
    "io_threads",
    "worker_threads",
    "append_threads",
    "memory_budget_bytes",
    "on_corruption",
    "maintenance_interval_ms",
    "group_commit_interval_ms",
    "drain_timeout_ms",
    "default_partitions",
    "default_backend",
    "default_fsync",
    "default_retention_ms",
    "default_retention_bytes",
    "default_max_message_bytes",
    "default_dedup_window_ms",
    "txn_sync",
    "txn_vote_timeout_ms",
    "txn_batch_max",
    "txn_linger_ms",
    "txn_commit_retry_ms",
    "txn_tick_ms",
    "log_level",
};

// Sets each flag from ONCE_<NAME> when that is set; the command line,
// parsed after, overrides. False (with a message) for a bad value.
bool ApplyEnvironment() {
  for (const char* name : kFlagNames) {
    const std::string var = absl::StrCat("ONCE_", absl::AsciiStrToUpper(name));
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "onced: environment variable %s=\"%s\": %s\n", var.c_str(), value,
                   error.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the Once service: onced [--data-dir DIR] [--listen HOST:PORT] [flags]\n"
      "Every flag may also come from the environment as ONCE_<FLAG_NAME> "
      "(e.g. ONCE_DATA_DIR, ONCE_LISTEN).");
  once::NormalizeFlagDashes(argc, argv);
  if (!ApplyEnvironment()) return 2;
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
#ifdef NDEBUG
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock
  // would run the deadlock detector (a graph update under one global
  // lock). Debug builds, the sanitizer tests' among them, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  if (rest.size() > 1) {
    std::fprintf(stderr, "onced: unexpected argument \"%s\" (see --help)\n", rest[1]);
    return 2;
  }

  // Logs on stderr; stdout carries only the banner.
  auto logger = spdlog::stderr_color_mt("onced");
  spdlog::set_default_logger(logger);
  spdlog::level::level_enum level = spdlog::level::from_str(absl::GetFlag(FLAGS_log_level));
  if (level == spdlog::level::off && absl::GetFlag(FLAGS_log_level) != "off") {
    std::fprintf(stderr, "onced: --log-level \"%s\" is not a level\n",
                 absl::GetFlag(FLAGS_log_level).c_str());
    return 2;
  }
  spdlog::set_level(level);

  once::coordinator::ServiceOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.limits.max_body_bytes = absl::GetFlag(FLAGS_max_body_bytes);
  options.limits.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  options.limits.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.limits.idle_timeout_ms = absl::GetFlag(FLAGS_idle_timeout_ms);
  options.limits.max_wait_ms = absl::GetFlag(FLAGS_max_wait_ms);
  options.io_threads = absl::GetFlag(FLAGS_io_threads);
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.append_threads = absl::GetFlag(FLAGS_append_threads);
  options.memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  options.maintenance_interval_ms = absl::GetFlag(FLAGS_maintenance_interval_ms);
  options.group_commit_interval_ms = absl::GetFlag(FLAGS_group_commit_interval_ms);
  options.drain_timeout_ms = absl::GetFlag(FLAGS_drain_timeout_ms);
  if (const std::string sync = absl::GetFlag(FLAGS_txn_sync); sync == "full" || sync == "normal") {
    options.txn_sync_full = sync == "full";
  } else {
    std::fprintf(stderr, "onced: --txn-sync must be \"full\" or \"normal\", got \"%s\"\n",
                 sync.c_str());
    return 2;
  }
  options.txn_vote_timeout_ms = absl::GetFlag(FLAGS_txn_vote_timeout_ms);
  options.txn_batch_max = absl::GetFlag(FLAGS_txn_batch_max);
  options.txn_linger_ms = absl::GetFlag(FLAGS_txn_linger_ms);
  options.txn_commit_retry_ms = absl::GetFlag(FLAGS_txn_commit_retry_ms);
  options.txn_tick_ms = absl::GetFlag(FLAGS_txn_tick_ms);
  absl::StatusOr<once::broker::CorruptionPolicy> corruption =
      once::coordinator::ParseCorruptionPolicy(absl::GetFlag(FLAGS_on_corruption));
  absl::StatusOr<once::broker::Backend> backend =
      once::broker::ParseBackend(absl::GetFlag(FLAGS_default_backend));
  absl::StatusOr<once::broker::FsyncPolicy> fsync =
      once::broker::ParseFsyncPolicy(absl::GetFlag(FLAGS_default_fsync));
  for (const absl::Status& s : {corruption.status(), backend.status(), fsync.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "onced: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  options.on_corruption = *corruption;
  options.default_topic.partitions = absl::GetFlag(FLAGS_default_partitions);
  options.default_topic.backend = *backend;
  options.default_topic.fsync = *fsync;
  options.default_topic.retention_ms = absl::GetFlag(FLAGS_default_retention_ms);
  options.default_topic.retention_bytes = absl::GetFlag(FLAGS_default_retention_bytes);
  options.default_topic.max_message_bytes = absl::GetFlag(FLAGS_default_max_message_bytes);
  options.default_topic.dedup_window_ms = absl::GetFlag(FLAGS_default_dedup_window_ms);
  if (absl::Status s = once::coordinator::ValidateServiceOptions(options); !s.ok()) {
    std::fprintf(stderr, "onced: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  absl::StatusOr<std::unique_ptr<once::coordinator::Service>> service =
      once::coordinator::Service::Create(options);
  if (!service.ok()) {
    std::fprintf(stderr, "onced: cannot start: %s\n",
                 std::string(service.status().message()).c_str());
    return 1;
  }
  std::printf("onced effective config:\n%s", once::coordinator::DescribeOptions(options).c_str());
  std::printf("listening on %s\n", (*service)->url().c_str());
  std::fflush(stdout);

  absl::Status status = (*service)->Run();
  service->reset();
  if (!status.ok()) {
    std::fprintf(stderr, "onced: stopped on an error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
