// The 2PC engine's delivery loops (lease a batch, PREPARE), its timers and
// its recovery at start. See txn_coordinator.h.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/record.h"
#include "coordinator/txn_coordinator.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

// A delivery loop gives its worker back after this many rounds (and is
// scheduled again), so that one busy group cannot hold a worker forever.
constexpr int kMaxRoundsPerRun = 16;

// From this delivery count on (the third delivery: two transactions with
// the message failed) a redelivery is leased alone. Not from the second:
// a participant's crash sends its whole window round again, in batches.
constexpr int kLeaseAloneFrom = 3;

// A group's txn_batch_max must fit in one Lease call.
static_assert(broker::kMaxTxnBatchMax <= broker::kMaxFetch);

protocol::TxnMessage ToTxnMessage(absl::string_view topic, const broker::Delivery& d) {
  protocol::TxnMessage m;
  m.partition = static_cast<uint32_t>(d.partition);
  m.offset = static_cast<uint64_t>(d.record.offset);
  m.id = protocol::MessageId(std::string_view(topic.data(), topic.size()), m.partition, m.offset);
  if (d.record.has_key()) m.key = d.record.key;
  for (const broker::Header& h : d.record.headers) m.headers.emplace_back(h.key, h.value);
  m.value = d.record.value;
  m.binary = (d.record.flags & broker::kRecordValueBinary) != 0;
  m.delivery_count = static_cast<uint32_t>(std::max(1, d.delivery_count));
  m.timestamp_ms = d.record.timestamp_ms;
  return m;
}

}  // namespace

// ---- recovery

absl::Status TxnCoordinator::Recover() {
  ONCE_ASSIGN_OR_RETURN(const uint64_t epoch, store_->BumpEpoch());
  ONCE_ASSIGN_OR_RETURN(std::vector<TxnRecord> records, store_->LoadUnfinished());
  // DESIGN.md §2, recovery: every batch under a COMMIT record is deleted in
  // the broker before anything is delivered (leases died with the crash;
  // without this the batch would be delivered again).
  for (TxnRecord& record : records) {
    if (record.broker_deleted) continue;
    absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group =
        groups_(record.topic, record.group);
    if (!group.ok() && !absl::IsNotFound(group.status())) {
      return absl::Status(
          group.status().code(),
          absl::StrCat("recovering txn ", record.txn, ": finding group \"", record.group,
                       "\" of topic \"", record.topic, "\": ", group.status().message()));
    }
    if (group.ok()) {
      std::vector<broker::MessagePosition> positions;
      for (const TxnMessageRef& m : record.messages) {
        positions.push_back({static_cast<int>(m.partition), static_cast<int64_t>(m.offset)});
      }
      absl::Status s = (*group)->AckPositions(positions);
      if (absl::IsInvalidArgument(s)) {
        // Not in the log any more (a memory topic after a restart, a
        // truncated log): it cannot be delivered again either.
        spdlog::warn("recovering txn {}: its messages are no longer in the log: {}", record.txn,
                     s.ToString());
      } else if (!s.ok() && !absl::IsNotFound(s)) {
        return absl::Status(s.code(),
                            absl::StrCat("recovering txn ", record.txn,
                                         ": deleting its batch in the broker: ", s.message()));
      }
    } else {
      spdlog::warn("recovering txn {}: group \"{}\" of topic \"{}\" is gone (its messages too)",
                   record.txn, record.group, record.topic);
    }
    ONCE_RETURN_IF_ERROR(store_->MarkBrokerDeleted(record.txn));
    record.broker_deleted = true;
  }
  absl::MutexLock lock(&mu_);
  epoch_ = epoch;
  const int64_t now = clock_->NowMs();
  for (TxnRecord& record : records) {
    Txn t;
    t.key = {record.topic, record.group, record.participant};
    t.next_send_ms = now;
    t.backoff_ms = options_.commit_retry_initial_ms;
    t.record = std::move(record);
    std::string id = t.record.txn;
    txns_.emplace(std::move(id), std::move(t));
  }
  spdlog::info("transaction coordinator: epoch {}; {} committed transaction(s) wait for DONE",
               epoch_, txns_.size());
  return absl::OkStatus();
}

// ---- timers

void TxnCoordinator::Tick() {
  Aftermath after;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    const int64_t now = clock_->NowMs();
    std::vector<std::string> expired;
    for (auto& [id, t] : txns_) {
      if (t.record.state == TxnState::kPreparing && t.vote_deadline_ms <= now) {
        expired.push_back(id);
      } else if (t.record.state == TxnState::kCommitted && !t.finishing && t.next_send_ms <= now) {
        SendCommitLocked(t, &after);
      } else if (t.committing && t.commit_retry_at_ms > 0 && t.commit_retry_at_ms <= now) {
        t.commit_retry_at_ms = 0;
        after.commits.push_back(id);
      }
    }
    for (const std::string& id : expired) {
      Abort(txns_.at(id), TxnEvent::kTimeout, "vote_timeout",
            absl::StrCat("no vote within ", options_.vote_timeout_ms, " ms"), /*send_frame=*/true,
            /*release=*/true, &after);
    }
    for (const auto& [key, loop] : loops_) after.wake.push_back(loop);
  }
  Run(std::move(after));
}

// ---- delivery loops

std::shared_ptr<TxnCoordinator::GroupLoop> TxnCoordinator::LoopForLocked(
    const GroupKey& key, std::shared_ptr<broker::ConsumerGroup> group) {
  auto it = loops_.find(key);
  if (it != loops_.end() && it->second->group == group) return it->second;
  if (it != loops_.end()) {
    // The group was deleted and created again: a new loop for the new one.
    it->second->group->notifier().RemoveListener(it->second->listener);
    loops_.erase(it);
  }
  auto loop = std::make_shared<GroupLoop>();
  loop->key = key;
  loop->group = std::move(group);
  std::weak_ptr<GroupLoop> weak = loop;
  loop->listener = loop->group->notifier().AddListener([life = life_, weak] {
    TxnCoordinator* engine;
    {
      absl::MutexLock lock(&life->mu);
      if (life->engine == nullptr) return;
      engine = life->engine;
      ++life->running;
    }
    if (std::shared_ptr<GroupLoop> l = weak.lock()) engine->Wake(l);
    absl::MutexLock lock(&life->mu);
    --life->running;
  });
  loops_[key] = loop;
  return loop;
}

void TxnCoordinator::Wake(const std::shared_ptr<GroupLoop>& loop) {
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    if (loop->running) {
      loop->again = true;
      return;
    }
    loop->running = true;
    loop->again = false;
  }
  executor_([this, loop] { RunLoop(loop); });
}

void TxnCoordinator::RunLoop(std::shared_ptr<GroupLoop> loop) {
  for (int round = 0; round < kMaxRoundsPerRun; ++round) {
    std::vector<std::pair<ParticipantKey, uint64_t>> ready;
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) {
        loop->running = false;
        return;
      }
      loop->again = false;
      for (const auto& [key, c] : connections_) {
        if (c.loop == loop && c.welcomed && c.inflight < static_cast<int>(c.window)) {
          ready.emplace_back(key, c.generation);
        }
      }
    }
    bool progress = false;
    for (const auto& [key, generation] : ready) {
      if (DeliverOne(loop, key, generation)) progress = true;
    }
    absl::MutexLock lock(&mu_);
    if (!progress && !loop->again) {
      loop->running = false;
      return;
    }
  }
  executor_([this, loop] { RunLoop(loop); });
}

std::string TxnCoordinator::NextTxnIdLocked() {
  return absl::StrCat(epoch_, ".", next_sequence_++);
}

void TxnCoordinator::ReleaseLingeringLocked(Connection& c, Aftermath* after) {
  if (c.lingering.empty() || c.loop == nullptr) return;
  std::vector<broker::DeliveryToken> handles;
  handles.reserve(c.lingering.size());
  for (const broker::Delivery& d : c.lingering) handles.push_back(d.handle);
  c.lingering.clear();
  after->nacks.emplace_back(c.loop->group, std::move(handles));
}

bool TxnCoordinator::DeliverOne(const std::shared_ptr<GroupLoop>& loop, const ParticipantKey& key,
                                uint64_t generation) {
  // The batch so far: what lingered since an earlier round (taken out of
  // the connection, so a disconnect meanwhile cannot release it twice).
  std::vector<broker::Delivery> batch;
  int64_t deadline_ms = 0;
  {
    absl::MutexLock lock(&mu_);
    Connection* c = CurrentLocked(key);
    if (c == nullptr || c->generation != generation || c->inflight >= static_cast<int>(c->window)) {
      return false;
    }
    ++c->inflight;  // reserved; becomes the txn's
    batch = std::move(c->lingering);
    c->lingering.clear();
    deadline_ms = c->linger_deadline_ms;
  }
  auto unreserve = [&] {
    absl::MutexLock lock(&mu_);
    Connection* c = CurrentLocked(key);
    if (c != nullptr && c->generation == generation) --c->inflight;
  };
  // The group's own settings, else the service's (read at every batch:
  // a group deleted and created anew gets a new loop with its config).
  const broker::GroupConfig& config = loop->group->config();
  const int batch_max = config.txn_batch_max.value_or(options_.batch_max);
  const int64_t linger_ms = config.txn_linger_ms.value_or(
      std::min<int64_t>(options_.linger_ms, config.ack_timeout_ms / 2));
  // More cannot come while the participant holds `prefetch` leases.
  const size_t full = static_cast<size_t>(std::min(batch_max, config.prefetch));
  if (batch.size() < static_cast<size_t>(batch_max)) {
    // A message redelivered for the second time or more (its transactions
    // failed: a NO vote, a timeout, a crash) is leased alone, so that one
    // that makes every transaction fail reaches max_deliveries (and the
    // dead-letter topic) without the messages it was batched with. Not
    // into a batch that lingers (its leases are held already).
    const int alone_from = batch.empty() ? std::min(kLeaseAloneFrom, config.max_deliveries) : 0;
    absl::StatusOr<std::vector<broker::Delivery>> leased = loop->group->LeaseHandles(
        std::get<2>(key), batch_max - static_cast<int>(batch.size()), alone_from);
    if (!leased.ok()) {
      spdlog::warn("delivery loop of group \"{}\" of topic \"{}\": lease: {}", loop->key.second,
                   loop->key.first, leased.status().ToString());
    } else if (!leased->empty()) {
      // The linger is counted from the batch's first lease.
      if (batch.empty()) deadline_ms = clock_->NowMs() + linger_ms;
      for (broker::Delivery& d : *leased) batch.push_back(std::move(d));
    }
  }
  if (batch.empty()) {
    unreserve();
    return false;
  }
  const std::string& topic = loop->key.first;
  const bool linger = batch.size() < full && clock_->NowMs() < deadline_ms;
  // The PREPARE's contents are built before taking mu_ (a batch may hold
  // thousands of messages).
  std::vector<protocol::TxnMessage> messages;
  std::vector<broker::DeliveryToken> handles;
  std::vector<TxnMessageRef> refs;
  if (!linger) {
    messages.reserve(batch.size());
    handles.reserve(batch.size());
    refs.reserve(batch.size());
    for (broker::Delivery& d : batch) {
      messages.push_back(ToTxnMessage(topic, d));
      refs.push_back({static_cast<uint32_t>(d.partition), static_cast<uint64_t>(d.record.offset)});
      handles.push_back(d.handle);
    }
  }
  Aftermath after;
  {
    absl::MutexLock lock(&mu_);
    Connection* c = CurrentLocked(key);
    if (c == nullptr || c->generation != generation || shutdown_) {
      // Gone (or fenced) meanwhile: the reservation went with it.
      if (linger) {
        for (const broker::Delivery& d : batch) handles.push_back(d.handle);
      }
      after.nacks.emplace_back(loop->group, std::move(handles));
    } else if (linger) {
      // Not full and not due: keep it for a later round (a new message's
      // notification tops it up; Tick sends it once due).
      c->lingering = std::move(batch);
      c->linger_deadline_ms = deadline_ms;
      --c->inflight;
      return false;
    } else {
      const int64_t now = clock_->NowMs();
      Txn t;
      t.record.txn = NextTxnIdLocked();
      t.record.topic = topic;
      t.record.group = loop->key.second;
      t.record.participant = std::get<2>(key);
      t.record.epoch = epoch_;
      t.record.generation = generation;
      t.record.state = TxnState::kPreparing;
      t.record.messages = std::move(refs);
      t.record.created_ms = now;
      t.key = key;
      t.group = loop->group;
      t.handles = std::move(handles);
      t.prepared_generation = generation;
      t.vote_deadline_ms = now + options_.vote_timeout_ms;
      t.prepare_sent = std::chrono::steady_clock::now();
      protocol::Prepare p;
      p.txn = t.record.txn;
      p.epoch = epoch_;
      p.generation = generation;
      p.messages = std::move(messages);
      c->channel->Send(std::move(p));
      std::string id = t.record.txn;
      txns_.emplace(std::move(id), std::move(t));
      return true;
    }
  }
  Run(std::move(after));
  return false;
}

}  // namespace once::coordinator
