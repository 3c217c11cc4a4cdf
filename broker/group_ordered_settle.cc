// OrderedGroup: settling deliveries (Ack, Nack, Pin, AckPositions, dead
// letters) and the durable write that commits offsets.
#include "broker/group_ordered.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "broker/group_settle.h"
#include "schema/status_macros.h"

namespace once::broker {

absl::StatusOr<OrderedGroup::Inflight*> OrderedGroup::FindDeliveryLocked(const DeliveryToken& t) {
  const std::string where = MessageName(topic_name(), t.partition, t.offset);
  if (t.generation != generation_) {
    return absl::FailedPreconditionError(
        absl::StrCat("fenced delivery token for ", where, ": it is from generation ", t.generation,
                     " but the group rebalanced to generation ", generation_,
                     "; the message is delivered again to the partition's current owner"));
  }
  Partition& part = parts_[t.partition];
  for (Inflight& f : part.inflight) {
    if (f.offset == t.offset && f.sequence == t.sequence) {
      if (f.settling) {
        return absl::FailedPreconditionError(absl::StrCat(
            "delivery ", t.delivery_count, " of ", where, " is being committed by another call"));
      }
      return &f;
    }
  }
  if (part.done.Contains(t.offset)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "message ", where, " was already committed (committed offset ", part.done.floor(), ")"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "stale delivery token: delivery ", t.delivery_count, " of ", where,
      " timed out or was nacked; the partition was rewound and it is delivered again"));
}

void OrderedGroup::JudgeDeliveriesLocked(
    const TokenRefs& tokens, bool for_release,
    absl::FunctionRef<void(const DeliveryToken&, Inflight*)> accept, AckResult* result) {
  Inflight* found = nullptr;  // the judged token's entry, for `accept`
  JudgeTokens(
      tokens, [this](absl::string_view text) { return CheckToken(text); },
      [this](const DeliveryToken& t) { return CheckHandle(t); },
      [&](const DeliveryToken& t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        absl::StatusOr<Inflight*> f = FindDeliveryLocked(t);
        if (!f.ok()) return f.status();
        if (for_release && (*f)->pinned) return PinnedRefusal(topic_name(), t);
        found = *f;
        return absl::OkStatus();
      },
      [&](size_t, const DeliveryToken& t) { accept(t, found); }, topic_name(), result);
}

absl::StatusOr<AckResult> OrderedGroup::AckRefs(const TokenRefs& tokens) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  std::vector<Commit> commits;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    absl::flat_hash_map<int, int64_t> upto;
    std::vector<Inflight*> settling;
    JudgeDeliveriesLocked(
        tokens, /*for_release=*/false,
        [&](const DeliveryToken& t, Inflight* f) {
          int64_t& u = upto[t.partition];
          u = std::max(u, t.offset + 1);
          settling.push_back(f);
          ++result.applied;
        },
        &result);
    for (Inflight* f : settling) f->settling = true;
    for (const auto& [p, u] : upto) {
      commits.push_back({p, u});
      // Everything delivered below the commit point is covered by it.
      for (Inflight& f : parts_[p].inflight) {
        if (f.offset < u) f.settling = true;
      }
      // An ack keeps the owner's session alive.
      if (auto m = members_.find(parts_[p].owner); m != members_.end()) m->second = now;
    }
    if (!commits.empty()) ++inflight_calls_;
  }
  if (!commits.empty()) {
    absl::Status s = Settle(commits, {});
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
    if (!s.ok()) {
      for (const Commit& c : commits) {
        for (Inflight& f : parts_[c.partition].inflight) {
          if (f.offset < c.upto) f.settling = false;
        }
      }
      return s;
    }
    changed = true;
  }
  if (changed) notifier_.Notify();
  return result;
}

absl::StatusOr<AckResult> OrderedGroup::NackRefs(const TokenRefs& tokens, NackAction action) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  std::vector<DeadLetter> letters;
  std::vector<MessagePosition> dead;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    ExpireLocked(now);
    absl::flat_hash_map<int, Inflight> rewind_to;  // partition -> earliest nacked
    JudgeDeliveriesLocked(
        tokens, /*for_release=*/true,
        [&](const DeliveryToken& t, Inflight* f) {
          ++result.applied;
          if (action == NackAction::kDeadLetter) {
            f->settling = true;
            letters.push_back({t.partition, t.offset, f->deliveries, kReasonRejected});
            dead.push_back({t.partition, t.offset});
            return;
          }
          auto it = rewind_to.find(t.partition);
          if (it == rewind_to.end() || it->second.offset > t.offset) rewind_to[t.partition] = *f;
        },
        &result);
    for (const auto& [p, f] : rewind_to) {
      RewindLocked(parts_[p], f.offset, now + Backoff(f.deliveries));
    }
    if (!dead.empty()) ++inflight_calls_;
  }
  if (!dead.empty()) {
    absl::Status s = PublishDeadLetters(ctx_.broker, *ctx_.topic, name(),
                                        DeadLetterTopicFor(topic_name(), ctx_.config), letters);
    if (s.ok()) s = Settle({}, dead);
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
    if (!s.ok()) {
      for (const MessagePosition& m : dead) {
        for (Inflight& f : parts_[m.partition].inflight) {
          if (f.offset == m.offset) f.settling = false;
        }
      }
      return s;
    }
  }
  notifier_.Notify();
  return result;
}

absl::StatusOr<AckResult> OrderedGroup::PinRefs(const TokenRefs& tokens) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(EnterLocked());
  ExpireLocked(now);
  JudgeDeliveriesLocked(
      tokens, /*for_release=*/false,
      [&](const DeliveryToken&, Inflight* f) {
        f->pinned = true;
        ++result.applied;
      },
      &result);
  return result;
}

absl::Status OrderedGroup::AckPositions(absl::Span<const MessagePosition> positions) {
  std::vector<Commit> commits;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    absl::flat_hash_map<int, int64_t> upto;
    for (const MessagePosition& m : positions) {
      ONCE_RETURN_IF_ERROR(CheckPosition(*ctx_.topic, m));
      int64_t& u = upto[m.partition];
      u = std::max(u, m.offset + 1);
    }
    for (const auto& [p, u] : upto) {
      if (u > parts_[p].done.floor()) commits.push_back({p, u});
    }
    if (commits.empty()) return absl::OkStatus();
    ++inflight_calls_;
  }
  absl::Status s = Settle(commits, {});
  absl::MutexLock lock(&mu_);
  --inflight_calls_;
  return s;
}

absl::Status OrderedGroup::Settle(const std::vector<Commit>& commits,
                                  const std::vector<MessagePosition>& dead) {
  GroupWriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    if (!durable()) {
      ApplyLocked(commits, dead);
      return absl::OkStatus();
    }
    const int n = static_cast<int>(parts_.size());
    std::vector<int64_t> floor_with(n), add_acked(n, 0), add_dead(n, 0);
    std::vector<std::vector<int64_t>> dead_offsets(n);
    for (int p = 0; p < n; ++p) floor_with[p] = parts_[p].done.floor();
    for (const MessagePosition& m : dead) dead_offsets[m.partition].push_back(m.offset);
    for (const Commit& c : commits) {
      const Partition& part = parts_[c.partition];
      if (c.upto > floor_with[c.partition]) {
        add_acked[c.partition] += c.upto - floor_with[c.partition];
        floor_with[c.partition] = part.done.NextAbsent(c.upto);
      }
    }
    for (int p = 0; p < n; ++p) {
      Partition& part = parts_[p];
      std::vector<int64_t>& offsets = dead_offsets[p];
      std::sort(offsets.begin(), offsets.end());
      if (offsets.empty() && floor_with[p] == part.done.floor() && part.dirty_counts.empty() &&
          part.dispatched <= part.dispatched_persisted) {
        continue;
      }
      PartitionUpdate u;
      u.group_id = static_cast<int64_t>(ctx_.incarnation);
      u.partition = p;
      // Dead letters at the commit point extend it.
      OffsetRangeSet after = part.done;
      after.RaiseFloor(floor_with[p]);
      for (int64_t o : offsets) after.Insert(o);
      u.done_floor = after.floor();
      u.dispatched = part.dispatched;
      u.add_acked = add_acked[p];
      u.add_dead_lettered = static_cast<int64_t>(offsets.size());
      for (const OffsetRange& r : OffsetRangeSet::Runs(offsets)) {
        if (r.end > u.done_floor) u.add_ranges.push_back({std::max(r.begin, u.done_floor), r.end});
      }
      AddDirtyCounts(part.dirty_counts, &u);
      batch.updates.push_back(std::move(u));
    }
  }
  absl::Status status = ctx_.store->Write(batch);
  absl::MutexLock lock(&mu_);
  if (!status.ok()) return status;
  for (const PartitionUpdate& u : batch.updates) {
    Partition& part = parts_[u.partition];
    part.dispatched_persisted = std::max(part.dispatched_persisted, u.dispatched);
    ForgetWrittenCounts(u, part.dirty_counts);
  }
  ApplyLocked(commits, dead);
  return absl::OkStatus();
}

void OrderedGroup::ApplyLocked(const std::vector<Commit>& commits,
                               const std::vector<MessagePosition>& dead) {
  auto tidy = [](Partition& part) {
    const int64_t floor = part.done.floor();
    while (!part.inflight.empty() && part.done.Contains(part.inflight.front().offset)) {
      part.inflight.pop_front();
    }
    std::deque<Inflight> kept;
    for (const Inflight& f : part.inflight) {
      if (!part.done.Contains(f.offset)) kept.push_back(f);
    }
    part.inflight.swap(kept);
    part.counts.erase(part.counts.begin(), part.counts.lower_bound(floor));
    part.dirty_counts.erase(part.dirty_counts.begin(), part.dirty_counts.lower_bound(floor));
    part.position = std::max(part.position, floor);
  };
  for (const Commit& c : commits) {
    Partition& part = parts_[c.partition];
    const int64_t before = part.done.floor();
    if (c.upto > before) {
      part.acked += c.upto - before;
      part.done.InsertRange(before, c.upto);
    }
    tidy(part);
  }
  for (const MessagePosition& m : dead) {
    Partition& part = parts_[m.partition];
    if (part.done.Insert(m.offset)) ++part.dead_lettered;
    part.dead.erase(m.offset);
    part.counts.erase(m.offset);
    part.dirty_counts.erase(m.offset);
    tidy(part);
  }
}

absl::Status OrderedGroup::DrainDeadLetters() {
  const int64_t now = ctx_.clock->NowMs();
  std::vector<DeadLetter> letters;
  std::vector<MessagePosition> items;
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || resetting_) return absl::OkStatus();
    for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
      TakeDueDeadLetters(p, now, parts_[p].dead, &letters, &items);
    }
    if (items.empty()) return absl::OkStatus();
    ++inflight_calls_;
  }
  absl::Status s = PublishDeadLetters(ctx_.broker, *ctx_.topic, name(),
                                      DeadLetterTopicFor(topic_name(), ctx_.config), letters);
  if (s.ok()) s = Settle({}, items);
  {
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
    if (!s.ok()) {
      for (const MessagePosition& m : items) {
        ReleaseDeadLetter(m.offset, DeadLetterRetryAt(now, ctx_.config), parts_[m.partition].dead);
      }
    }
  }
  if (s.ok()) notifier_.Notify();  // the partitions behind them move again
  return s;
}

}  // namespace once::broker
