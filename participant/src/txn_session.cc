#include "participant/src/txn_session.h"

#include <utility>
#include <variant>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Violation(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("protocol violation: ", what));
}

Message ToMessage(const protocol::TxnMessage& m) {
  Message out;
  out.id = m.id;
  out.partition = m.partition;
  out.offset = m.offset;
  out.key = m.key;
  out.headers = m.headers;
  out.value = m.value;
  out.binary = m.binary;
  out.delivery_count = m.delivery_count;
  out.timestamp_ms = m.timestamp_ms;
  return out;
}

}  // namespace

absl::Status TxnSession::Start() {
  if (!failed_.ok()) return failed_;
  absl::StatusOr<std::vector<std::string>> recovered = env_.resource->Recover();
  if (!recovered.ok()) return Fail(recovered.status());
  std::vector<std::string> in_doubt = *std::move(recovered);
  hello_in_doubt_ = std::set<std::string>(in_doubt.begin(), in_doubt.end());
  const ParticipantOptions& o = *env_.options;
  protocol::Hello hello;
  hello.participant = o.participant_id;
  hello.topic = o.topic;
  hello.group = o.group;
  hello.in_doubt = std::move(in_doubt);
  hello.window = o.window;
  env_.send(protocol::Encode(hello));
  state_ = State::kHelloSent;
  return absl::OkStatus();
}

TxnSession::~TxnSession() { AbandonGroup(); }

absl::Status TxnSession::Fail(absl::Status status) {
  if (status.ok()) return status;
  if (failed_.ok()) failed_ = status;
  AbandonGroup();
  return status;
}

absl::Status TxnSession::EnterGroup() {
  if (!env_.group_commit || group_open_) return absl::OkStatus();
  ONCE_RETURN_IF_ERROR(env_.resource->BeginGroup());
  group_open_ = true;
  return absl::OkStatus();
}

void TxnSession::AbandonGroup() {
  if (!group_open_) return;
  group_open_ = false;
  held_.clear();
  held_counts_.clear();
  env_.resource->AbortGroup();
}

void TxnSession::Emit(std::string frame) {
  if (group_open_) {
    held_.push_back(std::move(frame));
  } else {
    env_.send(std::move(frame));
  }
}

void TxnSession::Count(std::function<void(ParticipantStats&)> fn) {
  if (group_open_) {
    held_counts_.push_back(std::move(fn));
  } else {
    env_.stats->Update(fn);
  }
}

absl::Status TxnSession::Flush() {
  if (!failed_.ok()) return failed_;
  if (!group_open_) return absl::OkStatus();
  group_open_ = false;
  std::vector<std::string> frames = std::exchange(held_, {});
  std::vector<std::function<void(ParticipantStats&)>> counts = std::exchange(held_counts_, {});
  const absl::Status ended = env_.resource->EndGroup();
  if (!ended.ok()) {
    // Nothing of the group is kept: its votes and DONEs must not go out.
    return Fail(
        absl::Status(ended.code(), absl::StrCat("group commit failed, ", frames.size(),
                                                " held frames dropped: ", ended.message())));
  }
  Hook("flush:durable");
  env_.stats->Update([&counts](ParticipantStats& s) {
    for (const auto& count : counts) count(s);
  });
  for (std::string& frame : frames) env_.send(std::move(frame));
  Hook("flush:sent");
  return absl::OkStatus();
}

absl::Status TxnSession::OnFrame(absl::string_view data, bool text) {
  if (!failed_.ok()) return failed_;
  if (!text) return Fail(Violation(absl::StrCat("binary frame of ", data.size(), " bytes")));
  return OnDecoded(protocol::Decode(std::string_view(data.data(), data.size())));
}

absl::Status TxnSession::OnDecoded(absl::StatusOr<protocol::Frame> frame) {
  if (!failed_.ok()) return failed_;
  if (!frame.ok()) return Fail(Violation(frame.status().message()));
  if (state_ == State::kIdle) return Fail(Violation("frame before hello was sent"));
  return Fail(Dispatch(*frame));
}

absl::Status TxnSession::Dispatch(const protocol::Frame& frame) {
  return std::visit(
      [this](const auto& f) -> absl::Status {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, protocol::Welcome>) {
          return OnWelcome(f);
        } else if constexpr (std::is_same_v<T, protocol::Prepare>) {
          ONCE_RETURN_IF_ERROR(CheckFence(f, "prepare"));
          return OnPrepare(f);
        } else if constexpr (std::is_same_v<T, protocol::Commit>) {
          ONCE_RETURN_IF_ERROR(CheckFence(f, "commit"));
          return DoCommit(f.txn);
        } else if constexpr (std::is_same_v<T, protocol::Abort>) {
          ONCE_RETURN_IF_ERROR(CheckFence(f, "abort"));
          return DoAbort(f.txn);
        } else if constexpr (std::is_same_v<T, protocol::Error>) {
          return absl::UnavailableError(
              absl::StrCat("coordinator error ", f.code, ": ", f.message));
        } else {
          return Violation(absl::StrCat("unexpected \"", A(protocol::TypeName(protocol::Frame(f))),
                                        "\" frame from the coordinator"));
        }
      },
      frame);
}

template <typename F>
absl::Status TxnSession::CheckFence(const F& frame, absl::string_view type) {
  if (state_ != State::kOpen) return Violation(absl::StrCat(type, " before welcome"));
  if (frame.epoch != epoch_ || frame.generation != generation_) {
    // Fencing (model rule 6): never act on a frame of another coordinator
    // epoch or connection generation. On one connection it can only come
    // from a confused peer, so the session ends too.
    env_.stats->Update([](ParticipantStats& s) { ++s.frames_dropped; });
    return Violation(absl::StrCat(type, " ", frame.txn, " of epoch ", frame.epoch, " generation ",
                                  frame.generation, " dropped: the session is ", epoch_, "/",
                                  generation_));
  }
  return absl::OkStatus();
}

absl::Status TxnSession::OnWelcome(const protocol::Welcome& welcome) {
  if (state_ != State::kHelloSent) return Violation("a second welcome");
  epoch_ = welcome.epoch;
  generation_ = welcome.generation;
  state_ = State::kOpen;
  env_.stats->Update([](ParticipantStats& s) { ++s.connects; });
  for (const protocol::Resolution& r : welcome.resolutions) {
    if (!hello_in_doubt_.contains(r.txn)) {
      return Violation(absl::StrCat("welcome resolves txn ", r.txn, ", which hello did not list"));
    }
  }
  for (const protocol::Resolution& r : welcome.resolutions) {
    if (r.outcome == protocol::Outcome::kCommit) {
      ONCE_RETURN_IF_ERROR(DoCommit(r.txn));
    } else {
      ONCE_RETURN_IF_ERROR(DoAbort(r.txn));
    }
  }
  return absl::OkStatus();
}

absl::Status TxnSession::OnPrepare(const protocol::Prepare& prepare) {
  ONCE_RETURN_IF_ERROR(EnterGroup());
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, env_.resource->Status(prepare.txn));
  if (status != TxnStatus::kAbsent) {
    // A re-sent PREPARE: our YES stands (journaled). If we committed it
    // already, the coordinator answers this vote with COMMIT -> DONE.
    SendVote(prepare.txn, true, "");
    return absl::OkStatus();
  }
  PreparedTxn txn;
  txn.txn = prepare.txn;
  txn.topic = env_.options->topic;
  txn.group = env_.options->group;
  txn.epoch = prepare.epoch;
  txn.generation = prepare.generation;
  // Views of prepare.messages' ids, which outlive the loop.
  absl::flat_hash_set<absl::string_view> in_txn;
  in_txn.reserve(prepare.messages.size());
  for (const protocol::TxnMessage& m : prepare.messages) {
    StagedMessage staged;
    staged.message_id = m.id;
    ONCE_ASSIGN_OR_RETURN(const bool committed, env_.resource->IsCommitted(m.id));
    if (committed || !in_txn.insert(m.id).second) {
      // Already applied (or listed twice): YES with nothing staged.
      staged.skipped = true;
    } else {
      Staging staging;
      absl::Status handled = RunHandler(*env_.handler, ToMessage(m), staging);
      if (!handled.ok()) {
        SendVote(prepare.txn, false,
                 absl::StrCat("handler failed on ", m.id, ": ", handled.ToString()));
        return absl::OkStatus();
      }
      staged.effects = staging.Release();
    }
    txn.messages.push_back(std::move(staged));
  }
  Hook("prepare:staged");
  absl::Status journaled = env_.resource->Prepare(txn);
  if (!journaled.ok()) {
    SendVote(prepare.txn, false, absl::StrCat("journal: ", journaled.ToString()));
    return absl::OkStatus();
  }
  SendVote(prepare.txn, true, "");
  Hook(group_open_ ? "vote:held" : "vote:sent");
  return absl::OkStatus();
}

void TxnSession::SendVote(const std::string& txn, bool yes, std::string reason) {
  protocol::Vote vote;
  vote.txn = txn;
  vote.epoch = epoch_;
  vote.generation = generation_;
  vote.yes = yes;
  vote.reason = std::move(reason);
  Count([yes](ParticipantStats& s) { ++(yes ? s.votes_yes : s.votes_no); });
  Emit(protocol::Encode(vote));
}

absl::Status TxnSession::DoCommit(const std::string& txn) {
  ONCE_RETURN_IF_ERROR(EnterGroup());
  absl::StatusOr<CommitResult> result = env_.resource->Commit(txn);
  if (absl::IsNotFound(result.status())) {
    return Violation(
        absl::StrCat("commit of txn ", txn, ", which this participant never prepared"));
  }
  ONCE_RETURN_IF_ERROR(result.status());
  Count([r = *result](ParticipantStats& s) {
    ++(r.already_committed ? s.duplicate_commits : s.commits);
    s.messages_applied += r.applied;
    s.messages_skipped += r.skipped;
  });
  reask_.erase(txn);
  protocol::Done done;
  done.txn = txn;
  done.epoch = epoch_;
  done.generation = generation_;
  Emit(protocol::Encode(done));
  return absl::OkStatus();
}

absl::Status TxnSession::DoAbort(const std::string& txn) {
  ONCE_RETURN_IF_ERROR(EnterGroup());
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, env_.resource->Status(txn));
  if (status == TxnStatus::kCommitted) {
    return Violation(absl::StrCat("abort of txn ", txn, ", which is committed here"));
  }
  if (status == TxnStatus::kAbsent) return absl::OkStatus();  // voted NO: nothing journaled
  ONCE_RETURN_IF_ERROR(env_.resource->Abort(txn));
  reask_.erase(txn);
  Count([](ParticipantStats& s) { ++s.aborts; });
  return absl::OkStatus();
}

absl::Status TxnSession::OnTimer() {
  if (!failed_.ok()) return failed_;
  if (state_ != State::kOpen) return absl::OkStatus();
  // Re-ask (model rule 5) the transactions that were already in doubt at
  // the previous tick: a fresh one is most likely still being decided.
  // Recover only reads and opens no group; inside an open group it sees the
  // group's prepares (not durable yet), so the re-asks are held with it.
  absl::StatusOr<std::vector<std::string>> recovered = env_.resource->Recover();
  if (!recovered.ok()) return Fail(recovered.status());
  const std::vector<std::string>& in_doubt = *recovered;
  std::set<std::string> now(in_doubt.begin(), in_doubt.end());
  for (const std::string& txn : now) {
    if (reask_.contains(txn)) SendVote(txn, true, "");
  }
  reask_ = std::move(now);
  return absl::OkStatus();
}

}  // namespace once::participant
