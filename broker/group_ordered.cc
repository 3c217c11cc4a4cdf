// OrderedGroup: recovery from the stored state, membership and
// rebalancing, expiry, Reset, Tick and Describe. Fetch/Lease:
// group_ordered_fetch.cc; settling: group_ordered_settle.cc.
#include "broker/group_ordered.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

absl::StatusOr<std::unique_ptr<OrderedGroup>> OrderedGroup::Create(
    GroupContext ctx, const std::vector<StoredPartition>& stored,
    const std::vector<int64_t>& initial_floors) {
  std::unique_ptr<OrderedGroup> g(new OrderedGroup(std::move(ctx)));
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
    } else {
      part.done.Reset(sp->done_floor);
      for (const OffsetRange& r : sp->ranges) part.done.InsertRange(r.begin, r.end);
      part.acked = sp->acked;
      part.dead_lettered = sp->dead_lettered;
      part.dispatched = part.dispatched_persisted = sp->dispatched;
      const int64_t next = part.log->NextOffset();
      if (part.done.floor() > next) {
        spdlog::error(
            "group \"{}\" of topic \"{}\": partition {} committed offset {} is past the log's "
            "end {} (the log lost its tail); the group continues from the log's end",
            g->name(), g->topic_name(), p, part.done.floor(), next);
        part.done.Reset(next);
      }
      // Delivered but not committed before the restart: at least once.
      for (int64_t o = part.done.floor(); o < std::min(sp->dispatched, next); ++o) {
        if (!part.done.Contains(o)) part.counts[o] = 1;
      }
      for (const auto& [offset, deliveries] : sp->counts) {
        if (!part.done.Contains(offset)) {
          part.counts[offset] = std::max(part.counts[offset], deliveries);
        }
      }
    }
    part.position = part.done.floor();
    g->CatchUpWithRetentionLocked(part);
  }
  return g;
}

uint32_t OrderedGroup::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

void OrderedGroup::CatchUpWithRetentionLocked(Partition& part) {
  const int64_t first = part.log->FirstOffset();
  if (first <= part.done.floor()) return;
  part.done.RaiseFloor(first);
  part.position = std::max(part.position, part.done.floor());
  part.counts.erase(part.counts.begin(), part.counts.lower_bound(first));
  while (!part.inflight.empty() && part.inflight.front().offset < first &&
         !part.inflight.front().settling) {
    part.inflight.pop_front();
  }
}

absl::Status OrderedGroup::EnterLocked() {
  mu_.Await(absl::Condition(
      +[](bool* resetting) { return !*resetting; }, &resetting_));
  if (closed_) {
    return absl::NotFoundError(
        absl::StrCat("group \"", name(), "\" of topic \"", topic_name(), "\" was deleted"));
  }
  return absl::OkStatus();
}

bool OrderedGroup::TouchMemberLocked(absl::string_view consumer, int64_t now_ms) {
  auto [it, inserted] = members_.insert_or_assign(std::string(consumer), now_ms);
  if (inserted) {
    RebalanceLocked();
    spdlog::info("group \"{}\" of topic \"{}\": consumer \"{}\" joined, generation {}", name(),
                 topic_name(), std::string(consumer), generation_);
  }
  return inserted;
}

void OrderedGroup::RebalanceLocked() {
  ++generation_;
  std::vector<const std::string*> ids;
  for (const auto& [id, seen] : members_) ids.push_back(&id);
  for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
    Partition& part = parts_[p];
    part.owner = ids.empty() ? std::string() : *ids[p % ids.size()];
    // Every outstanding delivery is fenced by the new generation: deliver
    // again from the committed offset, to whoever owns the partition now.
    RewindLocked(part, part.done.floor(), part.not_before_ms);
  }
}

void OrderedGroup::RewindLocked(Partition& part, int64_t offset, int64_t not_before_ms) {
  // Settling entries stay until their commit lands; anything else from
  // `offset` on is dropped (its tokens become stale).
  std::deque<Inflight> kept;
  for (const Inflight& f : part.inflight) {
    if (f.offset < offset || f.settling) kept.push_back(f);
  }
  part.inflight.swap(kept);
  part.position = std::max(offset, part.done.floor());
  part.not_before_ms = not_before_ms;
}

bool OrderedGroup::ExpireLocked(int64_t now_ms) {
  bool changed = false;
  std::vector<std::string> gone;
  for (const auto& [id, seen] : members_) {
    if (seen + ctx_.config.session_timeout_ms <= now_ms) gone.push_back(id);
  }
  if (!gone.empty()) {
    for (const std::string& id : gone) members_.erase(id);
    RebalanceLocked();
    spdlog::info("group \"{}\" of topic \"{}\": {} consumer(s) timed out, generation {}", name(),
                 topic_name(), gone.size(), generation_);
    changed = true;
  }
  for (Partition& part : parts_) {
    for (const Inflight& f : part.inflight) {
      if (f.settling || f.pinned) continue;
      if (f.deadline_ms <= now_ms) {
        // The oldest unacked delivery timed out: deliver again from it.
        // The backoff runs from the deadline, not from when it was noticed.
        RewindLocked(part, f.offset, f.deadline_ms + Backoff(f.deliveries));
        changed = true;
      }
      break;  // only the oldest live delivery decides
    }
  }
  return changed;
}

absl::Status OrderedGroup::Join(absl::string_view consumer) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    const int64_t now = ctx_.clock->NowMs();
    changed = ExpireLocked(now);
    changed |= TouchMemberLocked(consumer, now);
  }
  if (changed) notifier_.Notify();
  return absl::OkStatus();
}

absl::Status OrderedGroup::Heartbeat(absl::string_view consumer) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(EnterLocked());
  auto it = members_.find(consumer);
  if (it == members_.end()) {
    return absl::NotFoundError(absl::StrCat("consumer \"", consumer,
                                            "\" is not a member of group \"", name(),
                                            "\" (its session may have timed out)"));
  }
  it->second = ctx_.clock->NowMs();
  return absl::OkStatus();
}

absl::Status OrderedGroup::Leave(absl::string_view consumer) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    auto it = members_.find(consumer);
    if (it == members_.end()) {
      return absl::NotFoundError(
          absl::StrCat("consumer \"", consumer, "\" is not a member of group \"", name(), "\""));
    }
    members_.erase(it);
    RebalanceLocked();
    spdlog::info("group \"{}\" of topic \"{}\": consumer \"{}\" left, generation {}", name(),
                 topic_name(), std::string(consumer), generation_);
  }
  notifier_.Notify();
  return absl::OkStatus();
}

absl::Status OrderedGroup::Reset(const Position& to, int partition) {
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
        +[](int* calls) { return *calls == 0; }, &inflight_calls_));
  }
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
    for (const auto& [p, at] : targets) {
      Partition& part = parts_[p];
      part.done.Reset(at);
      part.inflight.clear();
      part.position = at;
      part.not_before_ms = 0;
      part.counts.clear();
      part.dirty_counts.clear();
      part.dead.clear();
      part.dispatched = part.dispatched_persisted = at;
    }
    // Fence every outstanding token, as a rebalance does.
    ++generation_;
    resetting_ = false;
  }
  spdlog::info(
      "group \"{}\" of topic \"{}\" reset to {} ({})", name(), topic_name(), PositionName(to),
      partition < 0 ? std::string("all partitions") : absl::StrCat("partition ", partition));
  notifier_.Notify();
  return absl::OkStatus();
}

absl::Status OrderedGroup::Tick() {
  const int64_t now = ctx_.clock->NowMs();
  bool changed = false;
  bool flush = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    for (const Partition& part : parts_) {
      if (!part.dirty_counts.empty() || part.dispatched > part.dispatched_persisted) flush = true;
    }
    flush = flush && durable();
    if (flush) ++inflight_calls_;  // keeps Reset from interleaving with the write
  }
  if (changed) notifier_.Notify();
  absl::Status status = absl::OkStatus();
  if (flush) {
    status = Settle({}, {});
    absl::MutexLock lock(&mu_);
    --inflight_calls_;
  }
  absl::Status drained = DrainDeadLetters();
  return status.ok() ? drained : status;
}

GroupDescription OrderedGroup::Describe() const {
  GroupDescription d;
  d.topic = topic_name();
  d.name = name();
  d.config = ctx_.config;
  d.dead_letter_topic = DeadLetterTopicFor(topic_name(), ctx_.config);
  d.incarnation = ctx_.incarnation;
  d.created_ms = ctx_.created_ms;
  absl::MutexLock lock(&mu_);
  d.generation = generation_;
  absl::flat_hash_map<std::string, ConsumerDescription> consumers;
  for (const auto& [id, seen] : members_) {
    ConsumerDescription& cd = consumers[id];
    cd.id = id;
    cd.last_seen_ms = seen;
  }
  for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
    const Partition& part = parts_[p];
    GroupPartitionDescription pd;
    pd.partition = p;
    pd.first_offset = part.log->FirstOffset();
    pd.next_offset = part.log->NextOffset();
    pd.done_floor = part.done.floor();
    const int64_t from = std::max(pd.done_floor, pd.first_offset);
    pd.lag = std::max<int64_t>(0, pd.next_offset - from - part.done.CountAboveFloor());
    pd.leased = static_cast<int64_t>(part.inflight.size());
    pd.pending_redelivery = std::max<int64_t>(0, part.dispatched - part.position);
    pd.acked = part.acked;
    pd.dead_lettered = part.dead_lettered;
    pd.owner = part.owner;
    if (!part.owner.empty()) {
      auto it = consumers.find(part.owner);
      if (it != consumers.end()) {
        it->second.partitions.push_back(p);
        it->second.held += pd.leased;
      }
    }
    d.lag += pd.lag;
    d.leased += pd.leased;
    d.acked += pd.acked;
    d.dead_lettered += pd.dead_lettered;
    d.partitions.push_back(std::move(pd));
  }
  for (auto& [id, cd] : consumers) d.consumers.push_back(std::move(cd));
  std::sort(d.consumers.begin(), d.consumers.end(),
            [](const ConsumerDescription& a, const ConsumerDescription& b) { return a.id < b.id; });
  return d;
}

std::vector<int64_t> OrderedGroup::DoneFloors() const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> floors;
  for (const Partition& part : parts_) floors.push_back(part.done.floor());
  return floors;
}

std::optional<int64_t> OrderedGroup::NextDeadlineMs() const {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> next;
  auto consider = [&](int64_t t) {
    if (!next.has_value() || t < *next) next = t;
  };
  for (const auto& [id, seen] : members_) consider(seen + ctx_.config.session_timeout_ms);
  for (const Partition& part : parts_) {
    for (const Inflight& f : part.inflight) {
      if (f.settling || f.pinned) continue;
      consider(f.deadline_ms);
      break;
    }
    if (part.not_before_ms > 0) consider(part.not_before_ms);
  }
  return next;
}

void OrderedGroup::Close() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](OrderedGroup* g)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return g->inflight_calls_ == 0 && !g->resetting_; },
        this));
    closed_ = true;
  }
  notifier_.Notify();
}

}  // namespace once::broker
