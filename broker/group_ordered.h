// OrderedGroup: log semantics. Each partition is assigned to exactly one
// member of the group; a member reads its partitions in order from the
// partition's position, and an ack of a message commits the partition's
// offset past it (and so past every earlier message: acks are cumulative).
//
// Membership changes (a first Fetch or Join, a Leave, a session timeout)
// rebalance: the generation goes up, partitions are assigned round-robin
// over the members sorted by id (partition p -> member p mod n), and every
// partition rewinds to its committed offset. Tokens carry the generation:
// an ack from an older generation is refused (fencing), so a consumer that
// lost a partition can never commit on it.
//
// A delivery not acked within ack_timeout_ms rewinds its partition to it
// (redelivery with count + 1 after a backoff); a message that reached
// max_deliveries is dead-lettered when it is next due, and the partition
// moves on. A requeueing nack rewinds to the nacked message; a
// dead-lettering nack moves just that message to the dead-letter topic.
//
// Durability (disk groups, broker/groups.md): an ack is answered once the
// commit is durable, and a redelivery's count is durable before the
// redelivery is handed out.
//
// Code: group_ordered.cc (recovery, membership, rebalancing, expiry,
// Reset, Tick, Describe), group_ordered_fetch.cc (Fetch/Lease),
// group_ordered_settle.cc (Ack, Nack, Pin, AckPositions, dead-lettering,
// the commit write).
#ifndef ONCE_BROKER_GROUP_ORDERED_H_
#define ONCE_BROKER_GROUP_ORDERED_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "broker/consumer_group.h"
#include "broker/group_settle.h"

namespace once::broker {

class OrderedGroup final : public ConsumerGroup {
 public:
  // As SharedGroup::Create.
  static absl::StatusOr<std::unique_ptr<OrderedGroup>> Create(
      GroupContext ctx, const std::vector<StoredPartition>& stored,
      const std::vector<int64_t>& initial_floors);

  absl::Status Join(absl::string_view consumer) override;
  absl::Status Leave(absl::string_view consumer) override;
  absl::Status Heartbeat(absl::string_view consumer) override;
  absl::Status AckPositions(absl::Span<const MessagePosition> positions) override;
  absl::Status Reset(const Position& to, int partition) override;
  absl::Status Tick() override;
  GroupDescription Describe() const override;
  std::vector<int64_t> DoneFloors() const override;
  std::optional<int64_t> NextDeadlineMs() const override;
  void Close() override;

  uint32_t generation() const;

 private:
  struct Inflight {
    int64_t offset = 0;
    uint64_t sequence = 0;
    int32_t deliveries = 0;
    int64_t deadline_ms = 0;
    bool pinned = false;
    bool settling = false;
  };
  struct Partition {
    Log* log = nullptr;
    OffsetRangeSet done;                       // floor = the committed offset
    int64_t position = 0;                      // the next offset to deliver
    std::deque<Inflight> inflight;             // delivered since the last rewind, ascending
    int64_t not_before_ms = 0;                 // backoff after a rewind
    absl::btree_map<int64_t, int32_t> counts;  // deliveries made, offsets >= floor
    DirtyCounts dirty_counts;                  // counts not yet in the store
    PendingDeadLetters dead;
    int64_t dispatched = 0;  // offsets below were delivered at least once
    int64_t dispatched_persisted = 0;
    std::string owner;  // "" when unassigned
    int64_t acked = 0;
    int64_t dead_lettered = 0;
  };
  struct Reserved {
    int partition;
    int64_t offset;
    int32_t deliveries;
    uint64_t sequence;
  };
  struct Commit {
    int partition;
    int64_t upto;  // exclusive: the new committed offset is at least this
  };

  explicit OrderedGroup(GroupContext ctx) : ConsumerGroup(std::move(ctx)) {}

  absl::StatusOr<std::vector<Delivery>> FetchImpl(absl::string_view consumer, int max,
                                                  bool token_text, int alone_from) override;
  absl::StatusOr<AckResult> AckRefs(const TokenRefs& tokens) override;
  absl::StatusOr<AckResult> NackRefs(const TokenRefs& tokens, NackAction action) override;
  absl::StatusOr<AckResult> PinRefs(const TokenRefs& tokens) override;
  // Makes the delivery counts of the redeliveries (count >= 2) among
  // `reserved` durable before they are handed out (disk groups; a no-op
  // otherwise or when there are none). On failure, in each partition with
  // a redelivery, the reservations from the first redelivery on are given
  // back and removed from `reserved` (what follows a message cannot go out
  // without it); the rest stay. mu_ must not be held.
  absl::Status PersistRedeliveryCounts(std::vector<Reserved>* reserved) ABSL_LOCKS_EXCLUDED(mu_);
  // Gives back reservations that were not handed out: their counts go
  // back to what they were and each partition rewinds to the lowest of
  // them. Entries a concurrent rewind already dropped are left alone.
  void GiveBackLocked(absl::Span<const Reserved> unsent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EnterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds or refreshes a member; true when it joined (a rebalance happened).
  bool TouchMemberLocked(absl::string_view consumer, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebalanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewinds `part` to `offset` (dropping the deliveries from there on).
  void RewindLocked(Partition& part, int64_t offset, int64_t not_before_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Session timeouts and ack timeouts; true when anything changed.
  bool ExpireLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CatchUpWithRetentionLocked(Partition& part) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The inflight entry of a token, or a refusal.
  absl::StatusOr<Inflight*> FindDeliveryLocked(const DeliveryToken& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // JudgeTokens (broker/group_settle.h) over FindDeliveryLocked; `accept`
  // gets each accepted token with its entry. `for_release` (Nack) also
  // refuses pinned deliveries.
  void JudgeDeliveriesLocked(const TokenRefs& tokens, bool for_release,
                             absl::FunctionRef<void(const DeliveryToken&, Inflight*)> accept,
                             AckResult* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Durably commits `commits` and marks `dead` (dead-lettered) done, with
  // the lazily kept counts riding along; then applies them. mu_ not held.
  absl::Status Settle(const std::vector<Commit>& commits, const std::vector<MessagePosition>& dead)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ApplyLocked(const std::vector<Commit>& commits, const std::vector<MessagePosition>& dead)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DrainDeadLetters() ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Partition> parts_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<std::string, int64_t> members_ ABSL_GUARDED_BY(mu_);  // id -> last seen
  uint32_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool resetting_ ABSL_GUARDED_BY(mu_) = false;
  int inflight_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_ORDERED_H_
