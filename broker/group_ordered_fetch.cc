// OrderedGroup: Fetch and Lease (reserving from the consumer's
// partitions, making redelivery counts durable, reading the records). The
// rest is in broker/group_ordered.cc and broker/group_ordered_settle.cc.
#include "broker/group_ordered.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

// `alone_from` is not used: an ordered partition's messages go out in
// order, a failing one before everything behind it.
absl::StatusOr<std::vector<Delivery>> OrderedGroup::FetchImpl(absl::string_view consumer, int max,
                                                              bool token_text, int /*alone_from*/) {
  ONCE_RETURN_IF_ERROR(CheckFetchArgs(consumer, max));
  const int64_t now = ctx_.clock->NowMs();
  std::vector<Reserved> reserved;
  uint32_t generation = 0;
  bool changed = false;
  // A second pass runs when the first found only a head to dead-letter:
  // once it is gone the partition can deliver again.
  for (int pass = 0; pass < 2 && reserved.empty(); ++pass) {
    bool dead_due = false;
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed |= ExpireLocked(now);
    changed |= TouchMemberLocked(consumer, now);
    generation = generation_;
    int64_t held = 0;
    std::vector<int> mine;
    for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
      if (parts_[p].owner == consumer) {
        mine.push_back(p);
        held += static_cast<int64_t>(parts_[p].inflight.size());
      }
    }
    int64_t want = std::min<int64_t>(max, ctx_.config.prefetch - held);
    // Round-robin over the consumer's partitions, one message per turn.
    std::vector<bool> blocked(mine.size(), false);
    bool progress = true;
    while (want > 0 && progress) {
      progress = false;
      for (size_t i = 0; i < mine.size() && want > 0; ++i) {
        if (blocked[i]) continue;
        Partition& part = parts_[mine[i]];
        CatchUpWithRetentionLocked(part);
        if (part.not_before_ms > now || !part.dead.empty()) {
          blocked[i] = true;
          continue;
        }
        // Skip messages dead-lettered out of order.
        part.position = part.done.NextAbsent(part.position);
        const int64_t o = part.position;
        if (o >= part.log->NextOffset()) {
          blocked[i] = true;
          continue;
        }
        auto count = part.counts.find(o);
        const int32_t deliveries = (count == part.counts.end() ? 0 : count->second) + 1;
        if (deliveries > ctx_.config.max_deliveries) {
          // Never deliver past max_deliveries. The head of the partition
          // goes to the dead-letter topic; a later message waits until it
          // is the head (the ones before it are committed or dead-lettered).
          if (part.inflight.empty() || part.inflight.front().offset > o) {
            part.dead[o] = PendingDeadLetter{deliveries - 1, kReasonMaxDeliveries};
            dead_due = true;
          }
          blocked[i] = true;
          continue;
        }
        const uint64_t seq = ++sequence_;
        part.inflight.push_back(
            Inflight{o, seq, deliveries, now + ctx_.config.ack_timeout_ms, false, false});
        part.counts[o] = deliveries;
        if (deliveries >= 2) part.dirty_counts[o] = deliveries;
        part.dispatched = std::max(part.dispatched, o + 1);
        ++part.position;
        reserved.push_back({mine[i], o, deliveries, seq});
        --want;
        progress = true;
      }
    }
    if (!reserved.empty()) {
      ++inflight_calls_;
      break;
    }
    if (!dead_due) break;
    mu_.Unlock();
    absl::Status drained = DrainDeadLetters();
    mu_.Lock();
    if (!drained.ok()) {
      spdlog::warn("group \"{}\" of topic \"{}\": dead-lettering failed: {}", name(), topic_name(),
                   drained.ToString());
      break;
    }
  }
  if (changed) notifier_.Notify();
  if (reserved.empty()) return std::vector<Delivery>();
  absl::Status count_status = PersistRedeliveryCounts(&reserved);
  if (reserved.empty()) {
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
    return count_status;
  }

  std::vector<Reserved> sorted = reserved;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Reserved& a, const Reserved& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::vector<Delivery> out;
  absl::Status read_status;
  std::vector<Reserved> unread;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    std::vector<int64_t> offsets;
    while (j < sorted.size() && sorted[j].partition == sorted[i].partition) {
      offsets.push_back(sorted[j].offset);
      ++j;
    }
    const int p = sorted[i].partition;
    absl::StatusOr<std::vector<Record>> records = ReadOffsets(*ctx_.topic->partition(p), offsets);
    if (records.ok()) {
      for (size_t k = 0; k < records->size(); ++k) {
        const Reserved& r = sorted[i + k];
        Delivery d;
        d.partition = p;
        d.record = std::move((*records)[k]);
        d.delivery_count = r.deliveries;
        d.handle = MakeHandle(p, r.offset, r.sequence, r.deliveries, generation);
        if (token_text) d.token = EncodeToken(d.handle);
        out.push_back(std::move(d));
      }
    } else {
      read_status = absl::Status(
          records.status().code(),
          absl::StrCat("reading ", topic_name(), "/", p, ": ", records.status().message()));
      unread.insert(unread.end(), sorted.begin() + i, sorted.begin() + j);
    }
    i = j;
  }
  {
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
    GiveBackLocked(unread);
  }
  if (read_status.ok()) read_status = count_status;
  if (!read_status.ok() && out.empty()) return read_status;
  if (!read_status.ok()) {
    spdlog::warn("group \"{}\": fetch returns {} of the messages it reserved: {}", name(),
                 out.size(), read_status.ToString());
  }
  return out;
}

absl::Status OrderedGroup::PersistRedeliveryCounts(std::vector<Reserved>* reserved) {
  if (!durable()) return absl::OkStatus();
  const bool any = std::any_of(reserved->begin(), reserved->end(),
                               [](const Reserved& r) { return r.deliveries >= 2; });
  if (!any) return absl::OkStatus();
  // Writes every dirty count of the group (ours among them) and the
  // dispatched cursors, in one transaction shared with concurrent
  // writers. A count missing from dirty_counts here was written by a
  // commit that has completed, so on success all of ours are durable.
  absl::Status s = Settle({}, {});
  if (s.ok()) return s;
  s = absl::Status(s.code(), absl::StrCat("group \"", name(), "\" of topic \"", topic_name(),
                                          "\": recording redelivery counts: ", s.message()));
  absl::flat_hash_map<int, int64_t> first_redelivery;  // partition -> lowest offset
  for (const Reserved& r : *reserved) {
    if (r.deliveries < 2) continue;
    auto [it, inserted] = first_redelivery.emplace(r.partition, r.offset);
    if (!inserted) it->second = std::min(it->second, r.offset);
  }
  std::vector<Reserved> kept;
  std::vector<Reserved> unsent;
  for (const Reserved& r : *reserved) {
    auto it = first_redelivery.find(r.partition);
    (it != first_redelivery.end() && r.offset >= it->second ? unsent : kept).push_back(r);
  }
  absl::MutexLock lock(&mu_);
  GiveBackLocked(unsent);
  reserved->swap(kept);
  return s;
}

void OrderedGroup::GiveBackLocked(absl::Span<const Reserved> unsent) {
  absl::flat_hash_map<int, int64_t> rewind_to;  // partition -> lowest offset
  for (const Reserved& r : unsent) {
    Partition& part = parts_[r.partition];
    const bool live = std::any_of(part.inflight.begin(), part.inflight.end(),
                                  [&](const Inflight& f) { return f.sequence == r.sequence; });
    if (!live) continue;  // a rewind (timeout, rebalance) dropped it meanwhile
    // Not delivered: the attempt does not count.
    part.counts[r.offset] = r.deliveries - 1;
    UndoDirtyCount(r.offset, r.deliveries, part.dirty_counts);
    auto [it, inserted] = rewind_to.emplace(r.partition, r.offset);
    if (!inserted) it->second = std::min(it->second, r.offset);
  }
  // One rewind per partition, to the lowest: rewinding to each in turn
  // would leave the partition's position past the lower ones.
  for (const auto& [p, offset] : rewind_to) {
    Partition& part = parts_[p];
    RewindLocked(part, offset, part.not_before_ms);
    CatchUpWithRetentionLocked(part);
  }
}

}  // namespace once::broker
