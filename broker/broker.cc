// The Broker: a registry of PartitionedTopics over a data directory.
//
// Layout (see broker/topic_metadata.md):
//   <data_dir>/topics/<name>/topic.meta      the topic's metadata
//   <data_dir>/topics/<name>/<partition>/    a disk partition's DiskLog
//   <data_dir>/topics/#creating-<name>/      a topic being created
//   <data_dir>/topics/#deleted-<name>-<n>/   a topic being deleted
// '#' never occurs in a topic name, so the staging and tombstone directories
// can never be mistaken for topics.
//
// Crash safety:
//  - CreateTopic builds the whole directory (partition directories and a
//    durable topic.meta) under #creating-<name>, then renames it to <name>
//    and fsyncs topics/. The rename is the commit point: before it the topic
//    does not exist, after it the topic is complete.
//  - DeleteTopic renames <name> to a tombstone and fsyncs topics/ (the commit
//    point), then removes the tombstone. A crash in the removal leaves only
//    a tombstone, never half a topic under its name.
//  - Open removes every leftover '#' directory.
#include "broker/broker.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "broker/disk_log.h"
#include "broker/log.h"
#include "broker/memory_log.h"
#include "broker/partitioned_topic.h"
#include "broker/task_pool.h"
#include "broker/topic_config.h"
#include "broker/topic_metadata.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

namespace {

namespace fs = std::filesystem;

constexpr char kTopicsDirName[] = "topics";
constexpr char kCreatingPrefix[] = "#creating-";
constexpr char kDeletedPrefix[] = "#deleted-";

absl::Status FsError(const std::error_code& ec, absl::string_view what, const fs::path& path) {
  return absl::ErrnoToStatus(ec.value(), absl::StrCat(what, " ", path.string()));
}

absl::Status SyncDir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open directory ", dir.string()));
  absl::Status s;
  if (::fsync(fd) != 0) s = absl::ErrnoToStatus(errno, absl::StrCat("fsync ", dir.string()));
  ::close(fd);
  return s;
}

// Best effort: leftovers are removed again at the next Open.
void RemoveTree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) spdlog::warn("broker: could not remove {}: {}", path.string(), ec.message());
}

// "partitions 3 (asked 4), fsync always (asked never)" for the settings
// that differ.
std::string ConfigDiff(const TopicConfig& have, const TopicConfig& want) {
  std::vector<std::string> parts;
  auto num = [&](absl::string_view field, int64_t h, int64_t w) {
    if (h != w) parts.push_back(absl::StrCat(field, " ", h, " (asked ", w, ")"));
  };
  num("partitions", have.partitions, want.partitions);
  if (have.backend != want.backend) {
    parts.push_back(absl::StrCat("backend ", BackendName(have.backend), " (asked ",
                                 BackendName(want.backend), ")"));
  }
  if (have.fsync != want.fsync) {
    parts.push_back(absl::StrCat("fsync ", FsyncPolicyName(have.fsync), " (asked ",
                                 FsyncPolicyName(want.fsync), ")"));
  }
  num("fsync_interval_ms", have.fsync_interval_ms, want.fsync_interval_ms);
  num("retention_ms", have.retention_ms, want.retention_ms);
  num("retention_bytes", have.retention_bytes, want.retention_bytes);
  num("max_message_bytes", have.max_message_bytes, want.max_message_bytes);
  num("dedup_window_ms", have.dedup_window_ms, want.dedup_window_ms);
  num("dedup_max_entries", have.dedup_max_entries, want.dedup_max_entries);
  num("segment_bytes", have.segment_bytes, want.segment_bytes);
  std::string out;
  for (const std::string& p : parts) absl::StrAppend(&out, out.empty() ? "" : ", ", p);
  return out;
}

class BrokerImpl final : public Broker {
 public:
  explicit BrokerImpl(BrokerOptions options)
      : options_(std::move(options)),
        topics_dir_(fs::path(options_.data_dir) / kTopicsDirName),
        budget_(std::make_shared<MemoryBudget>(options_.memory_budget_bytes)),
        append_pool_(std::make_shared<TaskPool>(options_.append_threads)) {}

  // Creates the directories and opens every topic found. Called once,
  // before the broker is shared.
  absl::Status Load() {
    std::error_code ec;
    const bool created = fs::create_directories(topics_dir_, ec);
    if (ec) return FsError(ec, "create directory", topics_dir_);
    if (created) {
      // Make the new directories' entries durable, up to data_dir.
      ONCE_RETURN_IF_ERROR(SyncDir(topics_dir_.parent_path()));
    }
    std::vector<fs::path> topic_dirs;
    for (fs::directory_iterator it(topics_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& path = it->path();
      const std::string entry = path.filename().string();
      if (absl::StartsWith(entry, "#")) {
        // A creation or deletion that a crash interrupted: before its commit
        // point (creating) or after it (deleted), so the topic is absent
        // either way.
        spdlog::warn("broker: removing {} left by an interrupted create or delete", path.string());
        RemoveTree(path);
        continue;
      }
      std::error_code type_ec;
      if (!it->is_directory(type_ec)) {
        spdlog::warn("broker: ignoring {}: not a topic directory", path.string());
        continue;
      }
      if (!ValidateTopicName(entry).ok()) {
        spdlog::warn("broker: ignoring {}: not a valid topic name", path.string());
        continue;
      }
      topic_dirs.push_back(path);
    }
    if (ec) return FsError(ec, "list directory", topics_dir_);

    for (const fs::path& dir : topic_dirs) {
      const std::string name = dir.filename().string();
      absl::StatusOr<TopicMetadata> meta = ReadTopicMetadata(dir.string());
      if (absl::IsNotFound(meta.status())) {
        // CreateTopic renames a directory into place only once its metadata
        // is durable: a topic directory without it lost the file.
        return absl::DataLossError(
            absl::StrCat("topic directory ", dir.string(), " has no ", kTopicMetadataFileName));
      }
      if (!meta.ok()) return meta.status();
      if (meta->name != name) {
        return absl::DataLossError(
            absl::StrCat("topic metadata ", (dir / kTopicMetadataFileName).string(),
                         " names topic '", meta->name, "', not its directory's '", name, "'"));
      }
      // A write of topic.meta interrupted before its rename.
      fs::remove(dir / absl::StrCat(kTopicMetadataFileName, ".tmp"), ec);
      ONCE_ASSIGN_OR_RETURN(std::shared_ptr<PartitionedTopic> topic, OpenTopic(dir, *meta));
      absl::MutexLock lock(&mu_);
      topics_.emplace(name, std::move(topic));
    }
    spdlog::info("broker: opened {} with {} topics", topics_dir_.string(), topic_dirs.size());
    return absl::OkStatus();
  }

  absl::StatusOr<CreateOutcome> CreateTopic(absl::string_view name,
                                            const TopicConfig& config) override {
    ONCE_RETURN_IF_ERROR(ValidateTopicName(name));
    ONCE_RETURN_IF_ERROR(ValidateTopicConfig(config));
    // Creations and deletions are rare and do I/O: one at a time, outside
    // mu_ so that lookups and publishes never wait for them.
    absl::MutexLock admin(&admin_mu_);
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = topics_.find(name);
      if (it != topics_.end()) {
        const TopicConfig& have = it->second->config();
        if (have == config) return CreateOutcome::kAlreadyExists;
        return absl::FailedPreconditionError(absl::StrCat(
            "topic '", name, "' exists with other settings: ", ConfigDiff(have, config)));
      }
    }
    const fs::path final_dir = topics_dir_ / std::string(name);
    const fs::path staging = topics_dir_ / absl::StrCat(kCreatingPrefix, name);
    std::error_code ec;
    if (fs::exists(final_dir, ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create topic '", name, "': ", final_dir.string(),
                       " exists but is not a topic of this broker; move it away first"));
    }

    TopicMetadata meta;
    meta.name = std::string(name);
    meta.config = config;
    meta.created_ms = options_.clock->NowMs();
    absl::Status s = BuildTopicDir(staging, meta);
    if (!s.ok()) {
      RemoveTree(staging);
      return s;
    }
    if (fs::rename(staging, final_dir, ec); ec) {
      RemoveTree(staging);
      return FsError(ec, absl::StrCat("rename ", staging.string(), " to"), final_dir);
    }
    // The commit point: once this returns, the topic survives a crash.
    ONCE_RETURN_IF_ERROR(SyncDir(topics_dir_));

    absl::StatusOr<std::shared_ptr<PartitionedTopic>> topic = OpenTopic(final_dir, meta);
    if (!topic.ok()) {
      // Do not leave a durable topic that could not be opened behind.
      const fs::path tomb = NextTombstone(name);
      if (fs::rename(final_dir, tomb, ec); !ec && SyncDir(topics_dir_).ok()) RemoveTree(tomb);
      return topic.status();
    }
    {
      absl::MutexLock lock(&mu_);
      topics_.emplace(std::string(name), *std::move(topic));
    }
    spdlog::info("broker: created topic '{}' ({} {} partitions)", std::string(name),
                 config.partitions, std::string(BackendName(config.backend)));
    return CreateOutcome::kCreated;
  }

  absl::Status DeleteTopic(absl::string_view name) override {
    absl::MutexLock admin(&admin_mu_);
    std::shared_ptr<PartitionedTopic> topic;
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = topics_.find(name);
      if (it == topics_.end()) return NotFound(name);
      topic = it->second;
    }
    // Fence first: once the directory is moved away, a holder of this topic
    // must not write, roll segments or remove files under the old path,
    // where a new topic of the same name may soon live.
    topic->MarkDeleted();
    const fs::path dir = topics_dir_ / std::string(name);
    const fs::path tomb = NextTombstone(name);
    std::error_code ec;
    if (fs::rename(dir, tomb, ec); ec) {
      topic->UnmarkDeleted();
      return FsError(ec, absl::StrCat("delete topic '", name, "': rename ", dir.string(), " to"),
                     tomb);
    }
    {
      // Readers holding the shared_ptr keep reading what the logs have
      // open; the memory goes when the last of them lets go.
      absl::MutexLock lock(&mu_);
      topics_.erase(std::string(name));
    }
    // The commit point of the deletion.
    absl::Status s = SyncDir(topics_dir_);
    RemoveTree(tomb);
    if (!s.ok()) return s;
    spdlog::info("broker: deleted topic '{}'", std::string(name));
    return absl::OkStatus();
  }

  absl::StatusOr<std::shared_ptr<Topic>> GetTopic(absl::string_view name) const override {
    absl::ReaderMutexLock lock(&mu_);
    auto it = topics_.find(name);
    if (it == topics_.end()) return NotFound(name);
    return std::shared_ptr<Topic>(it->second);
  }

  std::vector<std::string> ListTopics() const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<std::string> names;
    names.reserve(topics_.size());
    for (const auto& [name, topic] : topics_) names.push_back(name);
    return names;
  }

  absl::Status RunMaintenance() override {
    std::vector<std::shared_ptr<PartitionedTopic>> topics;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (const auto& [name, topic] : topics_) topics.push_back(topic);
    }
    const int64_t now = options_.clock->NowMs();
    absl::Status first_error;
    for (const auto& topic : topics) {
      absl::Status s = topic->RunMaintenance(now);
      if (!s.ok()) {
        spdlog::warn("broker: maintenance: {}", s.ToString());
        if (first_error.ok()) first_error = s;
      }
    }
    return first_error;
  }

  const BrokerOptions& options() const override { return options_; }

 private:
  static absl::Status NotFound(absl::string_view name) {
    return absl::NotFoundError(absl::StrCat("topic '", name, "' does not exist"));
  }

  // Writes a complete topic directory at `dir` (removing a leftover first):
  // the partition directories of a disk topic, then a durable topic.meta
  // (WriteTopicMetadata fsyncs `dir`, which also makes the partition
  // directories' entries durable).
  absl::Status BuildTopicDir(const fs::path& dir, const TopicMetadata& meta) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) return FsError(ec, "remove leftover", dir);
    if (fs::create_directory(dir, ec); ec) return FsError(ec, "create directory", dir);
    if (meta.config.backend == Backend::kDisk) {
      for (int p = 0; p < meta.config.partitions; ++p) {
        const fs::path part = dir / std::to_string(p);
        if (fs::create_directory(part, ec); ec) return FsError(ec, "create directory", part);
      }
    }
    return WriteTopicMetadata(dir.string(), meta);
  }

  // Opens the logs of the topic in `dir` and the topic over them.
  absl::StatusOr<std::shared_ptr<PartitionedTopic>> OpenTopic(const fs::path& dir,
                                                              const TopicMetadata& meta) {
    const TopicConfig& c = meta.config;
    std::vector<std::unique_ptr<Log>> logs;
    logs.reserve(static_cast<size_t>(c.partitions));
    std::shared_ptr<MemoryBudget> budget;
    for (int p = 0; p < c.partitions; ++p) {
      if (c.backend == Backend::kMemory) {
        budget = budget_;
        logs.push_back(NewMemoryLog(budget_.get()));
        continue;
      }
      DiskLogOptions o;
      o.dir = (dir / std::to_string(p)).string();
      o.fsync = c.fsync;
      o.fsync_interval_ms = c.fsync_interval_ms;
      o.segment_bytes = c.segment_bytes;
      o.on_corruption = options_.on_corruption;
      o.clock = options_.clock;
      o.on_written = [listener = written_listener_, name = meta.name] { listener->Call(name); };
      if (c.fsync == FsyncPolicy::kAlways) {
        // The pool lives as long as a log that posts to it.
        o.executor = [pool = append_pool_](absl::AnyInvocable<void()> task) {
          pool->Post(std::move(task));
        };
      }
      absl::StatusOr<std::unique_ptr<DiskLog>> log = DiskLog::Open(std::move(o));
      if (!log.ok()) {
        return absl::Status(log.status().code(), absl::StrCat("topic '", meta.name, "' partition ",
                                                              p, ": ", log.status().message()));
      }
      logs.push_back(*std::move(log));
    }
    ONCE_ASSIGN_OR_RETURN(
        std::unique_ptr<PartitionedTopic> topic,
        PartitionedTopic::Open(meta.name, c, std::move(logs), options_.clock, std::move(budget)));
    return std::shared_ptr<PartitionedTopic>(std::move(topic));
  }

  void SetWrittenListener(WrittenListener listener) override {
    written_listener_->Set(std::move(listener));
  }

  fs::path NextTombstone(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_) {
    return topics_dir_ /
           absl::StrCat(kDeletedPrefix, name, "-", options_.clock->NowMs(), "-", ++tombstones_);
  }

  const BrokerOptions options_;
  const fs::path topics_dir_;
  // Shared by every memory topic; topics hold it too, so it outlives their
  // logs even when a reader keeps a topic after the broker is gone.
  const std::shared_ptr<MemoryBudget> budget_;
  // Runs the asynchronous group commits of the fsync=always partitions.
  // Held by their logs too; a log is never destroyed on one of its threads
  // (no append callback holds a topic).
  const std::shared_ptr<TaskPool> append_pool_;
  // SetWrittenListener's function, shared with the disk logs (a topic may
  // outlive the broker).
  class SharedListener {
   public:
    // Returns once no call of the old function is running.
    void Set(WrittenListener f) {
      absl::MutexLock lock(&mu_);
      f_ = std::move(f);
    }
    // Held shared across the call: concurrent calls from several logs'
    // group commits run side by side.
    void Call(absl::string_view topic) const {
      absl::ReaderMutexLock lock(&mu_);
      if (f_) f_(topic);
    }

   private:
    mutable absl::Mutex mu_;
    WrittenListener f_ ABSL_GUARDED_BY(mu_);
  };
  const std::shared_ptr<SharedListener> written_listener_ = std::make_shared<SharedListener>();

  // Serializes CreateTopic and DeleteTopic. Taken before mu_, never after.
  absl::Mutex admin_mu_;
  uint64_t tombstones_ ABSL_GUARDED_BY(admin_mu_) = 0;

  mutable absl::Mutex mu_;
  // std::less<> for lookups by string_view; ordered for ListTopics.
  std::map<std::string, std::shared_ptr<PartitionedTopic>, std::less<>> topics_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Broker>> Broker::Open(BrokerOptions options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is empty");
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  if (options.memory_budget_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_budget_bytes must be >= 0, not ", options.memory_budget_bytes));
  }
  if (options.append_threads < 1 || options.append_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("append_threads must be in 1..64, not ", options.append_threads));
  }
  auto broker = std::make_unique<BrokerImpl>(std::move(options));
  ONCE_RETURN_IF_ERROR(broker->Load());
  return std::unique_ptr<Broker>(std::move(broker));
}

}  // namespace once::broker
