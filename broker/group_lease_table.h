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
#include <optional>
#include <tuple>
#include <vector>

#include "absl/container/btree_set.h"
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

  // Removes and returns the kActive leases whose deadline is <= now_ms.
  std::vector<Lease> TakeExpired(int64_t now_ms);
  // Removes and returns every lease.
  std::vector<Lease> TakeAll();

  // The earliest deadline of a kActive lease.
  std::optional<int64_t> NextDeadline() const;

  int64_t HeldBy(uint32_t consumer) const;
  int64_t size() const { return static_cast<int64_t>(leases_.size()); }

  template <typename F>
  void ForEach(F f) const {
    for (const auto& [key, lease] : leases_) f(lease);
  }

 private:
  using Key = std::pair<int, int64_t>;
  using DeadlineKey = std::tuple<int64_t, int, int64_t>;

  absl::flat_hash_map<Key, Lease> leases_;
  absl::btree_set<DeadlineKey> deadlines_;  // kActive leases only
  absl::flat_hash_map<uint32_t, int64_t> held_;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_LEASE_TABLE_H_
