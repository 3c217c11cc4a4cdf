// The Topic implementation: N partition logs (memory or disk), the
// partitioner, producer dedup and retention.
#ifndef ONCE_BROKER_PARTITIONED_TOPIC_H_
#define ONCE_BROKER_PARTITIONED_TOPIC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "broker/dedup_index.h"
#include "broker/log.h"
#include "broker/memory_log.h"
#include "broker/partitioner.h"
#include "broker/record.h"
#include "broker/topic.h"
#include "broker/topic_config.h"
#include "schema/clock.h"

namespace once::broker {

class PartitionedTopic final : public Topic {
 public:
  // Builds a topic over `partitions` (config.partitions logs, index =
  // partition number), which it takes. `config` must be valid. `clock` is
  // not owned and must outlive the topic. `budget` is the memory budget the
  // logs charge (null for disk topics): held here so that it outlives the
  // logs even when a reader keeps the topic after the Broker is gone.
  //
  // When dedup is on, rebuilds the dedup index from the records stamped in
  // the last dedup_window_ms (so it survives restarts of disk topics);
  // reading them may fail like Log::Read, with the partition named.
  static absl::StatusOr<std::unique_ptr<PartitionedTopic>> Open(
      std::string name, TopicConfig config, std::vector<std::unique_ptr<Log>> partitions,
      Clock* clock, std::shared_ptr<MemoryBudget> budget = nullptr);

  // Waits for the appends in flight (their callbacks use the topic).
  ~PartitionedTopic() override;
  PartitionedTopic(const PartitionedTopic&) = delete;
  PartitionedTopic& operator=(const PartitionedTopic&) = delete;

  const std::string& name() const override { return name_; }
  const TopicConfig& config() const override { return config_; }

  // As Topic::Publish. Details:
  //  - Every message is checked before anything is stored.
  //  - A non-empty key sets kRecordHasKey; timestamp_ms is stamped with the
  //    clock's now for the whole batch.
  //  - Idempotency keys (when dedup_window_ms > 0): a repeat of a key stored
  //    within the window, or of an earlier message of the same batch,
  //    answers that message's partition and offset with duplicate=true and
  //    is not stored. A concurrent publish of a key being stored waits for
  //    it to finish.
  //  - The partitions' appends are in flight together (Log::AppendAsync):
  //    on disk with fsync=always and an executor their fdatasyncs overlap.
  //  - When some partitions' appends fail, the call fails with the first
  //    error and the partition it came from; the others' messages are
  //    stored (and their idempotency keys registered, so a retry of the
  //    batch with idempotency keys stores each message once).
  absl::StatusOr<std::vector<PublishResult>> Publish(std::vector<Record> messages) override;
  // As Topic::PublishAsync, with Publish's details.
  void PublishAsync(std::vector<Record> messages, PublishCallback done) override;

  absl::StatusOr<std::vector<Record>> Read(int partition, int64_t offset,
                                           ReadLimits limits) const override;
  Log* partition(int index) const override;
  Log* written_partition(int index) const override;
  TopicDescription Describe() const override;

  // One maintenance pass at `now_ms`: retention on every partition, a Sync
  // of every partition when fsync=interval and fsync_interval_ms passed since
  // the last one, and expiry of old dedup entries. Keeps going past a
  // failing partition; returns the first error. Thread-safe.
  absl::Status RunMaintenance(int64_t now_ms);

  // Null when dedup_window_ms == 0. For tests and metrics.
  const DedupIndex* dedup_index() const { return dedup_.get(); }

  // Fences the topic for deletion: waits for every Append, AppendAsync,
  // TrimBefore, EnforceRetention and Sync in progress on its partitions to
  // finish (an AppendAsync: its callback to return), and
  // makes later ones (and Publish) fail kNotFound. Reads keep working on
  // what the logs have open. Broker::DeleteTopic calls this before it moves
  // the topic's directory away, so that a holder of the old topic can never
  // write into, or remove files from, a topic later created under the same
  // name. Thread-safe.
  void MarkDeleted();
  // Undoes MarkDeleted, when the deletion could not go through.
  void UnmarkDeleted();

 private:
  PartitionedTopic(std::string name, TopicConfig config,
                   std::vector<std::unique_ptr<Log>> partitions, Clock* clock,
                   std::shared_ptr<MemoryBudget> budget);

  absl::Status RebuildDedupIndex();
  absl::Status DeletedError() const;

  struct PendingPublish;
  // PublishAsync; `caller_waits` (Publish) lets a one-partition publish
  // append with a blocking Append.
  void StartPublish(std::vector<Record> messages, bool caller_waits, PublishCallback done);
  // What refuses a whole publish before anything is stored.
  absl::Status CheckPublish(const std::vector<Record>& messages) const;
  // Answers a publish once its appends completed.
  void FinishPublish(PendingPublish& pending);

  // AppendAsync calls through the FencedLogs, from the call to the return
  // of the callback.
  void BeginAsyncAppend() const ABSL_LOCKS_EXCLUDED(async_mu_);
  void EndAsyncAppend() const ABSL_LOCKS_EXCLUDED(async_mu_);
  // Returns once none is in flight. Not from an append's callback.
  void WaitForAsyncAppends() const ABSL_LOCKS_EXCLUDED(async_mu_);

  // The Log that partition() hands out and Publish appends through: it
  // forwards to the real log, holding fence_mu_ shared around every call
  // that changes files, and refuses them once the topic is deleted.
  class FencedLog;
  static std::vector<std::unique_ptr<Log>> Fenced(std::vector<std::unique_ptr<Log>> logs,
                                                  const PartitionedTopic* topic);
  class WrittenView;
  static std::vector<std::unique_ptr<Log>> WrittenViews(
      const std::vector<std::unique_ptr<Log>>& logs);

  const std::string name_;
  const TopicConfig config_;
  Clock* const clock_;
  // Declared before partitions_ so that it is destroyed after them: memory
  // logs give their bytes back to it when destroyed.
  const std::shared_ptr<MemoryBudget> budget_;
  const std::vector<std::unique_ptr<Log>> partitions_;     // FencedLogs
  const std::vector<std::unique_ptr<Log>> written_views_;  // WrittenViews of partitions_
  Partitioner partitioner_;
  const std::unique_ptr<DedupIndex> dedup_;

  // Held shared by mutating log calls (across their I/O: only MarkDeleted
  // ever waits for it), exclusively by MarkDeleted.
  mutable absl::Mutex fence_mu_;
  bool deleted_ ABSL_GUARDED_BY(fence_mu_) = false;

  mutable absl::Mutex async_mu_;
  mutable int async_appends_ ABSL_GUARDED_BY(async_mu_) = 0;

  absl::Mutex maintenance_mu_;
  int64_t last_sync_ms_ ABSL_GUARDED_BY(maintenance_mu_) = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_PARTITIONED_TOPIC_H_
