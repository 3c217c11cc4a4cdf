// Producer deduplication: remembers, per topic, where each idempotency key
// was first stored, for a time window and up to a number of entries.
//
// The protocol a publisher follows (PartitionedTopic does):
//
//   hits = Reserve(keys, now)     // a hit: answer duplicate, store nothing
//   ... append the misses ...
//   Commit(stored, now)           // or Release(keys) when the append failed
//
// A miss leaves the key *pending* for the caller. A concurrent Reserve of a
// pending key waits until its owner commits (then it is a hit) or releases
// (then the waiter reserves it and stores it itself). So two concurrent
// publishes of one key never both store it, and a failed publish never
// poisons the key.
//
// Reserve takes all of a batch's keys at once or none: it never holds some
// keys while waiting for others, so publishers with overlapping key sets
// cannot deadlock.
//
// Window rule: an entry stored at time t answers repeats at times
// now <= t + window_ms; after that the key is stored again. When more than
// max_entries are held, the earliest committed go first.
//
// The index lives in memory. For disk topics, the topic rebuilds it at open
// from the records of the last window (records carry idempotency_key), with
// Insert().
//
// Thread-safe: one absl::Mutex; Reserve blocks on an absl::CondVar.
#ifndef ONCE_BROKER_DEDUP_INDEX_H_
#define ONCE_BROKER_DEDUP_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace once::broker {

class DedupIndex {
 public:
  // Where a key's first publish was stored.
  struct Location {
    int partition = 0;
    int64_t offset = 0;
    friend bool operator==(const Location&, const Location&) = default;
  };

  // One key a publisher has stored, for Commit.
  struct Stored {
    std::string key;
    Location location;
  };

  // window_ms > 0 and max_entries >= 1 (ValidateTopicConfig checks both; a
  // topic with dedup_window_ms == 0 has no index at all).
  DedupIndex(int64_t window_ms, int64_t max_entries);

  DedupIndex(const DedupIndex&) = delete;
  DedupIndex& operator=(const DedupIndex&) = delete;

  // For each of `keys` (distinct, non-empty): its Location when stored
  // within the window before `now_ms`, else nullopt, and then the key is
  // reserved by the caller, who must Commit or Release it. Blocks while any
  // of `keys` is reserved by another caller. Results are in `keys` order.
  std::vector<std::optional<Location>> Reserve(absl::Span<const std::string> keys, int64_t now_ms);

  // Turns the caller's reservations into entries stored at `timestamp_ms`,
  // and wakes waiters. A key not reserved is inserted as by Insert.
  void Commit(absl::Span<const Stored> stored, int64_t timestamp_ms);

  // Drops the caller's reservations of `keys` (their append failed), and
  // wakes waiters, one of which will then store the key.
  void Release(absl::Span<const std::string> keys);

  // Registers a record already stored at `timestamp_ms`, when rebuilding
  // after a restart; feed records in timestamp order. An existing entry that
  // is still live at `timestamp_ms` is kept (the first publish wins).
  void Insert(absl::string_view key, Location location, int64_t timestamp_ms);

  // Forgets entries older than the window at `now_ms` (Reserve does this
  // too; maintenance calls it so idle topics free their memory).
  void Expire(int64_t now_ms);

  // Committed entries held (expired ones may linger until the next Reserve
  // or Expire).
  size_t size() const;
  // Keys reserved and not yet committed or released.
  size_t pending() const;

  int64_t window_ms() const { return window_ms_; }
  int64_t max_entries() const { return max_entries_; }

 private:
  struct Entry {
    Location location;
    int64_t timestamp_ms = 0;
    uint64_t seq = 0;  // which order_ element is this entry's
    bool pending = false;
  };

  bool LiveAt(const Entry& e, int64_t now_ms) const {
    return !e.pending && now_ms - e.timestamp_ms <= window_ms_;
  }
  // Makes `key` a committed entry, appended to the eviction order.
  void PutLocked(const std::string& key, Location location, int64_t timestamp_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops committed entries from the front of order_ while `should_evict`
  // says so of the front one; skips stale order_ elements.
  template <typename Pred>
  void EvictFrontLocked(Pred should_evict) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnforceCountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t window_ms_;
  const int64_t max_entries_;

  mutable absl::Mutex mu_;
  absl::CondVar released_;  // signalled when reservations end
  // Pending and committed keys.
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Committed keys in commit order, each with the seq it was committed
  // under; an element whose key now has another seq (expired, re-stored) or
  // no entry is stale and skipped.
  std::deque<std::pair<std::string, uint64_t>> order_ ABSL_GUARDED_BY(mu_);
  size_t committed_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_DEDUP_INDEX_H_
