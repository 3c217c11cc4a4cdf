// SharedGroup: queue semantics. Any consumer takes the next available
// messages, spread round-robin over the partitions; each delivery is a
// lease with a token, ended by an ack (done), a nack (released or
// dead-lettered) or its ack timeout (redelivered with count + 1 after a
// backoff, or dead-lettered at max_deliveries).
//
// Per partition the group keeps: `done` (an OffsetRangeSet: acked or
// dead-lettered offsets), a dispatch cursor (offsets at or above it were
// never delivered), the offsets waiting for redelivery with their
// delivery counts, and the offsets waiting to be dead-lettered. The lease
// table is group-wide. See broker/groups.md for the durable part: for
// disk groups an ack is answered once durable, and a redelivery's count
// is durable before the redelivery is handed out.
//
// Code: group_shared.cc (recovery, expiry, membership, Reset, Tick,
// Describe), group_shared_fetch.cc (Fetch/Lease), group_shared_settle.cc
// (Ack, Nack, Pin, AckPositions, dead-lettering, the done write).
#ifndef ONCE_BROKER_GROUP_SHARED_H_
#define ONCE_BROKER_GROUP_SHARED_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "broker/consumer_group.h"
#include "broker/group_lease_table.h"
#include "broker/group_settle.h"

namespace once::broker {

class SharedGroup final : public ConsumerGroup {
 public:
  // `stored`: the partitions' durable state (durable groups being
  // reopened); a partition without an entry starts at initial_floors[p]
  // (the resolved start position).
  static absl::StatusOr<std::unique_ptr<SharedGroup>> Create(
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

 private:
  struct Retry {
    int32_t deliveries = 0;  // made so far
    int64_t not_before_ms = 0;
  };
  struct Partition {
    Log* log = nullptr;
    OffsetRangeSet done;
    int64_t cursor = 0;                // offsets >= cursor were never delivered
    int64_t dispatched_persisted = 0;  // what the store's `dispatched` says
    absl::btree_map<int64_t, Retry> retry;
    PendingDeadLetters dead;
    DirtyCounts dirty_counts;  // counts not yet in the store
    int64_t acked = 0;
    int64_t dead_lettered = 0;
  };
  struct Consumer {
    std::string id;
    int64_t last_seen_ms = 0;
  };
  struct Reserved {
    int partition;
    int64_t offset;
    int32_t deliveries;
    uint64_t sequence;
  };
  // What Ack/Nack/Pin need to know of each token that passed the checks.
  struct Valid {
    size_t index;
    DeliveryToken token;
  };

  explicit SharedGroup(GroupContext ctx) : ConsumerGroup(std::move(ctx)) {}

  absl::StatusOr<std::vector<Delivery>> FetchImpl(absl::string_view consumer, int max,
                                                  bool token_text, int alone_from) override;
  absl::StatusOr<AckResult> AckRefs(const TokenRefs& tokens) override;
  absl::StatusOr<AckResult> NackRefs(const TokenRefs& tokens, NackAction action) override;
  absl::StatusOr<AckResult> PinRefs(const TokenRefs& tokens) override;
  // Makes the delivery counts of the redeliveries (count >= 2) among
  // `reserved` durable before they are handed out (disk groups; a no-op
  // otherwise or when there are none). On failure the redeliveries are
  // given back, uncounted, and removed from `reserved`; first deliveries
  // stay (they cost no write). mu_ must not be held.
  absl::Status PersistRedeliveryCounts(std::vector<Reserved>* reserved) ABSL_LOCKS_EXCLUDED(mu_);
  // Gives back a reservation that was not handed out: it is due again at
  // once with its count as before. A no-op when its lease is gone (expired
  // and requeued meanwhile) or belongs to another delivery.
  void GiveBackLocked(const Reserved& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits out a reset, then fails with kNotFound when closed.
  absl::Status EnterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t TouchConsumerLocked(absl::string_view consumer, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Expires due leases; true when any was.
  bool ExpireLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A delivery that ended without an ack: redeliver later or dead-letter.
  void RequeueLocked(int partition, int64_t offset, int32_t deliveries, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks offsets below the log's first offset done (retention took them).
  void CatchUpWithRetentionLocked(Partition& part) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks each token; the valid ones (a live lease with the same
  // sequence, not settling) go to `valid`, the others to `result`.
  void CheckTokensLocked(const TokenRefs& tokens, bool for_release, std::vector<Valid>* valid,
                         AckResult* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StaleReasonLocked(const DeliveryToken& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The durable write that marks `items` done (plus every lazily kept
  // count and cursor); empty for a memory group.
  GroupWriteBatch DoneBatchLocked(const std::vector<MessagePosition>& items, bool dead_lettered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyDoneLocked(const std::vector<MessagePosition>& items, bool dead_lettered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkPersistedLocked(const GroupWriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `items` (reserved by the caller: leases settling or dead-letter
  // entries in progress) done, durably. mu_ must not be held.
  absl::Status SettleDone(const std::vector<MessagePosition>& items, bool dead_lettered)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes due pending dead letters and marks them done.
  absl::Status DrainDeadLetters() ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Partition> parts_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> consumer_index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, Consumer> consumers_ ABSL_GUARDED_BY(mu_);
  uint32_t next_consumer_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  int round_robin_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool resetting_ ABSL_GUARDED_BY(mu_) = false;
  // A fetch since the last ack's notification took less than it asked for
  // because its consumer held `prefetch` leases: only then does settling a
  // lease free room somebody waits for. Otherwise an ack wakes nobody: at
  // a steady rate every waiting feed would fetch in vain after every ack.
  bool prefetch_full_ ABSL_GUARDED_BY(mu_) = false;
  // Calls between reserving and applying (reads, publishes, durable
  // writes); Reset and Close wait for it to reach zero.
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_SHARED_H_
