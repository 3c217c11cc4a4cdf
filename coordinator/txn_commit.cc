// The commit point (pin, then the COMMIT record in the group commit), the
// COMMIT (re-)sends and DONE. See txn_coordinator.h.
#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/txn_coordinator.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

protocol::Error ErrorFrame(absl::string_view code, std::string message, int status) {
  protocol::Error e;
  e.code = std::string(code);
  e.message = std::move(message);
  e.status = status;
  return e;
}

}  // namespace

void TxnCoordinator::DecideCommit(const std::string& txn_id,
                                  std::function<void(absl::Status)> done) {
  std::shared_ptr<broker::ConsumerGroup> group;
  std::vector<broker::DeliveryToken> handles;
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(txn_id);
    if (it != txns_.end() && it->second.committing) {
      group = it->second.group;
      handles = it->second.handles;
    }
  }
  if (group == nullptr || handles.empty()) {
    PinAndWriteCommit(txn_id, std::move(done));
    return;
  }
  // No COMMIT record for records a crash could still take away: the
  // PREPARE went out once they were written; the decision waits for their
  // fdatasync (mostly over by the time the vote is in).
  AfterDurable(*group, handles, [this, txn_id, done = std::move(done)](absl::Status s) mutable {
    if (s.ok()) {
      PinAndWriteCommit(txn_id, std::move(done));
      return;
    }
    Aftermath after;
    {
      absl::MutexLock lock(&mu_);
      auto it = txns_.find(txn_id);
      if (it == txns_.end() || !it->second.committing) {
        if (done) done(absl::FailedPreconditionError(absl::StrCat("txn ", txn_id, " is not open")));
        return;
      }
      Txn& t = it->second;
      t.committing = false;
      Abort(t, TxnEvent::kPinRefused, "not_durable",
            absl::StrCat("its messages could not be made durable in the broker: ", s.message()),
            /*send_frame=*/true, /*release=*/true, &after);
    }
    RunSoon(std::move(after));
    if (done) done(absl::AbortedError(absl::StrCat("txn ", txn_id, " aborted: ", s.message())));
  });
}

void TxnCoordinator::AfterDurable(const broker::ConsumerGroup& group,
                                  absl::Span<const broker::DeliveryToken> handles,
                                  absl::AnyInvocable<void(absl::Status)> task) {
  std::vector<broker::MessagePosition> positions;
  positions.reserve(handles.size());
  for (const broker::DeliveryToken& h : handles) positions.push_back({h.partition, h.offset});
  // The answer is inline when it comes on this thread before WhenDurable
  // returns; else from a log's sync, which must not run the task itself.
  struct Call {
    std::thread::id caller = std::this_thread::get_id();
    std::atomic<bool> returned{false};
  };
  auto call = std::make_shared<Call>();
  group.WhenDurable(
      positions, [call, life = life_, task = std::move(task)](absl::Status s) mutable {
        if (!call->returned.load(std::memory_order_acquire) &&
            std::this_thread::get_id() == call->caller) {
          task(std::move(s));
          return;
        }
        TxnCoordinator* engine;
        {
          absl::MutexLock lock(&life->mu);
          engine = life->engine;
          if (engine == nullptr) return;
          ++life->running;
        }
        bool shut_down;
        {
          absl::MutexLock lock(&engine->mu_);
          shut_down = engine->shutdown_;
        }
        if (!shut_down) {
          // The executor takes copyable functions.
          auto shared = std::make_shared<absl::AnyInvocable<void(absl::Status)>>(std::move(task));
          engine->executor_([shared, s = std::move(s)] { (*shared)(s); });
        }
        absl::MutexLock lock(&life->mu);
        --life->running;
      });
  call->returned.store(true, std::memory_order_release);
}

void TxnCoordinator::PinAndWriteCommit(const std::string& txn_id,
                                       std::function<void(absl::Status)> done) {
  std::shared_ptr<broker::ConsumerGroup> group;
  std::vector<broker::DeliveryToken> handles;
  TxnRecord record;
  bool pinned = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(txn_id);
    if (it == txns_.end() || !it->second.committing) {
      if (done) done(absl::FailedPreconditionError(absl::StrCat("txn ", txn_id, " is not open")));
      return;
    }
    group = it->second.group;
    handles = it->second.handles;
    record = it->second.record;
    pinned = it->second.pinned;
  }
  // Rule 1 of the model: the leases must still be T's when the decision
  // is written. Pinned, they can no longer expire or be released; a
  // refusal means one expired (and may be someone else's now): abort.
  if (!pinned && group != nullptr && !handles.empty()) {
    absl::StatusOr<broker::AckResult> r = group->PinHandles(handles);
    if (!r.ok() || !r->refused.empty()) {
      const absl::Status why = r.ok() ? r->ToStatus() : r.status();
      Aftermath after;
      {
        absl::MutexLock lock(&mu_);
        Txn& t = txns_.at(txn_id);
        t.committing = false;
        if (r.ok() && r->applied > 0) {
          // Pin is per token: the pinned ones can only be acked now. They
          // stay held until onced restarts (leases do not survive it),
          // then they are delivered again (no COMMIT record).
          spdlog::warn("txn {}: {} lease(s) stay pinned after a partial pin refusal: {}", txn_id,
                       r->applied, why.ToString());
        }
        Abort(t, TxnEvent::kPinRefused, "pin_refused",
              absl::StrCat("the leases could not be pinned at the commit point: ", why.message()),
              /*send_frame=*/true, /*release=*/!r.ok() || r->applied == 0, &after);
      }
      RunSoon(std::move(after));
      if (done) done(absl::AbortedError(absl::StrCat("txn ", txn_id, " aborted: ", why.message())));
      return;
    }
    absl::MutexLock lock(&mu_);
    txns_.at(txn_id).pinned = true;
  }
  record.state = TxnState::kCommitted;
  record.decided_ms = 0;
  store_->SubmitCommit(std::move(record), [this, txn_id, done](absl::Status s) {
    OnCommitWritten(txn_id, std::move(s), done);
  });
}

void TxnCoordinator::OnCommitWritten(const std::string& txn_id, absl::Status status,
                                     const std::function<void(absl::Status)>& done) {
  Aftermath after;
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(txn_id);
    if (it == txns_.end()) return;  // cannot happen: committing txns are never erased
    Txn& t = it->second;
    if (!status.ok() && !absl::IsAlreadyExists(status)) {
      // Not durable: the decision stays commit-bound (the leases are
      // pinned) and is written again on the timer.
      spdlog::error("txn {}: writing the COMMIT record: {}; retrying in {} ms", txn_id,
                    status.ToString(), options_.commit_write_retry_ms);
      t.commit_retry_at_ms = clock_->NowMs() + options_.commit_write_retry_ms;
    } else {
      if (!Apply(t, t.commit_event)) return;
      t.committing = false;
      t.commit_retry_at_ms = 0;
      if (metrics_ != nullptr) {
        metrics_->CountCommitted();
        metrics_->ObserveCommit(SecondsSince(t.voted));
      }
      t.backoff_ms = options_.commit_retry_initial_ms;
      SendCommitLocked(t, &after);
      status = absl::OkStatus();
    }
  }
  Run(std::move(after));
  if (done) done(status);
}

void TxnCoordinator::SendCommitLocked(Txn& txn, Aftermath* after) {
  Connection* c = CurrentLocked(txn.key);
  if (c != nullptr && c->welcomed) {
    c->channel->Send(protocol::Commit{txn.record.txn, epoch_, c->generation});
    ++txn.record.attempts;
    after->attempts.push_back(txn.record.txn);
  }
  txn.next_send_ms = clock_->NowMs() + txn.backoff_ms;
  txn.backoff_ms = std::min(txn.backoff_ms * 2, options_.commit_retry_max_ms);
}

void TxnCoordinator::OnDone(ParticipantChannel* channel, const protocol::Done& done) {
  std::shared_ptr<broker::ConsumerGroup> group;
  std::vector<broker::DeliveryToken> handles;
  TxnRecord record;
  Aftermath freed;
  {
    absl::MutexLock lock(&mu_);
    Connection* c = CheckFrameLocked(channel, done.epoch, done.generation);
    if (c == nullptr) return;
    auto it = txns_.find(done.txn);
    if (it == txns_.end()) return;  // done already (a duplicate DONE) or never committed
    Txn& t = it->second;
    if (!OwnedByLocked(t, channel)) return;
    if (t.record.state != TxnState::kCommitted) {
      channel->Send(ErrorFrame("not_committed",
                               absl::StrCat("done for txn ", done.txn, " in state ",
                                            std::string(TxnStateName(t.record.state)),
                                            ": only a committed transaction can be done"),
                               409));
      return;
    }
    if (t.finishing) return;  // a duplicate DONE while the first is applied
    t.finishing = true;
    // The participant is done with it: its window slot is free now, so the
    // next PREPARE overlaps the broker delete and the DONE record below
    // (the coordinator's own bookkeeping, re-driven by COMMIT if they fail).
    ReleaseInflightLocked(t, &freed);
    group = t.group;
    handles = t.handles;
    record = t.record;
  }
  Run(std::move(freed));
  QueueFinish({done.txn, std::move(group), std::move(handles), std::move(record)});
}

void TxnCoordinator::QueueFinish(PendingFinish p) {
  if (options_.finish_delay_ms == 0) {
    executor_([this, p = std::move(p)]() mutable {
      FinishDone(p.txn, std::move(p.group), std::move(p.handles), std::move(p.record));
    });
    return;
  }
  {
    absl::MutexLock lock(&finish_mu_);
    finish_queue_.push_back(std::move(p));
    if (finish_scheduled_) return;
    finish_scheduled_ = true;
  }
  // Outside finish_mu_: an executor may run the work inline.
  executor_([this] {
    absl::SleepFor(absl::Milliseconds(options_.finish_delay_ms));
    FinishQueued();
  });
}

void TxnCoordinator::FinishQueued() {
  std::vector<PendingFinish> queued;
  {
    absl::MutexLock lock(&finish_mu_);
    queued.swap(finish_queue_);
    finish_scheduled_ = false;
  }
  // One AckHandles per group for every batch of it that still holds its
  // leases: one group-store write. Refused handles (a lease that changed
  // hands cannot, being pinned; a group reset can) leave each batch to
  // FinishDone's own delete, by handles, then by position (idempotent).
  absl::flat_hash_map<broker::ConsumerGroup*, std::vector<PendingFinish*>> by_group;
  for (PendingFinish& p : queued) {
    if (p.group != nullptr && !p.handles.empty() && !p.record.broker_deleted) {
      by_group[p.group.get()].push_back(&p);
    }
  }
  for (auto& [group, batches] : by_group) {
    std::vector<broker::DeliveryToken> handles;
    for (const PendingFinish* p : batches) {
      handles.insert(handles.end(), p->handles.begin(), p->handles.end());
    }
    absl::StatusOr<broker::AckResult> r = group->AckHandles(handles);
    if (r.ok() && r->refused.empty()) {
      for (PendingFinish* p : batches) p->record.broker_deleted = true;
    }
  }
  for (PendingFinish& p : queued) {
    FinishDone(p.txn, std::move(p.group), std::move(p.handles), std::move(p.record));
  }
}

void TxnCoordinator::FinishDone(const std::string& txn_id,
                                std::shared_ptr<broker::ConsumerGroup> group,
                                std::vector<broker::DeliveryToken> handles, TxnRecord record) {
  // Delete B in the broker (DESIGN.md §2: before T is done). The leases
  // died with a restart for a recovered txn: by position then.
  absl::Status deleted = absl::OkStatus();
  if (!record.broker_deleted) {
    if (group == nullptr) {
      absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> g =
          groups_(record.topic, record.group);
      if (g.ok()) group = *g;
      if (!g.ok() && !absl::IsNotFound(g.status())) deleted = g.status();
    }
    if (deleted.ok() && group != nullptr) {
      bool by_position = handles.empty();
      if (!by_position) {
        absl::StatusOr<broker::AckResult> r = group->AckHandles(handles);
        by_position = !r.ok() || !r->refused.empty();
      }
      if (by_position) {
        std::vector<broker::MessagePosition> positions;
        for (const TxnMessageRef& m : record.messages) {
          positions.push_back({static_cast<int>(m.partition), static_cast<int64_t>(m.offset)});
        }
        deleted = group->AckPositions(positions);
        if (absl::IsNotFound(deleted)) deleted = absl::OkStatus();  // the group is gone
      }
    }
  }
  if (!deleted.ok()) {
    spdlog::warn("txn {}: deleting its batch in the broker: {}; COMMIT will be re-sent", txn_id,
                 deleted.ToString());
    absl::MutexLock lock(&mu_);
    if (auto it = txns_.find(txn_id); it != txns_.end()) it->second.finishing = false;
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (auto it = txns_.find(txn_id); it != txns_.end()) it->second.record.broker_deleted = true;
  }
  store_->SubmitDone(txn_id, [this, txn_id](absl::Status s) {
    Aftermath after;
    {
      absl::MutexLock lock(&mu_);
      auto it = txns_.find(txn_id);
      if (it == txns_.end()) return;
      Txn& t = it->second;
      if (!s.ok() && !absl::IsNotFound(s)) {
        spdlog::error("txn {}: recording done: {}; COMMIT will be re-sent", txn_id, s.ToString());
        t.finishing = false;
        return;
      }
      if (!Apply(t, TxnEvent::kDone)) return;
      if (metrics_ != nullptr) metrics_->CountDone();
      ReleaseInflightLocked(t, &after);
      EraseLocked(txn_id);
    }
    Run(std::move(after));
  });
}

}  // namespace once::coordinator
