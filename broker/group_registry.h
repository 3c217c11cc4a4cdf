// GroupRegistry: the consumer groups of a broker. Creates, opens,
// describes and deletes groups per topic; owns the group store (SQLite,
// broker/group_store.h) and the token codec; runs the lazy deadlines of
// every group (Tick) and reclaims log space every group is done with.
//
// Group state lives in the store for disk topics and in RAM for memory
// topics; the definitions of both are stored, so a memory topic's groups
// come back after a restart (empty, as the topic does). See
// broker/groups.md.
//
// Thread-safe. The registry's mutex guards only its map; it is held across
// the store write of CreateGroup/DeleteGroup (rare, and they must not
// interleave for one name), never across a group's own calls.
#ifndef ONCE_BROKER_GROUP_REGISTRY_H_
#define ONCE_BROKER_GROUP_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "broker/consumer_group.h"
#include "broker/group_config.h"
#include "broker/group_store.h"
#include "broker/group_token.h"
#include "schema/clock.h"
#include "schema/sqlite.h"

namespace once::broker {

struct GroupRegistryOptions {
  // The group store's SQLite file. Empty: <broker data_dir>/groups.db.
  // ":memory:" keeps even disk topics' group state in RAM (tests,
  // benchmarks): nothing survives the process.
  std::string db_path;
  // kFull: an ack is answered only once its commit is on stable storage.
  sqlite::Synchronous synchronous = sqlite::Synchronous::kFull;
  // Paces the group store's commits (GroupStoreOptions).
  absl::Duration min_commit_interval = absl::ZeroDuration();
  // nullptr: the broker's clock.
  Clock* clock = nullptr;
};

// One partition trimmed by ReclaimSpace.
struct TrimmedPartition {
  std::string topic;
  int partition = 0;
  int64_t before = 0;  // Log::TrimBefore's argument
};

class GroupRegistry {
 public:
  // Opens the store and every stored group. A group whose topic no longer
  // exists (deleted while the service was down) is deleted, and logged.
  // `broker` is not owned and must outlive the registry; the registry is
  // its written listener (NotifyWritten) while it lives, so one registry
  // per broker.
  static absl::StatusOr<std::unique_ptr<GroupRegistry>> Open(Broker* broker,
                                                             GroupRegistryOptions options);
  ~GroupRegistry();
  GroupRegistry(const GroupRegistry&) = delete;
  GroupRegistry& operator=(const GroupRegistry&) = delete;

  // kCreated, or kAlreadyExists when the group exists with the same
  // settings. Errors: kNotFound (no such topic), kInvalidArgument (bad
  // name or settings), kFailedPrecondition (exists with other settings).
  // The new group starts at config.start, resolved now per partition.
  // Durable on return.
  absl::StatusOr<CreateOutcome> CreateGroup(absl::string_view topic, absl::string_view name,
                                            const GroupConfig& config);

  // Deletes the group and its state. Outstanding tokens become invalid
  // (another incarnation). kNotFound when absent.
  absl::Status DeleteGroup(absl::string_view topic, absl::string_view name);

  // kNotFound naming what is missing (the topic or the group).
  absl::StatusOr<std::shared_ptr<ConsumerGroup>> GetGroup(absl::string_view topic,
                                                          absl::string_view name);
  absl::StatusOr<GroupDescription> DescribeGroup(absl::string_view topic, absl::string_view name);
  // The topic's group names, in order.
  std::vector<std::string> ListGroups(absl::string_view topic) const;

  // Deletes every group of `topic` (the service calls it when it deletes
  // the topic).
  absl::Status DeleteTopicGroups(absl::string_view topic);

  // Wakes the waiters of every group of `topic` (the service calls it
  // after a publish), but its exactly-once groups when NotifyWritten woke
  // them already (disk topics with fsync=always).
  void NotifyPublished(absl::string_view topic);
  // Wakes the exactly-once groups of `topic`: records were written to it,
  // not yet durable (the broker calls it: Broker::SetWrittenListener).
  void NotifyWritten(absl::string_view topic);

  // Runs every group's Tick; returns the first error (all groups run).
  absl::Status Tick();

  // For each partition of each topic that has groups, trims the log below
  // the lowest offset that every group of the topic is done with (memory
  // logs free those messages; disk logs drop whole segments below it).
  // Topics without groups are left to retention. Returns what it trimmed.
  absl::StatusOr<std::vector<TrimmedPartition>> ReclaimSpace();

  GroupStore* store() const { return store_.get(); }

 private:
  using Key = std::pair<std::string, std::string>;  // topic, group

  GroupRegistry(Broker* broker, Clock* clock, std::unique_ptr<GroupStore> store,
                DeliveryTokenCodec codec)
      : broker_(broker), clock_(clock), store_(std::move(store)), codec_(std::move(codec)) {}

  // Notifies the groups of `topic` that `wanted` picks.
  void NotifyGroups(absl::string_view topic, absl::FunctionRef<bool(const ConsumerGroup&)> wanted)
      ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<std::shared_ptr<ConsumerGroup>> MakeGroup(
      const StoredGroup& stored, std::shared_ptr<Topic> topic,
      const std::vector<StoredPartition>& partitions);
  // Drops groups whose topic object is no longer the broker's (deleted or
  // recreated under the same name).
  absl::Status DropStaleLocked(absl::string_view topic) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Broker* const broker_;
  Clock* const clock_;
  const std::unique_ptr<GroupStore> store_;
  const DeliveryTokenCodec codec_;

  mutable absl::Mutex mu_;
  absl::btree_map<Key, std::shared_ptr<ConsumerGroup>> groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_REGISTRY_H_
