// SharedGroup: settling deliveries (Ack, Nack, Pin, AckPositions, dead
// letters) and the durable write that marks messages done.
#include "broker/group_shared.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/group_settle.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

absl::Status SharedGroup::StaleReasonLocked(const DeliveryToken& t) const {
  const std::string where = MessageName(topic_name(), t.partition, t.offset);
  const Partition& part = parts_[t.partition];
  if (part.done.Contains(t.offset)) {
    return absl::FailedPreconditionError(
        absl::StrCat("message ", where, " was already acknowledged (or dead-lettered)"));
  }
  if (const ::once::broker::Lease* l = leases_.Find(t.partition, t.offset)) {
    if (l->sequence == t.sequence) {
      return absl::FailedPreconditionError(absl::StrCat(
          "delivery ", t.delivery_count, " of ", where, " is being settled by another call"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "stale delivery token: message ", where, " was redelivered since (token is delivery ",
        t.delivery_count, ", the current one is delivery ", l->deliveries, ")"));
  }
  if (part.dead.contains(t.offset)) {
    return absl::FailedPreconditionError(absl::StrCat("stale delivery token: message ", where,
                                                      " is being moved to the dead-letter topic"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("stale delivery token: the lease of delivery ", t.delivery_count, " of ", where,
                   " expired or was released; the message will be delivered again"));
}

void SharedGroup::CheckTokensLocked(const TokenRefs& tokens, bool for_release,
                                    std::vector<Valid>* valid, AckResult* result) {
  JudgeTokens(
      tokens, [this](absl::string_view text) { return CheckToken(text); },
      [this](const DeliveryToken& t) { return CheckHandle(t); },
      [&](const DeliveryToken& t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        const ::once::broker::Lease* l = leases_.Find(t.partition, t.offset);
        if (l == nullptr || l->sequence != t.sequence || l->state == LeaseState::kSettling) {
          return StaleReasonLocked(t);
        }
        if (for_release && l->state == LeaseState::kPinned) return PinnedRefusal(topic_name(), t);
        return absl::OkStatus();
      },
      [&](size_t index, const DeliveryToken& t) {
        valid->push_back({index, t});
      },
      topic_name(), result);
}

GroupWriteBatch SharedGroup::DoneBatchLocked(const std::vector<MessagePosition>& items,
                                             bool dead_lettered) {
  GroupWriteBatch batch;
  if (!durable()) return batch;
  const int n = static_cast<int>(parts_.size());
  std::vector<std::vector<int64_t>> by_partition(n);
  for (const MessagePosition& m : items) by_partition[m.partition].push_back(m.offset);
  for (int p = 0; p < n; ++p) {
    Partition& part = parts_[p];
    std::vector<int64_t>& offsets = by_partition[p];
    if (offsets.empty() && part.dirty_counts.empty() && part.cursor <= part.dispatched_persisted) {
      continue;
    }
    std::sort(offsets.begin(), offsets.end());
    offsets.erase(std::unique(offsets.begin(), offsets.end()), offsets.end());
    PartitionUpdate u;
    u.group_id = static_cast<int64_t>(ctx_.incarnation);
    u.partition = p;
    // The floor this batch makes true. Concurrent batches may raise it
    // further; the store keeps the maximum.
    u.done_floor = part.done.FloorWith(offsets);
    u.dispatched = part.cursor;
    (dead_lettered ? u.add_dead_lettered : u.add_acked) = static_cast<int64_t>(offsets.size());
    for (const OffsetRange& r : OffsetRangeSet::Runs(offsets)) {
      if (r.end > u.done_floor) u.add_ranges.push_back({std::max(r.begin, u.done_floor), r.end});
    }
    AddDirtyCounts(part.dirty_counts, &u);
    batch.updates.push_back(std::move(u));
  }
  return batch;
}

void SharedGroup::MarkPersistedLocked(const GroupWriteBatch& batch) {
  for (const PartitionUpdate& u : batch.updates) {
    Partition& part = parts_[u.partition];
    part.dispatched_persisted = std::max(part.dispatched_persisted, u.dispatched);
    ForgetWrittenCounts(u, part.dirty_counts);
    part.dirty_counts.erase(part.dirty_counts.begin(), part.dirty_counts.lower_bound(u.done_floor));
  }
}

void SharedGroup::ApplyDoneLocked(const std::vector<MessagePosition>& items, bool dead_lettered) {
  for (const MessagePosition& m : items) {
    Partition& part = parts_[m.partition];
    leases_.Remove(m.partition, m.offset);
    part.retry.erase(m.offset);
    part.dead.erase(m.offset);
    part.dirty_counts.erase(m.offset);
    if (part.done.Insert(m.offset)) ++(dead_lettered ? part.dead_lettered : part.acked);
  }
}

absl::Status SharedGroup::SettleDone(const std::vector<MessagePosition>& items,
                                     bool dead_lettered) {
  GroupWriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    batch = DoneBatchLocked(items, dead_lettered);
    if (batch.empty()) {
      ApplyDoneLocked(items, dead_lettered);
      return absl::OkStatus();
    }
  }
  absl::Status status = ctx_.store->Write(batch);
  absl::MutexLock lock(&mu_);
  if (!status.ok()) return status;
  MarkPersistedLocked(batch);
  ApplyDoneLocked(items, dead_lettered);
  return absl::OkStatus();
}

absl::StatusOr<AckResult> SharedGroup::AckRefs(const TokenRefs& tokens) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  std::vector<Valid> valid;
  std::vector<MessagePosition> items;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    CheckTokensLocked(tokens, /*for_release=*/false, &valid, &result);
    for (const Valid& v : valid) {
      leases_.SetState(v.token.partition, v.token.offset, LeaseState::kSettling);
      items.push_back({v.token.partition, v.token.offset});
    }
    if (!items.empty()) ++inflight_;
  }
  if (!items.empty()) {
    absl::Status s = SettleDone(items, /*dead_lettered=*/false);
    absl::MutexLock lock(&mu_);
    --inflight_;
    if (!s.ok()) {
      for (const MessagePosition& m : items) leases_.Unsettle(m.partition, m.offset);
      return s;
    }
    result.applied = static_cast<int64_t>(items.size());
    // The room a fetch was refused for: tell the waiters, once.
    changed = std::exchange(prefetch_full_, false) || changed;
  }
  if (changed) notifier_.Notify();
  return result;
}

absl::StatusOr<AckResult> SharedGroup::NackRefs(const TokenRefs& tokens, NackAction action) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  std::vector<Valid> valid;
  std::vector<DeadLetter> letters;
  std::vector<MessagePosition> items;
  bool expired = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    expired = ExpireLocked(now);
    CheckTokensLocked(tokens, /*for_release=*/true, &valid, &result);
    for (const Valid& v : valid) {
      const ::once::broker::Lease* l = leases_.Find(v.token.partition, v.token.offset);
      if (action == NackAction::kRequeue) {
        const int32_t deliveries = l->deliveries;
        leases_.Remove(v.token.partition, v.token.offset);
        RequeueLocked(v.token.partition, v.token.offset, deliveries, now);
      } else {
        letters.push_back(
            {v.token.partition, v.token.offset, l->deliveries, std::string(kReasonRejected)});
        items.push_back({v.token.partition, v.token.offset});
        leases_.SetState(v.token.partition, v.token.offset, LeaseState::kSettling);
      }
    }
    if (action == NackAction::kRequeue) result.applied = static_cast<int64_t>(valid.size());
    if (!items.empty()) ++inflight_;
  }
  if (!items.empty()) {
    absl::Status s = PublishDeadLetters(ctx_.broker, *ctx_.topic, name(),
                                        DeadLetterTopicFor(topic_name(), ctx_.config), letters);
    if (s.ok()) s = SettleDone(items, /*dead_lettered=*/true);
    absl::MutexLock lock(&mu_);
    --inflight_;
    if (!s.ok()) {
      for (const MessagePosition& m : items) leases_.Unsettle(m.partition, m.offset);
      return s;
    }
    result.applied = static_cast<int64_t>(items.size());
  }
  if (expired || !valid.empty()) notifier_.Notify();
  if (action == NackAction::kRequeue) {
    // Requeueing may have hit max_deliveries.
    if (absl::Status s = DrainDeadLetters(); !s.ok()) {
      spdlog::warn("group \"{}\" of topic \"{}\": dead-lettering failed: {}", name(), topic_name(),
                   s.ToString());
    }
  }
  return result;
}

absl::StatusOr<AckResult> SharedGroup::PinRefs(const TokenRefs& tokens) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  std::vector<Valid> valid;
  bool expired = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    expired = ExpireLocked(now);
    CheckTokensLocked(tokens, /*for_release=*/false, &valid, &result);
    for (const Valid& v : valid) {
      leases_.SetState(v.token.partition, v.token.offset, LeaseState::kPinned);
    }
    result.applied = static_cast<int64_t>(valid.size());
  }
  if (expired) notifier_.Notify();
  return result;
}

absl::Status SharedGroup::AckPositions(absl::Span<const MessagePosition> positions) {
  std::vector<MessagePosition> items;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    for (const MessagePosition& m : positions) {
      ONCE_RETURN_IF_ERROR(CheckPosition(*ctx_.topic, m));
      Partition& part = parts_[m.partition];
      if (part.done.Contains(m.offset)) continue;
      if (const ::once::broker::Lease* l = leases_.Find(m.partition, m.offset)) {
        if (l->state == LeaseState::kSettling) continue;  // being settled already
        leases_.SetState(m.partition, m.offset, LeaseState::kSettling);
      }
      // Never delivered yet: the cursor must not hand it out later.
      if (auto it = part.dead.find(m.offset); it != part.dead.end() && it->second.in_progress) {
        continue;
      }
      items.push_back(m);
    }
    if (items.empty()) return absl::OkStatus();
    ++inflight_;
  }
  absl::Status s = SettleDone(items, /*dead_lettered=*/false);
  absl::MutexLock lock(&mu_);
  --inflight_;
  if (!s.ok()) {
    for (const MessagePosition& m : items) leases_.Unsettle(m.partition, m.offset);
  }
  return s;
}

absl::Status SharedGroup::DrainDeadLetters() {
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
    ++inflight_;
  }
  absl::Status s = PublishDeadLetters(ctx_.broker, *ctx_.topic, name(),
                                      DeadLetterTopicFor(topic_name(), ctx_.config), letters);
  if (s.ok()) s = SettleDone(items, /*dead_lettered=*/true);
  absl::MutexLock lock(&mu_);
  --inflight_;
  if (!s.ok()) {
    for (const MessagePosition& m : items) {
      ReleaseDeadLetter(m.offset, DeadLetterRetryAt(now, ctx_.config), parts_[m.partition].dead);
    }
  }
  return s;
}

}  // namespace once::broker
