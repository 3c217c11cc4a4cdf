#include "broker/partitioned_topic.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "broker/forwarding_log.h"
#include "schema/status_macros.h"

namespace once::broker {

namespace {

// Rebuilding the dedup index reads the last window in chunks of this size.
constexpr ReadLimits kRebuildReadLimits{.max_records = 4096, .max_bytes = 16 << 20};

absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

// One partition's share of a Publish.
struct PartitionBatch {
  int partition = 0;
  std::vector<size_t> indices;  // positions in the Publish input
  std::vector<Record> records;  // in input order
  absl::StatusOr<int64_t> first_offset = absl::UnknownError("not appended");
};

}  // namespace

// Fences the calls that change files: they hold fence_mu_ shared and are
// refused once the topic is deleted. Reads go straight through.
class PartitionedTopic::FencedLog final : public ForwardingLog {
 public:
  FencedLog(std::unique_ptr<Log> inner, const PartitionedTopic* topic)
      : ForwardingLog(inner.get()), owned_(std::move(inner)), topic_(topic) {}

  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override {
    absl::ReaderMutexLock lock(&topic_->fence_mu_);
    if (topic_->deleted_) return topic_->DeletedError();
    return inner()->Append(records);
  }
  // Counted from here to its callback's return: MarkDeleted and the topic's
  // destructor wait for the appends in flight.
  void AppendAsync(std::vector<Record> records, AsyncStart start, AppendCallback done) override {
    bool deleted = false;
    {
      absl::ReaderMutexLock lock(&topic_->fence_mu_);
      deleted = topic_->deleted_;
      if (!deleted) topic_->BeginAsyncAppend();
    }
    if (deleted) {
      std::move(done)(topic_->DeletedError());
      return;
    }
    inner()->AppendAsync(
        std::move(records), start,
        [topic = topic_, done = std::move(done)](absl::StatusOr<int64_t> first) mutable {
          std::move(done)(std::move(first));
          topic->EndAsyncAppend();
        });
  }
  absl::Status TrimBefore(int64_t offset) override {
    absl::ReaderMutexLock lock(&topic_->fence_mu_);
    if (topic_->deleted_) return topic_->DeletedError();
    return inner()->TrimBefore(offset);
  }
  absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                int64_t retention_bytes) override {
    absl::ReaderMutexLock lock(&topic_->fence_mu_);
    if (topic_->deleted_) return topic_->DeletedError();
    return inner()->EnforceRetention(now_ms, retention_ms, retention_bytes);
  }
  absl::Status Sync() override {
    absl::ReaderMutexLock lock(&topic_->fence_mu_);
    if (topic_->deleted_) return topic_->DeletedError();
    return inner()->Sync();
  }

 private:
  const std::unique_ptr<Log> owned_;
  const PartitionedTopic* const topic_;
};

// What written_partition() hands out: the partition as ReadWritten sees it
// (NextOffset is WrittenOffset, Read is ReadWritten); the rest forwards to
// the FencedLog.
class PartitionedTopic::WrittenView final : public ForwardingLog {
 public:
  using ForwardingLog::ForwardingLog;

  absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const override {
    return inner()->ReadWritten(offset, limits);
  }
  int64_t NextOffset() const override { return inner()->WrittenOffset(); }
};

absl::StatusOr<std::unique_ptr<PartitionedTopic>> PartitionedTopic::Open(
    std::string name, TopicConfig config, std::vector<std::unique_ptr<Log>> partitions,
    Clock* clock, std::shared_ptr<MemoryBudget> budget) {
  if (absl::Status s = ValidateTopicConfig(config); !s.ok()) {
    return Annotate(s, absl::StrCat("topic '", name, "'"));
  }
  if (static_cast<int>(partitions.size()) != config.partitions) {
    return absl::InvalidArgumentError(absl::StrCat("topic '", name, "' has ", config.partitions,
                                                   " partitions but ", partitions.size(),
                                                   " logs were given"));
  }
  for (const auto& log : partitions) {
    if (log == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("topic '", name, "': a partition log is null"));
    }
  }
  if (clock == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("topic '", name, "': clock is null"));
  }
  std::unique_ptr<PartitionedTopic> topic(new PartitionedTopic(
      std::move(name), config, std::move(partitions), clock, std::move(budget)));

  if (topic->dedup_ != nullptr) ONCE_RETURN_IF_ERROR(topic->RebuildDedupIndex());
  return topic;
}

PartitionedTopic::PartitionedTopic(std::string name, TopicConfig config,
                                   std::vector<std::unique_ptr<Log>> partitions, Clock* clock,
                                   std::shared_ptr<MemoryBudget> budget)
    : name_(std::move(name)),
      config_(config),
      clock_(clock),
      budget_(std::move(budget)),
      partitions_(Fenced(std::move(partitions), this)),
      written_views_(WrittenViews(partitions_)),
      partitioner_(config.partitions),
      dedup_(config.dedup_window_ms > 0
                 ? std::make_unique<DedupIndex>(config.dedup_window_ms, config.dedup_max_entries)
                 : nullptr),
      last_sync_ms_(clock->NowMs()) {}

std::vector<std::unique_ptr<Log>> PartitionedTopic::Fenced(std::vector<std::unique_ptr<Log>> logs,
                                                           const PartitionedTopic* topic) {
  // `topic` is under construction: FencedLog only stores the pointer.
  for (std::unique_ptr<Log>& log : logs) log = std::make_unique<FencedLog>(std::move(log), topic);
  return logs;
}

std::vector<std::unique_ptr<Log>> PartitionedTopic::WrittenViews(
    const std::vector<std::unique_ptr<Log>>& logs) {
  std::vector<std::unique_ptr<Log>> views;
  views.reserve(logs.size());
  for (const std::unique_ptr<Log>& log : logs)
    views.push_back(std::make_unique<WrittenView>(log.get()));
  return views;
}

absl::Status PartitionedTopic::RebuildDedupIndex() {
  const int64_t from = clock_->NowMs() - config_.dedup_window_ms;
  struct Found {
    int64_t timestamp_ms;
    int partition;
    int64_t offset;
    std::string key;
  };
  std::vector<Found> found;
  for (int p = 0; p < config_.partitions; ++p) {
    const Log& log = *partitions_[p];
    const std::string context =
        absl::StrCat("topic '", name_, "' partition ", p, ": rebuilding the dedup index");
    absl::StatusOr<int64_t> start = log.OffsetForTime(from);
    if (!start.ok()) return Annotate(start.status(), context);
    int64_t offset = *start;
    const int64_t end = log.NextOffset();
    while (offset < end) {
      absl::StatusOr<std::vector<Record>> records = log.Read(offset, kRebuildReadLimits);
      if (!records.ok()) return Annotate(records.status(), context);
      if (records->empty()) break;
      for (Record& r : *records) {
        // OffsetForTime is exact only for ordered timestamps: filter again.
        if (r.idempotency_key.empty() || r.timestamp_ms < from) continue;
        found.push_back(Found{r.timestamp_ms, p, r.offset, std::move(r.idempotency_key)});
      }
      offset = records->back().offset + 1;
    }
  }
  // In publish order across partitions, so that the first publish of a key
  // wins and count eviction drops the oldest, as they did before the restart.
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.timestamp_ms, a.partition, a.offset) <
           std::tie(b.timestamp_ms, b.partition, b.offset);
  });
  for (const Found& f : found) {
    dedup_->Insert(f.key, DedupIndex::Location{f.partition, f.offset}, f.timestamp_ms);
  }
  return absl::OkStatus();
}

absl::Status PartitionedTopic::DeletedError() const {
  return absl::NotFoundError(absl::StrCat("topic '", name_, "' was deleted"));
}

PartitionedTopic::~PartitionedTopic() {
  // Their callbacks use the topic's members.
  WaitForAsyncAppends();
}

void PartitionedTopic::BeginAsyncAppend() const {
  absl::MutexLock lock(&async_mu_);
  ++async_appends_;
}

void PartitionedTopic::EndAsyncAppend() const {
  absl::MutexLock lock(&async_mu_);
  --async_appends_;
}

void PartitionedTopic::WaitForAsyncAppends() const {
  absl::MutexLock lock(&async_mu_);
  async_mu_.Await(absl::Condition(
      +[](int* appends) { return *appends == 0; }, &async_appends_));
}

void PartitionedTopic::MarkDeleted() {
  {
    absl::MutexLock lock(&fence_mu_);
    deleted_ = true;
  }
  // Not under fence_mu_: a callback may start another append (and be
  // refused), which takes it shared.
  WaitForAsyncAppends();
}

void PartitionedTopic::UnmarkDeleted() {
  absl::MutexLock lock(&fence_mu_);
  deleted_ = false;
}

// A PublishAsync between its appends and its answer: what the last
// partition's append callback needs to finish it.
struct PartitionedTopic::PendingPublish {
  int64_t now = 0;
  std::vector<PublishResult> results;
  // Index of the earlier message of this batch with the same idempotency
  // key, or -1. Such messages are answered from it and not stored.
  std::vector<int64_t> same_as;
  // The keys this call reserved, and the messages carrying them.
  std::vector<std::string> reserved_keys;
  std::vector<size_t> reserved_messages;
  std::vector<PartitionBatch> batches;
  std::vector<int> batch_of_message;
  std::atomic<size_t> appends_left{0};
  PublishCallback done;
};

absl::StatusOr<std::vector<PublishResult>> PartitionedTopic::Publish(std::vector<Record> messages) {
  absl::Mutex mu;
  std::optional<absl::StatusOr<std::vector<PublishResult>>> answer;
  StartPublish(std::move(messages), /*caller_waits=*/true,
               [&](absl::StatusOr<std::vector<PublishResult>> results) {
                 absl::MutexLock lock(&mu);
                 answer = std::move(results);
               });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](std::optional<absl::StatusOr<std::vector<PublishResult>>>* a) { return a->has_value(); },
      &answer));
  return *std::move(answer);
}

void PartitionedTopic::PublishAsync(std::vector<Record> messages, PublishCallback done) {
  StartPublish(std::move(messages), /*caller_waits=*/false, std::move(done));
}

void PartitionedTopic::StartPublish(std::vector<Record> messages, bool caller_waits,
                                    PublishCallback done) {
  if (absl::Status refused = CheckPublish(messages); !refused.ok()) {
    std::move(done)(refused);
    return;
  }
  auto pending = std::make_shared<PendingPublish>();
  pending->done = std::move(done);
  pending->now = clock_->NowMs();
  for (Record& m : messages) {
    m.timestamp_ms = pending->now;
    m.offset = 0;
    if (!m.key.empty()) m.flags |= kRecordHasKey;
  }

  const size_t n = messages.size();
  pending->results.resize(n);
  pending->same_as.assign(n, -1);
  // True when the dedup index answered the message (a duplicate).
  std::vector<bool> answered(n, false);

  if (dedup_ != nullptr) {
    std::vector<std::string> keys;
    std::vector<size_t> key_messages;
    {
      absl::flat_hash_map<absl::string_view, size_t> first_with_key;
      for (size_t i = 0; i < n; ++i) {
        const std::string& k = messages[i].idempotency_key;
        if (k.empty()) continue;
        auto [it, inserted] = first_with_key.try_emplace(k, i);
        if (!inserted) {
          pending->same_as[i] = static_cast<int64_t>(it->second);
          continue;
        }
        keys.push_back(k);
        key_messages.push_back(i);
      }
    }
    if (!keys.empty()) {
      // May wait for concurrent publishers of the same keys.
      std::vector<std::optional<DedupIndex::Location>> hits = dedup_->Reserve(keys, pending->now);
      for (size_t j = 0; j < keys.size(); ++j) {
        const size_t i = key_messages[j];
        if (hits[j].has_value()) {
          pending->results[i] =
              PublishResult{hits[j]->partition, hits[j]->offset, /*duplicate=*/true};
          answered[i] = true;
        } else {
          pending->reserved_keys.push_back(std::move(keys[j]));
          pending->reserved_messages.push_back(i);
        }
      }
    }
  }

  // Group what must be stored by partition, keeping input order.
  std::vector<PartitionBatch>& batches = pending->batches;
  std::vector<int> batch_of_partition(static_cast<size_t>(config_.partitions), -1);
  pending->batch_of_message.assign(n, -1);
  for (size_t i = 0; i < n; ++i) {
    if (pending->same_as[i] >= 0 || answered[i]) continue;
    const int p = partitioner_.Choose(messages[i]);
    int& b = batch_of_partition[static_cast<size_t>(p)];
    if (b < 0) {
      b = static_cast<int>(batches.size());
      batches.emplace_back();
      batches.back().partition = p;
    }
    pending->batch_of_message[i] = b;
    batches[b].indices.push_back(i);
    batches[b].records.push_back(std::move(messages[i]));
  }
  if (batches.empty()) {  // every message a duplicate
    FinishPublish(*pending);
    return;
  }
  if (caller_waits && batches.size() == 1) {
    // One partition and a thread that waits anyway: a blocking Append joins
    // the log's group commit with no hand-off between threads.
    PartitionBatch& batch = batches.front();
    batch.first_offset = partitions_[static_cast<size_t>(batch.partition)]->Append(batch.records);
    FinishPublish(*pending);
    return;
  }

  // The partitions' appends are in flight together: on disk with
  // fsync=always, their fdatasyncs overlap, all but the last one's on the
  // logs' executor (one after another would multiply the latency by the
  // partitions touched); the last may run here. The last one to complete
  // finishes the publish.
  pending->appends_left.store(batches.size(), std::memory_order_relaxed);
  for (size_t b = 0; b < batches.size(); ++b) {
    std::vector<Record> records = std::move(batches[b].records);
    const Log::AsyncStart start =
        b + 1 == batches.size() ? Log::AsyncStart::kHere : Log::AsyncStart::kExecutor;
    partitions_[static_cast<size_t>(batches[b].partition)]->AppendAsync(
        std::move(records), start, [this, pending, b](absl::StatusOr<int64_t> first) {
          pending->batches[b].first_offset = std::move(first);
          if (pending->appends_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            FinishPublish(*pending);
          }
        });
  }
}

absl::Status PartitionedTopic::CheckPublish(const std::vector<Record>& messages) const {
  {
    absl::ReaderMutexLock lock(&fence_mu_);
    if (deleted_) return DeletedError();
  }
  if (messages.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("publish to topic '", name_, "' has no messages"));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const size_t bytes = messages[i].PayloadBytes();
    if (static_cast<int64_t>(bytes) > config_.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, " of the batch to topic '", name_, "' has ", bytes,
          " bytes (key + idempotency key + headers + value), over the topic's max_message_bytes ",
          config_.max_message_bytes, "; nothing of the batch was stored"));
    }
  }
  return absl::OkStatus();
}

void PartitionedTopic::FinishPublish(PendingPublish& pending) {
  std::vector<PublishResult>& results = pending.results;
  absl::Status error;
  std::vector<int> stored_partitions;
  for (const PartitionBatch& batch : pending.batches) {
    if (!batch.first_offset.ok()) {
      if (error.ok()) {
        error = Annotate(batch.first_offset.status(),
                         absl::StrCat("topic '", name_, "' partition ", batch.partition));
      }
      continue;
    }
    stored_partitions.push_back(batch.partition);
    for (size_t j = 0; j < batch.indices.size(); ++j) {
      results[batch.indices[j]] = PublishResult{
          batch.partition, *batch.first_offset + static_cast<int64_t>(j), /*duplicate=*/false};
    }
  }

  if (dedup_ != nullptr && !pending.reserved_keys.empty()) {
    std::vector<DedupIndex::Stored> stored;
    std::vector<std::string> failed;
    for (size_t k = 0; k < pending.reserved_keys.size(); ++k) {
      const size_t i = pending.reserved_messages[k];
      const int b = pending.batch_of_message[i];
      if (pending.batches[b].first_offset.ok()) {
        stored.push_back(
            DedupIndex::Stored{std::move(pending.reserved_keys[k]),
                               DedupIndex::Location{results[i].partition, results[i].offset}});
      } else {
        failed.push_back(std::move(pending.reserved_keys[k]));
      }
    }
    if (!stored.empty()) dedup_->Commit(stored, pending.now);
    if (!failed.empty()) dedup_->Release(failed);
  }

  if (!error.ok()) {
    if (!stored_partitions.empty()) {
      std::sort(stored_partitions.begin(), stored_partitions.end());
      error = absl::Status(
          error.code(),
          absl::StrCat(error.message(), " (the batch's messages for partitions ",
                       absl::StrJoin(stored_partitions, ","),
                       " were stored; retrying with idempotency keys stores each message once)"));
    }
    std::move(pending.done)(error);
    return;
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (pending.same_as[i] < 0) continue;
    results[i] = results[static_cast<size_t>(pending.same_as[i])];
    results[i].duplicate = true;
  }
  std::move(pending.done)(std::move(results));
}

absl::StatusOr<std::vector<Record>> PartitionedTopic::Read(int partition, int64_t offset,
                                                           ReadLimits limits) const {
  if (partition < 0 || partition >= config_.partitions) {
    return absl::InvalidArgumentError(absl::StrCat("partition ", partition,
                                                   " is out of range: topic '", name_, "' has ",
                                                   config_.partitions, " partitions"));
  }
  return partitions_[static_cast<size_t>(partition)]->Read(offset, limits);
}

Log* PartitionedTopic::partition(int index) const {
  if (index < 0 || index >= config_.partitions) return nullptr;
  return partitions_[static_cast<size_t>(index)].get();
}

Log* PartitionedTopic::written_partition(int index) const {
  if (index < 0 || index >= config_.partitions) return nullptr;
  return written_views_[static_cast<size_t>(index)].get();
}

TopicDescription PartitionedTopic::Describe() const {
  TopicDescription d;
  d.name = name_;
  d.config = config_;
  d.partitions.reserve(partitions_.size());
  for (int p = 0; p < config_.partitions; ++p) {
    d.partitions.push_back(PartitionDescription{p, partitions_[static_cast<size_t>(p)]->Stats()});
  }
  return d;
}

absl::Status PartitionedTopic::RunMaintenance(int64_t now_ms) {
  absl::Status first_error;
  auto note = [&](const absl::Status& s, int p, absl::string_view what) {
    if (!s.ok() && first_error.ok()) {
      first_error = Annotate(s, absl::StrCat("topic '", name_, "' partition ", p, ": ", what));
    }
  };
  if (config_.retention_ms >= 0 || config_.retention_bytes >= 0) {
    for (int p = 0; p < config_.partitions; ++p) {
      note(partitions_[static_cast<size_t>(p)]->EnforceRetention(now_ms, config_.retention_ms,
                                                                 config_.retention_bytes),
           p, "retention");
    }
  }
  if (config_.backend == Backend::kDisk && config_.fsync == FsyncPolicy::kInterval) {
    bool due = false;
    {
      absl::MutexLock lock(&maintenance_mu_);
      if (now_ms - last_sync_ms_ >= config_.fsync_interval_ms) {
        last_sync_ms_ = now_ms;
        due = true;
      }
    }
    if (due) {
      for (int p = 0; p < config_.partitions; ++p) {
        note(partitions_[static_cast<size_t>(p)]->Sync(), p, "sync");
      }
    }
  }
  if (dedup_ != nullptr) dedup_->Expire(now_ms);
  return first_error;
}

}  // namespace once::broker
