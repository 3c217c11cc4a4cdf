#include "broker/group_ordered.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

absl::Status DuplicateInCall(const DeliveryToken& t) {
  return absl::FailedPreconditionError(
      absl::StrCat("message at partition ", t.partition, " offset ", t.offset,
                   " appears more than once in this call; only the first counts"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<OrderedGroup>> OrderedGroup::Create(
    GroupContext ctx, const std::vector<StoredPartition>& stored,
    const std::vector<int64_t>& initial_floors) {
  std::unique_ptr<OrderedGroup> g(new OrderedGroup(std::move(ctx)));
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

absl::StatusOr<std::vector<Delivery>> OrderedGroup::Fetch(absl::string_view consumer, int max) {
  if (ctx_.config.guarantee == Guarantee::kExactlyOnce) {
    return absl::FailedPreconditionError(absl::StrCat(
        "group \"", name(), "\" of topic \"", topic_name(),
        "\" is exactly-once: its messages are delivered only through the coordinator"));
  }
  return FetchImpl(consumer, max);
}

absl::StatusOr<std::vector<Delivery>> OrderedGroup::Lease(absl::string_view participant, int max) {
  return FetchImpl(participant, max);
}

absl::StatusOr<std::vector<Delivery>> OrderedGroup::FetchImpl(absl::string_view consumer, int max) {
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

  std::vector<Reserved> sorted = reserved;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Reserved& a, const Reserved& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::vector<Delivery> out;
  absl::Status read_status;
  std::vector<const Reserved*> unread;
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
        d.token = MakeToken(p, r.offset, r.sequence, r.deliveries, generation);
        out.push_back(std::move(d));
      }
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
    --inflight_calls_;
    for (const Reserved* r : unread) {
      // Not delivered: rewind to it without counting the attempt.
      Partition& part = parts_[r->partition];
      part.counts[r->offset] = r->deliveries - 1;
      RewindLocked(part, r->offset, part.not_before_ms);
      CatchUpWithRetentionLocked(part);
    }
  }
  if (!read_status.ok() && out.empty()) return read_status;
  if (!read_status.ok()) {
    spdlog::warn("group \"{}\": fetch returns {} messages, skipping a partition: {}", name(),
                 out.size(), read_status.ToString());
  }
  return out;
}

absl::StatusOr<OrderedGroup::Inflight*> OrderedGroup::FindDeliveryLocked(const DeliveryToken& t) {
  const std::string where = absl::StrCat(topic_name(), "/", t.partition, "/", t.offset);
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

absl::StatusOr<AckResult> OrderedGroup::Ack(absl::Span<const std::string> tokens) {
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
    absl::flat_hash_set<std::pair<int, int64_t>> seen;
    std::vector<std::pair<int, Inflight*>> settling;
    for (size_t i = 0; i < tokens.size(); ++i) {
      absl::StatusOr<DeliveryToken> t = CheckToken(tokens[i]);
      absl::StatusOr<Inflight*> f =
          t.ok() ? FindDeliveryLocked(*t) : absl::StatusOr<Inflight*>(t.status());
      if (f.ok() && !seen.emplace(t->partition, t->offset).second) {
        f = DuplicateInCall(*t);
      }
      if (!f.ok()) {
        result.refused.push_back({i, tokens[i], f.status()});
        continue;
      }
      int64_t& u = upto[t->partition];
      u = std::max(u, t->offset + 1);
      settling.emplace_back(t->partition, *f);
      ++result.applied;
    }
    for (auto& [p, f] : settling) f->settling = true;
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

absl::StatusOr<AckResult> OrderedGroup::Nack(absl::Span<const std::string> tokens,
                                             NackAction action) {
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
    absl::flat_hash_set<std::pair<int, int64_t>> seen;
    for (size_t i = 0; i < tokens.size(); ++i) {
      absl::StatusOr<DeliveryToken> t = CheckToken(tokens[i]);
      absl::StatusOr<Inflight*> f =
          t.ok() ? FindDeliveryLocked(*t) : absl::StatusOr<Inflight*>(t.status());
      if (f.ok() && !seen.emplace(t->partition, t->offset).second) {
        f = DuplicateInCall(*t);
      }
      if (f.ok() && (*f)->pinned) {
        f = absl::FailedPreconditionError(
            absl::StrCat("message ", topic_name(), "/", t->partition, "/", t->offset,
                         " is pinned by a commit decision: it can only be acked"));
      }
      if (!f.ok()) {
        result.refused.push_back({i, tokens[i], f.status()});
        continue;
      }
      ++result.applied;
      if (action == NackAction::kDeadLetter) {
        (*f)->settling = true;
        letters.push_back({t->partition, t->offset, (*f)->deliveries, kReasonRejected});
        dead.push_back({t->partition, t->offset});
      } else {
        auto it = rewind_to.find(t->partition);
        if (it == rewind_to.end() || it->second.offset > t->offset) {
          rewind_to[t->partition] = **f;
        }
      }
    }
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

absl::StatusOr<AckResult> OrderedGroup::Pin(absl::Span<const std::string> tokens) {
  ONCE_RETURN_IF_ERROR(CheckTokenCount(tokens.size()));
  const int64_t now = ctx_.clock->NowMs();
  AckResult result;
  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(EnterLocked());
  ExpireLocked(now);
  absl::flat_hash_set<std::pair<int, int64_t>> seen;
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StatusOr<DeliveryToken> t = CheckToken(tokens[i]);
    absl::StatusOr<Inflight*> f =
        t.ok() ? FindDeliveryLocked(*t) : absl::StatusOr<Inflight*>(t.status());
    if (f.ok() && !seen.emplace(t->partition, t->offset).second) f = DuplicateInCall(*t);
    if (!f.ok()) {
      result.refused.push_back({i, tokens[i], f.status()});
      continue;
    }
    (*f)->pinned = true;
    ++result.applied;
  }
  return result;
}

absl::Status OrderedGroup::AckPositions(absl::Span<const MessagePosition> positions) {
  std::vector<Commit> commits;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    absl::flat_hash_map<int, int64_t> upto;
    for (const MessagePosition& m : positions) {
      if (m.partition < 0 || m.partition >= static_cast<int>(parts_.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "partition ", m.partition, " is out of range for topic \"", topic_name(), "\""));
      }
      if (m.offset < 0 || m.offset >= parts_[m.partition].log->NextOffset()) {
        return absl::InvalidArgumentError(absl::StrCat("offset ", m.offset, " of ", topic_name(),
                                                       "/", m.partition, " is not in the log"));
      }
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
      for (const auto& [offset, deliveries] : part.dirty_counts) {
        if (offset >= u.done_floor) u.set_counts.emplace_back(offset, deliveries);
      }
      batch.updates.push_back(std::move(u));
    }
  }
  absl::Status status = ctx_.store->Write(batch);
  absl::MutexLock lock(&mu_);
  if (!status.ok()) return status;
  for (const PartitionUpdate& u : batch.updates) {
    Partition& part = parts_[u.partition];
    part.dispatched_persisted = std::max(part.dispatched_persisted, u.dispatched);
    for (const auto& [offset, deliveries] : u.set_counts) {
      auto it = part.dirty_counts.find(offset);
      if (it != part.dirty_counts.end() && it->second == deliveries) part.dirty_counts.erase(it);
    }
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
      for (auto& [offset, pending] : parts_[p].dead) {
        if (pending.in_progress || pending.retry_at_ms > now) continue;
        pending.in_progress = true;
        letters.push_back({p, offset, pending.deliveries, pending.reason});
        items.push_back({p, offset});
      }
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
        auto it = parts_[m.partition].dead.find(m.offset);
        if (it == parts_[m.partition].dead.end()) continue;
        it->second.in_progress = false;
        it->second.retry_at_ms = now + std::max(kDeadLetterRetryMs, ctx_.config.backoff_base_ms);
      }
    }
  }
  if (s.ok()) notifier_.Notify();  // the partitions behind them move again
  return s;
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
