// The broker's topic registry: creates, opens, lists and deletes topics in a
// data directory. No networking and no 2PC live here.
#ifndef ONCE_BROKER_BROKER_H_
#define ONCE_BROKER_BROKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/topic.h"
#include "broker/topic_config.h"
#include "schema/clock.h"

namespace once::broker {

// What to do with damage found in the middle of a disk segment at open.
enum class CorruptionPolicy {
  kRefuse,    // the partition (and so Broker::Open) fails with kDataLoss
  kTruncate,  // cut the segment at the damage, drop later segments, log it
};

struct BrokerOptions {
  std::string data_dir = "./data";
  Clock* clock = SystemClock();  // not owned; outlives the broker
  // Shared by every memory topic: appends past it fail kResourceExhausted.
  int64_t memory_budget_bytes = int64_t{1} << 30;
  CorruptionPolicy on_corruption = CorruptionPolicy::kRefuse;
  // Threads that run the group commits of fsync=always partitions appended
  // to with Log::AppendAsync (Topic::PublishAsync, and a Publish's partitions
  // but the last): how many partitions' fdatasyncs can overlap. 1..64.
  int append_threads = 4;
};

// CreateTopic's answer when it succeeds.
enum class CreateOutcome { kCreated, kAlreadyExists };

class Broker {
 public:
  // Opens (creating when missing) `options.data_dir`/topics, recovering every
  // topic found there: metadata is checked, disk partitions are recovered
  // (torn tails truncated and reported), memory topics come back empty.
  static absl::StatusOr<std::unique_ptr<Broker>> Open(BrokerOptions options);

  virtual ~Broker() = default;

  // kCreated, or kAlreadyExists when a topic of that name has the same
  // config. Errors: kInvalidArgument (bad name or config),
  // kFailedPrecondition (exists with other settings). The metadata is
  // durable before this returns. Thread-safe.
  virtual absl::StatusOr<CreateOutcome> CreateTopic(absl::string_view name,
                                                    const TopicConfig& config) = 0;

  // Removes the topic and its files. kNotFound when absent. Readers holding
  // the shared_ptr keep a usable (but orphaned) topic until they drop it.
  virtual absl::Status DeleteTopic(absl::string_view name) = 0;

  // kNotFound when absent. Thread-safe.
  virtual absl::StatusOr<std::shared_ptr<Topic>> GetTopic(absl::string_view name) const = 0;

  // Names in lexicographic order.
  virtual std::vector<std::string> ListTopics() const = 0;

  // Runs retention over every topic once (the service calls it periodically),
  // and syncs logs with fsync=interval whose interval elapsed.
  virtual absl::Status RunMaintenance() = 0;

  virtual const BrokerOptions& options() const = 0;

  // Called with a topic's name after each group commit of one of its
  // fsync=always partitions wrote records, before their fdatasync
  // (DiskLogOptions::on_written): the service wakes the topic's
  // exactly-once groups with it (they read written records; see
  // Topic::written_partition). Quick; must not append to that topic nor
  // call SetWrittenListener. The GroupRegistry sets it; an empty function
  // stops the calls (SetWrittenListener returns once none is running).
  using WrittenListener = std::function<void(absl::string_view topic)>;
  virtual void SetWrittenListener(WrittenListener listener) = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_BROKER_H_
