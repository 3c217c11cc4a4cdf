// The operators' view of the 2PC engine and their forced outcomes. See
// txn_coordinator.h.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/txn_coordinator.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

// A forced commit waits this long at most for its COMMIT record.
constexpr absl::Duration kForceCommitWait = absl::Seconds(30);

absl::Status NoOpenTxn(absl::string_view txn) {
  return absl::NotFoundError(absl::StrCat(
      "no transaction ", txn,
      ": not open and no record of it (aborted transactions are not kept: presumed abort; done "
      "records are removed after a while)"));
}

}  // namespace

absl::StatusOr<TxnView> TxnCoordinator::Get(absl::string_view txn) {
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(txn);
    if (it != txns_.end()) {
      TxnView v;
      v.record = it->second.record;
      v.committing = it->second.committing;
      const Connection* c = CurrentLocked(it->second.key);
      v.participant_connected = c != nullptr;
      return v;
    }
  }
  absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(std::string(txn));
  if (!r.ok()) return r.status();
  if (!r->has_value()) return NoOpenTxn(txn);
  TxnView v;
  v.record = **std::move(r);
  return v;
}

absl::StatusOr<std::vector<TxnView>> TxnCoordinator::List(std::optional<TxnState> state,
                                                          size_t limit) {
  std::vector<TxnView> views;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, t] : txns_) {
      if (state.has_value() && t.record.state != *state) continue;
      TxnView v;
      v.record = t.record;
      v.committing = t.committing;
      v.participant_connected = CurrentLocked(t.key) != nullptr;
      views.push_back(std::move(v));
    }
  }
  if (!state.has_value() || *state == TxnState::kDone) {
    absl::StatusOr<std::vector<TxnRecord>> done = store_->List(TxnState::kDone, limit);
    if (!done.ok()) return done.status();
    for (TxnRecord& r : *done) {
      TxnView v;
      v.record = std::move(r);
      views.push_back(std::move(v));
    }
  }
  std::sort(views.begin(), views.end(), [](const TxnView& a, const TxnView& b) {
    return std::tie(a.record.created_ms, a.record.txn) <
           std::tie(b.record.created_ms, b.record.txn);
  });
  if (limit > 0 && views.size() > limit) views.resize(limit);
  return views;
}

absl::Status TxnCoordinator::ForceCommit(absl::string_view txn, absl::string_view reason,
                                         absl::string_view actor) {
  const std::string id(txn);
  bool open = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(id);
    if (it != txns_.end()) {
      open = true;
      Txn& t = it->second;
      switch (t.record.state) {
        case TxnState::kPreparing:
          return absl::FailedPreconditionError(absl::StrCat(
              "transaction ", id,
              " is preparing: its participant has not voted yes (nothing is prepared), so it "
              "cannot be committed; abort it instead"));
        case TxnState::kCommitted:
          return absl::FailedPreconditionError(absl::StrCat(
              "transaction ", id,
              " is committed already; COMMIT is re-sent to its participant until DONE"));
        case TxnState::kVotedYes:
          if (t.commit_retry_at_ms == 0) {
            return absl::FailedPreconditionError(
                absl::StrCat("transaction ", id,
                             " is being committed right now (its COMMIT record is being "
                             "written); look again in a moment"));
          }
          // Its COMMIT record failed to be written and waits for a retry:
          // the operator's commit is that retry, now.
          t.commit_retry_at_ms = 0;
          t.commit_event = TxnEvent::kForceCommit;
          t.record.reason = std::string(reason);
          break;
        default:
          return absl::FailedPreconditionError(
              absl::StrCat("transaction ", id, " is ", std::string(TxnStateName(t.record.state))));
      }
    }
  }
  if (!open) {
    absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(id);
    if (!r.ok()) return r.status();
    if (!r->has_value()) return NoOpenTxn(id);
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", id, " is ", std::string(TxnStateName((*r)->state)), " already"));
  }
  absl::Notification written;
  absl::Status result;
  DecideCommit(id, [&written, &result](absl::Status s) {
    result = std::move(s);
    written.Notify();
  });
  if (!written.WaitForNotificationWithTimeout(kForceCommitWait)) {
    return absl::DeadlineExceededError(
        absl::StrCat("transaction ", id, ": the COMMIT record was not written within 30 s"));
  }
  if (!result.ok()) return result;
  if (absl::Status s = store_->Audit(id, "force_commit", std::string(reason), std::string(actor));
      !s.ok()) {
    return absl::InternalError(absl::StrCat(
        "transaction ", id, " was committed, but its audit record failed: ", s.message()));
  }
  spdlog::warn("transaction {} committed by {}: {}", id, std::string(actor), std::string(reason));
  return absl::OkStatus();
}

absl::Status TxnCoordinator::ForceAbort(absl::string_view txn, absl::string_view reason,
                                        absl::string_view actor) {
  const std::string id(txn);
  Aftermath after;
  bool open = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = txns_.find(id);
    if (it != txns_.end()) {
      open = true;
      Txn& t = it->second;
      if (t.record.state == TxnState::kCommitted) {
        return absl::FailedPreconditionError(absl::StrCat(
            "transaction ", id,
            " is committed: its COMMIT record is durable (the commit point), so it can no longer "
            "be aborted"));
      }
      if (t.committing) {
        return absl::FailedPreconditionError(absl::StrCat(
            "transaction ", id,
            " is at its commit point (its leases are pinned and its COMMIT record is being "
            "written), so it can no longer be aborted"));
      }
      Abort(t, TxnEvent::kForceAbort, "forced", absl::StrCat("aborted by an operator: ", reason),
            /*send_frame=*/true,
            /*release=*/true, &after);
    }
  }
  if (!open) {
    absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(id);
    if (!r.ok()) return r.status();
    if (!r->has_value()) return NoOpenTxn(id);
    return absl::FailedPreconditionError(
        absl::StrCat("transaction ", id, " is ", std::string(TxnStateName((*r)->state)),
                     ": past the commit point, it can no longer be aborted"));
  }
  Run(std::move(after));
  if (absl::Status s = store_->Audit(id, "force_abort", std::string(reason), std::string(actor));
      !s.ok()) {
    return absl::InternalError(absl::StrCat(
        "transaction ", id, " was aborted, but its audit record failed: ", s.message()));
  }
  spdlog::warn("transaction {} aborted by {}: {}", id, std::string(actor), std::string(reason));
  return absl::OkStatus();
}

TxnGauges TxnCoordinator::Gauges() const {
  TxnGauges g;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, t] : txns_) {
    switch (t.record.state) {
      case TxnState::kPreparing:
        ++g.preparing;
        break;
      case TxnState::kVotedYes:
        ++g.voted_yes;
        ++g.in_doubt;
        break;
      case TxnState::kCommitted:
        ++g.committed;
        ++g.in_doubt;
        break;
      default:
        break;
    }
  }
  return g;
}

}  // namespace once::coordinator
