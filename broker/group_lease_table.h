// LeaseTable: a shared group's outstanding deliveries, by (partition,
// offset), with an index by deadline for lazy expiry and a count per
// consumer for prefetch.
//
// A lease is kActive (expires at its deadline), kPinned (never expires:
// a 2PC COMMIT decision covers it; only an ack ends it) or kSettling (an
// ack, nack or dead-lettering of it is being made durable; it neither
// expires nor accepts another ack until that finishes).
//
// Not thread-safe: the owning group's mutex guards it.
#ifndef ONCE_BROKER_GROUP_LEASE_TABLE_H_
#define ONCE_BROKER_GROUP_LEASE_TABLE_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace once::broker {

enum class LeaseState : uint8_t { kActive, kPinned, kSettling };

struct Lease {
  int partition = 0;
  int64_t offset = 0;
  uint32_t consumer = 0;    // the group's index of the consumer holding it
  int32_t deliveries = 1;   // this delivery's number (1 = first)
  uint64_t sequence = 0;    // unique per delivery; in the token
  int64_t deadline_ms = 0;  // meaningful while kActive
  LeaseState state = LeaseState::kActive;
  LeaseState settled_from = LeaseState::kActive;  // what kSettling restores on failure
};

class LeaseTable {
 public:
  // nullptr when (partition, offset) has no lease.
  const Lease* Find(int partition, int64_t offset) const;

  // Adds `lease`; (partition, offset) must have none.
  void Add(const Lease& lease);
  // Removes the lease of (partition, offset), if any.
  void Remove(int partition, int64_t offset);
  // Moves a lease to `state` (kSettling remembers the state to restore).
  void SetState(int partition, int64_t offset, LeaseState state);
  // Restores a kSettling lease to the state it had before.
  void Unsettle(int partition, int64_t offset);

  // Removes and returns the kActive leases whose deadline is <= now_ms,
  // earliest deadline first (equal deadlines in no set order).
  std::vector<Lease> TakeExpired(int64_t now_ms);
  // Removes and returns every lease.
  std::vector<Lease> TakeAll();

  // The earliest deadline of a kActive lease.
  std::optional<int64_t> NextDeadline() const;

  int64_t HeldBy(uint32_t consumer) const;
  int64_t size() const { return static_cast<int64_t>(leases_.size()); }
  // Entries in the deadline heap, stale ones included: at most twice the
  // leases held at the last Add or restore, plus 1024 (for tests).
  size_t deadline_entries() const { return DeadlineEntries(); }

  template <typename F>
  void ForEach(F f) const {
    for (const auto& [key, lease] : leases_) f(lease);
  }

 private:
  using Key = std::pair<int, int64_t>;
  // A kActive lease's deadline, as it was when the entry was made: the
  // entry is current while its lease is kActive with that deadline and
  // sequence number, and stale otherwise (the lease was acked, settled or
  // delivered again since).
  struct DeadlineEntry {
    int64_t deadline_ms;
    int partition;
    int64_t offset;
    uint64_t sequence;
  };
  // Orders the heap: the earliest deadline on top.
  static bool Later(const DeadlineEntry& a, const DeadlineEntry& b) {
    return a.deadline_ms > b.deadline_ms;
  }
  bool IsCurrent(const DeadlineEntry& e) const;
  void PushDeadline(const Lease& lease);
  // Drops stale entries from the front of both queues; returns the
  // earliest current entry's queue (nullptr when there is none) through
  // `from_heap`.
  const DeadlineEntry* PruneTop(bool* from_heap) const;
  void PopTop(bool from_heap);
  // After a push: rebuilds the queues from the kActive leases once they
  // hold twice as many entries as there are leases (+1024). So they stay
  // within that bound, and a rebuild costs no more than the pushes since
  // the last one.
  void MaybeCompact();
  size_t DeadlineEntries() const { return in_order_.size() + out_of_order_.size(); }

  absl::flat_hash_map<Key, Lease> leases_;
  // Deadline entries, current and stale. Leases are mostly acked before
  // their deadline: dropping their entries lazily (when they reach the
  // front, or at a rebuild) makes an ack cost no index work, where an
  // ordered set cost a tree erase per ack and a tree insert per delivery.
  // A lease's deadline is its delivery time plus the group's ack timeout,
  // so deadlines mostly arrive in order: those go to the back of a FIFO
  // (O(1) both ends); the others (a lease restored after a failed
  // settle, a changed timeout) to a min-heap beside it. Mutable:
  // NextDeadline drops the stale fronts.
  mutable std::deque<DeadlineEntry> in_order_;
  mutable std::vector<DeadlineEntry> out_of_order_;
  absl::flat_hash_map<uint32_t, int64_t> held_;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_LEASE_TABLE_H_
