#include "broker/group_shared.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

absl::StatusOr<std::unique_ptr<SharedGroup>> SharedGroup::Create(
    GroupContext ctx, const std::vector<StoredPartition>& stored,
    const std::vector<int64_t>& initial_floors) {
  std::unique_ptr<SharedGroup> g(new SharedGroup(std::move(ctx)));
  const int n = g->partition_count();
  absl::MutexLock lock(&g->mu_);
  g->parts_.resize(n);
  for (int p = 0; p < n; ++p) {
    Partition& part = g->parts_[p];
    part.log = g->ctx_.topic->partition(p);
    if (part.log == nullptr) {
      return absl::InternalError(absl::StrCat("topic \"", g->topic_name(), "\" has no partition ",
                                              p, " though it reports ", n));
    }
    const StoredPartition* sp = nullptr;
    for (const StoredPartition& s : stored) {
      if (s.partition == p) sp = &s;
    }
    if (sp == nullptr) {
      int64_t floor = p < static_cast<int>(initial_floors.size()) ? initial_floors[p] : 0;
      part.done.Reset(floor);
      part.cursor = floor;
      part.dispatched_persisted = floor;
      g->CatchUpWithRetentionLocked(part);
      continue;
    }
    part.done.Reset(sp->done_floor);
    int64_t high = sp->dispatched;
    for (const OffsetRange& r : sp->ranges) {
      part.done.InsertRange(r.begin, r.end);
      high = std::max(high, r.end);
    }
    part.acked = sp->acked;
    part.dead_lettered = sp->dead_lettered;
    part.dispatched_persisted = sp->dispatched;
    absl::flat_hash_map<int64_t, int32_t> counts(sp->counts.begin(), sp->counts.end());
    const int64_t next = part.log->NextOffset();
    if (high > next) {
      spdlog::error(
          "group \"{}\" of topic \"{}\": partition {} state reaches offset {} but the log "
          "ends at {} (the log lost its tail); the group continues from the log's end",
          g->name(), g->topic_name(), p, high, next);
      high = next;
      if (part.done.floor() > next) part.done.Reset(next);
    }
    // Every offset in [floor, high) not done was in flight at the crash:
    // deliver it again. Below `dispatched` it was delivered at least once.
    for (int64_t o = part.done.NextAbsent(part.done.floor()); o < high;
         o = part.done.NextAbsent(o + 1)) {
      int32_t deliveries = o < sp->dispatched ? 1 : 0;
      if (auto it = counts.find(o); it != counts.end())
        deliveries = std::max(deliveries, it->second);
      if (deliveries >= g->ctx_.config.max_deliveries) {
        part.dead[o] = PendingDeadLetter{deliveries, kReasonMaxDeliveries};
      } else {
        part.retry[o] = Retry{deliveries, 0};
      }
    }
    part.cursor = std::max(high, part.done.floor());
    g->CatchUpWithRetentionLocked(part);
  }
  return g;
}

void SharedGroup::CatchUpWithRetentionLocked(Partition& part) {
  const int64_t first = part.log->FirstOffset();
  if (first <= part.done.floor()) return;
  part.done.RaiseFloor(first);
  part.cursor = std::max(part.cursor, first);
  part.retry.erase(part.retry.begin(), part.retry.lower_bound(first));
  for (auto it = part.dead.begin(); it != part.dead.end() && it->first < first;) {
    it = it->second.in_progress ? std::next(it) : part.dead.erase(it);
  }
}

absl::Status SharedGroup::EnterLocked() {
  mu_.Await(absl::Condition(
      +[](bool* resetting) { return !*resetting; }, &resetting_));
  if (closed_) {
    return absl::NotFoundError(
        absl::StrCat("group \"", name(), "\" of topic \"", topic_name(), "\" was deleted"));
  }
  return absl::OkStatus();
}

uint32_t SharedGroup::TouchConsumerLocked(absl::string_view consumer, int64_t now_ms) {
  auto it = consumer_index_.find(consumer);
  uint32_t index;
  if (it == consumer_index_.end()) {
    index = next_consumer_++;
    consumer_index_.emplace(std::string(consumer), index);
    consumers_[index] = Consumer{std::string(consumer), now_ms};
  } else {
    index = it->second;
    consumers_[index].last_seen_ms = now_ms;
  }
  return index;
}

bool SharedGroup::ExpireLocked(int64_t now_ms) {
  std::vector<::once::broker::Lease> expired = leases_.TakeExpired(now_ms);
  for (const ::once::broker::Lease& l : expired) {
    // The backoff runs from when the lease expired, not from when a call
    // happened to notice it.
    RequeueLocked(l.partition, l.offset, l.deliveries, l.deadline_ms);
  }
  return !expired.empty();
}

void SharedGroup::RequeueLocked(int partition, int64_t offset, int32_t deliveries, int64_t now_ms) {
  Partition& part = parts_[partition];
  if (deliveries >= ctx_.config.max_deliveries) {
    part.dead[offset] = PendingDeadLetter{deliveries, kReasonMaxDeliveries};
  } else {
    part.retry[offset] = Retry{deliveries, now_ms + Backoff(deliveries)};
  }
}

absl::StatusOr<std::vector<Delivery>> SharedGroup::Fetch(absl::string_view consumer, int max) {
  if (ctx_.config.guarantee == Guarantee::kExactlyOnce) {
    return absl::FailedPreconditionError(absl::StrCat(
        "group \"", name(), "\" of topic \"", topic_name(),
        "\" is exactly-once: its messages are delivered only through the coordinator"));
  }
  return FetchImpl(consumer, max);
}

absl::StatusOr<std::vector<Delivery>> SharedGroup::Lease(absl::string_view participant, int max) {
  return FetchImpl(participant, max);
}

absl::StatusOr<std::vector<Delivery>> SharedGroup::FetchImpl(absl::string_view consumer, int max) {
  ONCE_RETURN_IF_ERROR(CheckFetchArgs(consumer, max));
  const int64_t now = ctx_.clock->NowMs();
  std::vector<Reserved> reserved;
  bool changed = false;
  bool dead_letters_due = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    const uint32_t cid = TouchConsumerLocked(consumer, now);
    const int64_t capacity = ctx_.config.prefetch - leases_.HeldBy(cid);
    int64_t want = std::min<int64_t>(max, capacity);
    const int n = static_cast<int>(parts_.size());
    // Per partition: the next redelivery candidate and the fresh range.
    struct Source {
      absl::btree_map<int64_t, Retry>::iterator retry;
      int64_t fresh_end = 0;
    };
    std::vector<Source> sources(n);
    for (int p = 0; p < n; ++p) {
      Partition& part = parts_[p];
      CatchUpWithRetentionLocked(part);
      sources[p].retry = part.retry.begin();
      sources[p].fresh_end = part.log->NextOffset();
      if (!part.dead.empty()) dead_letters_due = true;
    }
    // Round-robin, one message per partition per turn, starting one
    // partition further at each fetch so that small fetches spread too.
    std::vector<std::vector<int64_t>> retried(n);
    bool progress = true;
    while (want > 0 && progress) {
      progress = false;
      for (int i = 0; i < n && want > 0; ++i) {
        const int p = (round_robin_ + i) % n;
        Partition& part = parts_[p];
        Source& src = sources[p];
        while (src.retry != part.retry.end() && src.retry->second.not_before_ms > now) {
          ++src.retry;
        }
        if (src.retry != part.retry.end()) {
          reserved.push_back({p, src.retry->first, src.retry->second.deliveries + 1, 0});
          retried[p].push_back(src.retry->first);
          ++src.retry;
        } else if ((part.cursor = part.done.NextAbsent(part.cursor)) < src.fresh_end) {
          reserved.push_back({p, part.cursor, 1, 0});
          ++part.cursor;
        } else {
          continue;
        }
        --want;
        progress = true;
      }
    }
    if (n > 0) round_robin_ = (round_robin_ + 1) % n;
    for (int p = 0; p < n; ++p) {
      for (int64_t o : retried[p]) parts_[p].retry.erase(o);
    }
    for (Reserved& r : reserved) {
      r.sequence = ++sequence_;
      leases_.Add(::once::broker::Lease{r.partition, r.offset, cid, r.deliveries, r.sequence,
                                        now + ctx_.config.ack_timeout_ms, LeaseState::kActive,
                                        LeaseState::kActive});
      if (r.deliveries >= 2) parts_[r.partition].dirty_counts[r.offset] = r.deliveries;
    }
    if (!reserved.empty()) ++inflight_;
  }
  if (changed) notifier_.Notify();
  if (dead_letters_due) {
    if (absl::Status s = DrainDeadLetters(); !s.ok()) {
      spdlog::warn("group \"{}\" of topic \"{}\": dead-lettering failed: {}", name(), topic_name(),
                   s.ToString());
    }
  }
  if (reserved.empty()) return std::vector<Delivery>();

  // Read the records without the lock. Reserved entries are grouped by
  // partition in ascending offset order for ReadOffsets.
  std::vector<Reserved> sorted = reserved;
  std::sort(sorted.begin(), sorted.end(), [](const Reserved& a, const Reserved& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::vector<Delivery> out;
  out.reserve(sorted.size());
  absl::Status read_status;
  std::vector<MessagePosition> gone;  // trimmed by retention meanwhile
  std::vector<const Reserved*> unread;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    std::vector<int64_t> offsets;
    while (j < sorted.size() && sorted[j].partition == sorted[i].partition) {
      offsets.push_back(sorted[j].offset);
      ++j;
    }
    const int p = sorted[i].partition;
    absl::StatusOr<std::vector<Record>> records = ReadOffsets(*parts_[p].log, offsets);
    if (records.ok()) {
      for (size_t k = 0; k < records->size(); ++k) {
        const Reserved& r = sorted[i + k];
        Delivery d;
        d.partition = p;
        d.record = std::move((*records)[k]);
        d.delivery_count = r.deliveries;
        d.token = MakeToken(p, r.offset, r.sequence, r.deliveries, 0);
        out.push_back(std::move(d));
      }
    } else if (absl::IsOutOfRange(records.status())) {
      for (size_t k = i; k < j; ++k) gone.push_back({p, sorted[k].offset});
    } else {
      read_status = absl::Status(
          records.status().code(),
          absl::StrCat("reading ", topic_name(), "/", p, ": ", records.status().message()));
      for (size_t k = i; k < j; ++k) unread.push_back(&sorted[k]);
    }
    i = j;
  }
  {
    absl::MutexLock lock(&mu_);
    --inflight_;
    for (const MessagePosition& m : gone) {
      // Retention removed them between the reservation and the read; a
      // later fetch skips what lies below the log's start.
      leases_.Remove(m.partition, m.offset);
      CatchUpWithRetentionLocked(parts_[m.partition]);
    }
    for (const Reserved* r : unread) {
      // Not delivered: give the reservation back without counting it.
      leases_.Remove(r->partition, r->offset);
      parts_[r->partition].retry[r->offset] = Retry{r->deliveries - 1, 0};
    }
  }
  if (!read_status.ok() && out.empty()) return read_status;
  if (!read_status.ok()) {
    spdlog::warn("group \"{}\": fetch returns {} messages, skipping a partition: {}", name(),
                 out.size(), read_status.ToString());
  }
  return out;
}

absl::Status SharedGroup::StaleReasonLocked(const DeliveryToken& t) const {
  const std::string where = absl::StrCat(topic_name(), "/", t.partition, "/", t.offset);
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

void SharedGroup::CheckTokensLocked(absl::Span<const std::string> tokens, bool for_release,
                                    std::vector<Valid>* valid, AckResult* result) {
  absl::flat_hash_set<std::pair<int, int64_t>> seen;
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StatusOr<DeliveryToken> t = CheckToken(tokens[i]);
    if (!t.ok()) {
      result->refused.push_back({i, tokens[i], t.status()});
      continue;
    }
    if (!seen.emplace(t->partition, t->offset).second) {
      result->refused.push_back(
          {i, tokens[i],
           absl::FailedPreconditionError(
               absl::StrCat("message ", topic_name(), "/", t->partition, "/", t->offset,
                            " appears more than once in this call; only the first counts"))});
      continue;
    }
    const ::once::broker::Lease* l = leases_.Find(t->partition, t->offset);
    if (l == nullptr || l->sequence != t->sequence || l->state == LeaseState::kSettling) {
      result->refused.push_back({i, tokens[i], StaleReasonLocked(*t)});
      continue;
    }
    if (for_release && l->state == LeaseState::kPinned) {
      result->refused.push_back({i, tokens[i],
                                 absl::FailedPreconditionError(absl::StrCat(
                                     "message ", topic_name(), "/", t->partition, "/", t->offset,
                                     " is pinned by a commit decision: it can only be acked"))});
      continue;
    }
    valid->push_back({i, *t});
  }
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
    for (const auto& [offset, deliveries] : part.dirty_counts) {
      if (offset >= u.done_floor) u.set_counts.emplace_back(offset, deliveries);
    }
    batch.updates.push_back(std::move(u));
  }
  return batch;
}

void SharedGroup::MarkPersistedLocked(const GroupWriteBatch& batch) {
  for (const PartitionUpdate& u : batch.updates) {
    Partition& part = parts_[u.partition];
    part.dispatched_persisted = std::max(part.dispatched_persisted, u.dispatched);
    for (const auto& [offset, deliveries] : u.set_counts) {
      auto it = part.dirty_counts.find(offset);
      if (it != part.dirty_counts.end() && it->second == deliveries) part.dirty_counts.erase(it);
    }
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

absl::StatusOr<AckResult> SharedGroup::Ack(absl::Span<const std::string> tokens) {
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
    changed = true;  // prefetch room freed
  }
  if (changed) notifier_.Notify();
  return result;
}

absl::StatusOr<AckResult> SharedGroup::Nack(absl::Span<const std::string> tokens,
                                            NackAction action) {
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

absl::StatusOr<AckResult> SharedGroup::Pin(absl::Span<const std::string> tokens) {
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
      if (m.partition < 0 || m.partition >= static_cast<int>(parts_.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "partition ", m.partition, " is out of range for topic \"", topic_name(), "\""));
      }
      Partition& part = parts_[m.partition];
      if (m.offset < 0 || m.offset >= part.log->NextOffset()) {
        return absl::InvalidArgumentError(absl::StrCat("offset ", m.offset, " of ", topic_name(),
                                                       "/", m.partition, " is not in the log"));
      }
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
      for (auto& [offset, pending] : parts_[p].dead) {
        if (pending.in_progress || pending.retry_at_ms > now) continue;
        pending.in_progress = true;
        letters.push_back({p, offset, pending.deliveries, pending.reason});
        items.push_back({p, offset});
      }
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
      auto it = parts_[m.partition].dead.find(m.offset);
      if (it == parts_[m.partition].dead.end()) continue;
      it->second.in_progress = false;
      it->second.retry_at_ms = now + std::max(kDeadLetterRetryMs, ctx_.config.backoff_base_ms);
    }
  }
  return s;
}

absl::Status SharedGroup::Join(absl::string_view consumer) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(EnterLocked());
  TouchConsumerLocked(consumer, ctx_.clock->NowMs());
  return absl::OkStatus();
}

absl::Status SharedGroup::Heartbeat(absl::string_view consumer) { return Join(consumer); }

absl::Status SharedGroup::Leave(absl::string_view consumer) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  const int64_t now = ctx_.clock->NowMs();
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    auto it = consumer_index_.find(consumer);
    if (it == consumer_index_.end()) {
      return absl::NotFoundError(
          absl::StrCat("consumer \"", consumer, "\" is not in group \"", name(), "\""));
    }
    const uint32_t cid = it->second;
    // Release its active leases as if they had timed out now.
    std::vector<::once::broker::Lease> mine;
    leases_.ForEach([&](const ::once::broker::Lease& l) {
      if (l.consumer == cid && l.state == LeaseState::kActive) mine.push_back(l);
    });
    for (const ::once::broker::Lease& l : mine) {
      leases_.Remove(l.partition, l.offset);
      RequeueLocked(l.partition, l.offset, l.deliveries, now);
    }
    if (leases_.HeldBy(cid) == 0) {
      consumers_.erase(cid);
      consumer_index_.erase(it);
    }
  }
  notifier_.Notify();
  return absl::OkStatus();
}

absl::Status SharedGroup::Reset(const Position& to, int partition) {
  const int n = partition_count();
  if (partition >= n || partition < -1) {
    return absl::InvalidArgumentError(absl::StrCat("reset: partition ", partition,
                                                   " is out of range for topic \"", topic_name(),
                                                   "\" (", n, " partitions)"));
  }
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    resetting_ = true;
    mu_.Await(absl::Condition(
        +[](int* inflight) { return *inflight == 0; }, &inflight_));
  }
  // resetting_ keeps every other call out until we are done, so the state
  // may be read without the lock for the I/O below.
  auto finish = [&](absl::Status s) {
    absl::MutexLock lock(&mu_);
    resetting_ = false;
    return s;
  };
  std::vector<std::pair<int, int64_t>> targets;
  for (int p = 0; p < n; ++p) {
    if (partition >= 0 && p != partition) continue;
    absl::StatusOr<int64_t> at = ResolvePosition(*ctx_.topic->partition(p), to);
    if (!at.ok()) return finish(at.status());
    targets.emplace_back(p, *at);
  }
  if (durable()) {
    GroupWriteBatch batch;
    for (const auto& [p, at] : targets) {
      PartitionUpdate u;
      u.group_id = static_cast<int64_t>(ctx_.incarnation);
      u.partition = p;
      u.reset = true;
      u.done_floor = at;
      u.dispatched = at;
      batch.updates.push_back(std::move(u));
    }
    if (absl::Status s = ctx_.store->Write(batch); !s.ok()) return finish(s);
  }
  {
    absl::MutexLock lock(&mu_);
    std::vector<::once::broker::Lease> all = leases_.TakeAll();
    for (const ::once::broker::Lease& l : all) {
      if (partition >= 0 && l.partition != partition) leases_.Add(l);
    }
    for (const auto& [p, at] : targets) {
      Partition& part = parts_[p];
      part.done.Reset(at);
      part.cursor = at;
      part.dispatched_persisted = at;
      part.retry.clear();
      part.dead.clear();
      part.dirty_counts.clear();
    }
    resetting_ = false;
  }
  spdlog::info("group \"{}\" of topic \"{}\" reset to {} ({})", name(), topic_name(),
               PositionName(to),
               partition < 0 ? "all partitions" : absl::StrCat("partition ", partition));
  notifier_.Notify();
  return absl::OkStatus();
}

absl::Status SharedGroup::Tick() {
  const int64_t now = ctx_.clock->NowMs();
  bool changed = false;
  bool flush = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    for (auto it = consumers_.begin(); it != consumers_.end();) {
      const Consumer& c = it->second;
      if (c.last_seen_ms + ctx_.config.session_timeout_ms <= now &&
          leases_.HeldBy(it->first) == 0) {
        consumer_index_.erase(c.id);
        consumers_.erase(it++);
      } else {
        ++it;
      }
    }
    for (const Partition& part : parts_) {
      if (!part.dirty_counts.empty() || part.cursor > part.dispatched_persisted) flush = true;
    }
    flush = flush && durable();
    if (flush) ++inflight_;  // keeps Reset from interleaving with the write
  }
  if (changed) notifier_.Notify();
  absl::Status status = absl::OkStatus();
  if (flush) {
    status = SettleDone({}, /*dead_lettered=*/false);
    absl::MutexLock lock(&mu_);
    --inflight_;
  }
  absl::Status drained = DrainDeadLetters();
  return status.ok() ? drained : status;
}

GroupDescription SharedGroup::Describe() const {
  GroupDescription d;
  d.topic = topic_name();
  d.name = name();
  d.config = ctx_.config;
  d.dead_letter_topic = DeadLetterTopicFor(topic_name(), ctx_.config);
  d.incarnation = ctx_.incarnation;
  d.created_ms = ctx_.created_ms;
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> leased(parts_.size(), 0);
  absl::flat_hash_map<uint32_t, int64_t> held;
  leases_.ForEach([&](const ::once::broker::Lease& l) {
    ++leased[l.partition];
    ++held[l.consumer];
  });
  for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
    const Partition& part = parts_[p];
    GroupPartitionDescription pd;
    pd.partition = p;
    pd.first_offset = part.log->FirstOffset();
    pd.next_offset = part.log->NextOffset();
    pd.done_floor = part.done.floor();
    const int64_t from = std::max(pd.done_floor, pd.first_offset);
    pd.lag = std::max<int64_t>(0, pd.next_offset - from - part.done.CountAboveFloor());
    pd.leased = leased[p];
    pd.pending_redelivery = static_cast<int64_t>(part.retry.size());
    pd.acked = part.acked;
    pd.dead_lettered = part.dead_lettered;
    d.lag += pd.lag;
    d.leased += pd.leased;
    d.acked += pd.acked;
    d.dead_lettered += pd.dead_lettered;
    d.partitions.push_back(std::move(pd));
  }
  for (const auto& [index, c] : consumers_) {
    ConsumerDescription cd;
    cd.id = c.id;
    cd.last_seen_ms = c.last_seen_ms;
    auto it = held.find(index);
    cd.held = it == held.end() ? 0 : it->second;
    d.consumers.push_back(std::move(cd));
  }
  std::sort(d.consumers.begin(), d.consumers.end(),
            [](const ConsumerDescription& a, const ConsumerDescription& b) { return a.id < b.id; });
  return d;
}

std::vector<int64_t> SharedGroup::DoneFloors() const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> floors;
  floors.reserve(parts_.size());
  for (const Partition& part : parts_) floors.push_back(part.done.floor());
  return floors;
}

std::optional<int64_t> SharedGroup::NextDeadlineMs() const {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> next = leases_.NextDeadline();
  auto consider = [&](int64_t t) {
    if (!next.has_value() || t < *next) next = t;
  };
  for (const Partition& part : parts_) {
    for (const auto& [offset, r] : part.retry) consider(r.not_before_ms);
    for (const auto& [offset, pending] : part.dead) {
      if (!pending.in_progress) consider(pending.retry_at_ms);
    }
  }
  return next;
}

void SharedGroup::Close() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](SharedGroup* g)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return g->inflight_ == 0 && !g->resetting_; },
        this));
    closed_ = true;
  }
  notifier_.Notify();
}

}  // namespace once::broker
