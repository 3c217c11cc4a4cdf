// SharedGroup: recovery from the stored state, expiry, consumers, Reset,
// Tick and Describe. Fetch/Lease: group_shared_fetch.cc; settling:
// group_shared_settle.cc.
#include "broker/group_shared.h"

#include <algorithm>
#include <utility>

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
    part.log = g->PartitionLog(p);
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
    absl::StatusOr<int64_t> at = ResolvePosition(*PartitionLog(p), to);
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
