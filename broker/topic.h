// A topic: N partition logs, the partitioner, producer dedup and retention.
#ifndef ONCE_BROKER_TOPIC_H_
#define ONCE_BROKER_TOPIC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/log.h"
#include "broker/record.h"
#include "broker/topic_config.h"

namespace once::broker {

struct PublishResult {
  int partition = 0;
  int64_t offset = 0;
  bool duplicate = false;  // an idempotency key seen within the dedup window
};

struct PartitionDescription {
  int partition = 0;
  LogStats stats;
};

struct TopicDescription {
  std::string name;
  TopicConfig config;
  std::vector<PartitionDescription> partitions;
};

class Topic {
 public:
  virtual ~Topic() = default;

  virtual const std::string& name() const = 0;
  virtual const TopicConfig& config() const = 0;
  int partition_count() const { return config().partitions; }

  // Publishes `messages` (offset and timestamp are assigned here) and returns
  // one result per message, in order. Messages with a key go to the
  // partition of PartitionForKey(); those without, round-robin. One Append
  // per partition touched, so a batch costs one durable write per partition.
  // Answers only once every message is durable under the topic's policy.
  // Errors: kInvalidArgument for an empty batch or a message over
  // max_message_bytes (nothing of the batch is stored),
  // kResourceExhausted when a memory topic's budget is full. Thread-safe.
  virtual absl::StatusOr<std::vector<PublishResult>> Publish(std::vector<Record> messages) = 0;

  using PublishCallback = absl::AnyInvocable<void(absl::StatusOr<std::vector<PublishResult>>) &&>;

  // Publish without waiting: `done` gets what Publish would have returned,
  // when it would have returned it, on this thread (maybe before this
  // returns) or on a thread of the logs' executor. The checks that refuse a
  // whole batch (and a wait for a concurrent publisher of the same
  // idempotency key) happen on this thread. `done` must be quick, and must
  // not hold the last reference to the topic (the topic waits for its
  // appends in flight when destroyed). This default calls Publish.
  virtual void PublishAsync(std::vector<Record> messages, PublishCallback done) {
    std::move(done)(Publish(std::move(messages)));
  }

  // Reads one partition; as Log::Read, plus kInvalidArgument for a
  // partition out of range. Thread-safe.
  virtual absl::StatusOr<std::vector<Record>> Read(int partition, int64_t offset,
                                                   ReadLimits limits) const = 0;

  // The partition's log, for consumer groups. nullptr when out of range.
  // The Topic owns it; valid while the Topic lives.
  virtual Log* partition(int index) const = 0;
  // The partition's log as exactly-once groups read it: records are there
  // once written, before they are durable (see Log::ReadWritten); the 2PC
  // coordinator waits with Log::WhenDurable before it decides. Same
  // ownership as partition().
  virtual Log* written_partition(int index) const { return partition(index); }

  virtual TopicDescription Describe() const = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_TOPIC_H_
