// once-log: a small command-line window onto the broker's partitioned log.
// It opens a data directory directly (no service), so it is for trying the
// log out and inspecting a stopped service's topics.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/broker.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "schema/command_line.h"
#include "schema/status_macros.h"

ABSL_FLAG(std::string, data_dir, "./data", "data directory (env ONCE_DATA_DIR)");
ABSL_FLAG(int, partitions, 1, "create: number of partitions (1..1024)");
ABSL_FLAG(std::string, backend, "disk", "create: memory | disk");
ABSL_FLAG(std::string, fsync, "always", "create: always | interval | never");
ABSL_FLAG(std::string, key, "", "append: the messages' key (none when empty)");
ABSL_FLAG(int, partition, 0, "read: the partition");
ABSL_FLAG(int64_t, offset, 0, "read: the first offset");
ABSL_FLAG(int, max, 100, "read: at most this many records");

namespace once {
namespace {

using broker::Broker;

constexpr char kUsage[] =
    "once-log [--data-dir DIR] COMMAND [ARGS]\n"
    "  demo                      create topic 'demo', append a few messages, read them back\n"
    "  create TOPIC              [--partitions N] [--backend memory|disk] [--fsync POLICY]\n"
    "  append TOPIC VALUE...     [--key KEY]\n"
    "  read TOPIC                [--partition P] [--offset O] [--max N]\n"
    "  describe TOPIC\n"
    "  list\n"
    "  delete TOPIC";

absl::Status WrongArgs(absl::string_view command, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("'", command, "' takes ", expected, "; see --help"));
}

absl::Status Create(Broker& broker, const std::string& topic) {
  broker::TopicConfig config;
  config.partitions = absl::GetFlag(FLAGS_partitions);
  ONCE_ASSIGN_OR_RETURN(config.backend, broker::ParseBackend(absl::GetFlag(FLAGS_backend)));
  ONCE_ASSIGN_OR_RETURN(config.fsync, broker::ParseFsyncPolicy(absl::GetFlag(FLAGS_fsync)));
  ONCE_ASSIGN_OR_RETURN(auto outcome, broker.CreateTopic(topic, config));
  std::printf("%s topic %s\n", outcome == broker::CreateOutcome::kCreated ? "created" : "existing",
              topic.c_str());
  return absl::OkStatus();
}

absl::Status Append(Broker& broker, const std::string& topic,
                    const std::vector<std::string>& values) {
  ONCE_ASSIGN_OR_RETURN(auto t, broker.GetTopic(topic));
  std::vector<broker::Record> records(values.size());
  const std::string key = absl::GetFlag(FLAGS_key);
  for (size_t i = 0; i < values.size(); ++i) {
    records[i].value = values[i];
    if (!key.empty()) {
      records[i].key = key;
      records[i].flags |= broker::kRecordHasKey;
    }
  }
  ONCE_ASSIGN_OR_RETURN(auto results, t->Publish(std::move(records)));
  for (const auto& r : results) {
    std::printf("partition %d offset %lld%s\n", r.partition, static_cast<long long>(r.offset),
                r.duplicate ? " (duplicate)" : "");
  }
  return absl::OkStatus();
}

void PrintRecord(int partition, const broker::Record& r) {
  std::printf("%d/%lld ts=%lld key=%s value=%s\n", partition, static_cast<long long>(r.offset),
              static_cast<long long>(r.timestamp_ms), r.has_key() ? r.key.c_str() : "-",
              r.value.c_str());
}

absl::Status Read(Broker& broker, const std::string& topic, int partition, int64_t offset,
                  int max) {
  ONCE_ASSIGN_OR_RETURN(auto t, broker.GetTopic(topic));
  if (max <= 0) return absl::InvalidArgumentError("--max must be positive");
  broker::ReadLimits limits;
  limits.max_records = static_cast<size_t>(max);
  ONCE_ASSIGN_OR_RETURN(auto records, t->Read(partition, offset, limits));
  for (const auto& r : records) PrintRecord(partition, r);
  return absl::OkStatus();
}

absl::Status Describe(Broker& broker, const std::string& topic) {
  ONCE_ASSIGN_OR_RETURN(auto t, broker.GetTopic(topic));
  broker::TopicDescription d = t->Describe();
  std::printf("topic %s: %d partitions, backend %s, fsync %s\n", d.name.c_str(),
              d.config.partitions, std::string(broker::BackendName(d.config.backend)).c_str(),
              std::string(broker::FsyncPolicyName(d.config.fsync)).c_str());
  for (const auto& p : d.partitions) {
    std::printf("  partition %d: offsets [%lld, %lld) bytes %lld segments %lld\n", p.partition,
                static_cast<long long>(p.stats.first_offset),
                static_cast<long long>(p.stats.next_offset),
                static_cast<long long>(p.stats.size_bytes),
                static_cast<long long>(p.stats.segments));
  }
  return absl::OkStatus();
}

absl::Status Demo(Broker& broker) {
  broker::TopicConfig config;
  config.partitions = 3;
  ONCE_RETURN_IF_ERROR(broker.CreateTopic("demo", config).status());
  ONCE_ASSIGN_OR_RETURN(auto topic, broker.GetTopic("demo"));
  std::vector<broker::Record> records;
  for (const char* account : {"alice", "bob", "carol", "alice", "bob"}) {
    broker::Record r;
    r.key = account;
    r.flags = broker::kRecordHasKey;
    r.value = absl::StrFormat("{\"account\":\"%s\",\"amount\":10}", account);
    records.push_back(std::move(r));
  }
  ONCE_ASSIGN_OR_RETURN(auto results, topic->Publish(std::move(records)));
  std::printf("appended %zu messages to topic demo (durable: fsync=always)\n", results.size());
  for (int p = 0; p < topic->partition_count(); ++p) {
    ONCE_ASSIGN_OR_RETURN(auto stored, topic->Read(p, topic->partition(p)->FirstOffset(), {}));
    for (const auto& r : stored) PrintRecord(p, r);
  }
  return Describe(broker, "demo");
}

absl::Status Run(const std::vector<std::string>& args) {
  if (args.empty()) return absl::InvalidArgumentError(absl::StrCat("no command\n", kUsage));
  const std::string& command = args[0];
  if (command != "demo" && command != "create" && command != "append" && command != "read" &&
      command != "describe" && command != "list" && command != "delete") {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'\n", kUsage));
  }
  broker::BrokerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  ONCE_ASSIGN_OR_RETURN(auto broker, Broker::Open(options));

  if (command == "demo") return Demo(*broker);
  if (command == "list") {
    for (const auto& name : broker->ListTopics()) std::printf("%s\n", name.c_str());
    return absl::OkStatus();
  }
  if (args.size() < 2) return WrongArgs(command, "a TOPIC");
  const std::string& topic = args[1];
  if (command == "create") {
    if (args.size() != 2) return WrongArgs(command, "exactly one TOPIC");
    return Create(*broker, topic);
  }
  if (command == "append") {
    if (args.size() < 3) return WrongArgs(command, "a TOPIC and at least one VALUE");
    return Append(*broker, topic, std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (args.size() != 2) return WrongArgs(command, "exactly one TOPIC");
  if (command == "read") {
    return Read(*broker, topic, absl::GetFlag(FLAGS_partition), absl::GetFlag(FLAGS_offset),
                absl::GetFlag(FLAGS_max));
  }
  if (command == "describe") return Describe(*broker, topic);
  ONCE_RETURN_IF_ERROR(broker->DeleteTopic(topic));
  std::printf("deleted topic %s\n", topic.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace once

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(once::kUsage);
  // Output is the records; what the broker logs (recovery notes) goes to stderr.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("once-log"));
  if (const char* env = std::getenv("ONCE_DATA_DIR"); env != nullptr && *env != '\0') {
    absl::SetFlag(&FLAGS_data_dir, env);
  }
  once::NormalizeFlagDashes(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  absl::Status status = once::Run(args);
  if (!status.ok()) {
    std::fprintf(stderr, "once-log: %s\n", status.ToString().c_str());
    return 2;
  }
  return 0;
}
