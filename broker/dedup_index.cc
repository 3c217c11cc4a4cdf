#include "broker/dedup_index.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace once::broker {

DedupIndex::DedupIndex(int64_t window_ms, int64_t max_entries)
    : window_ms_(window_ms), max_entries_(max_entries) {}

std::vector<std::optional<DedupIndex::Location>> DedupIndex::Reserve(
    absl::Span<const std::string> keys, int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  // All or nothing: wait, holding no reservation, until none of the keys is
  // pending; then decide every key under this one lock hold.
  for (;;) {
    ExpireLocked(now_ms);
    bool blocked = false;
    for (const std::string& key : keys) {
      auto it = entries_.find(key);
      if (it != entries_.end() && it->second.pending) {
        blocked = true;
        break;
      }
    }
    if (!blocked) break;
    released_.Wait(&mu_);
  }
  std::vector<std::optional<Location>> hits(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    auto [it, inserted] = entries_.try_emplace(keys[i]);
    if (!inserted) {
      if (LiveAt(it->second, now_ms)) {
        hits[i] = it->second.location;
        continue;
      }
      // Expired but not yet evicted (it was not at the front of order_):
      // its order_ element goes stale once the seq below changes.
      --committed_;
    }
    it->second = Entry{};
    it->second.pending = true;
    ++pending_;
  }
  return hits;
}

void DedupIndex::Commit(absl::Span<const Stored> stored, int64_t timestamp_ms) {
  absl::MutexLock lock(&mu_);
  for (const Stored& s : stored) {
    auto it = entries_.find(s.key);
    if (it != entries_.end() && !it->second.pending &&
        timestamp_ms - it->second.timestamp_ms <= window_ms_) {
      continue;  // not ours and live: the first publish wins
    }
    PutLocked(s.key, s.location, timestamp_ms);
  }
  EnforceCountLocked();
  released_.SignalAll();
}

void DedupIndex::Release(absl::Span<const std::string> keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) {
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.pending) {
      entries_.erase(it);
      --pending_;
    }
  }
  released_.SignalAll();
}

void DedupIndex::Insert(absl::string_view key, Location location, int64_t timestamp_ms) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() &&
      (it->second.pending || timestamp_ms - it->second.timestamp_ms <= window_ms_)) {
    return;
  }
  PutLocked(std::string(key), location, timestamp_ms);
  EnforceCountLocked();
}

void DedupIndex::Expire(int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  ExpireLocked(now_ms);
}

size_t DedupIndex::size() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

size_t DedupIndex::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_;
}

void DedupIndex::PutLocked(const std::string& key, Location location, int64_t timestamp_ms) {
  auto [it, inserted] = entries_.try_emplace(key);
  if (!inserted) {
    if (it->second.pending) {
      --pending_;
    } else {
      --committed_;
    }
  }
  const uint64_t seq = next_seq_++;
  it->second = Entry{location, timestamp_ms, seq, /*pending=*/false};
  order_.emplace_back(key, seq);
  ++committed_;
}

template <typename Pred>
void DedupIndex::EvictFrontLocked(Pred should_evict) {
  while (!order_.empty()) {
    const auto& [key, seq] = order_.front();
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.pending || it->second.seq != seq) {
      order_.pop_front();  // stale
      continue;
    }
    if (!should_evict(it->second)) break;
    entries_.erase(it);
    --committed_;
    order_.pop_front();
  }
}

void DedupIndex::ExpireLocked(int64_t now_ms) {
  EvictFrontLocked([&](const Entry& e) { return now_ms - e.timestamp_ms > window_ms_; });
}

void DedupIndex::EnforceCountLocked() {
  EvictFrontLocked([&](const Entry&) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return static_cast<int64_t>(committed_) > max_entries_;
  });
}

}  // namespace once::broker
