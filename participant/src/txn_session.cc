#include "participant/src/txn_session.h"

#include <utility>
#include <variant>

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
  ONCE_ASSIGN_OR_RETURN(std::vector<std::string> in_doubt, env_.resource->Recover());
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

absl::Status TxnSession::OnFrame(absl::string_view data, bool text) {
  if (!text) return Violation(absl::StrCat("binary frame of ", data.size(), " bytes"));
  absl::StatusOr<protocol::Frame> frame =
      protocol::Decode(std::string_view(data.data(), data.size()));
  if (!frame.ok()) return Violation(frame.status().message());
  if (state_ == State::kIdle) return Violation("frame before hello was sent");
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
      *frame);
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
  std::set<std::string> in_txn;
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
  Hook("vote:sent");
  return absl::OkStatus();
}

void TxnSession::SendVote(const std::string& txn, bool yes, std::string reason) {
  protocol::Vote vote;
  vote.txn = txn;
  vote.epoch = epoch_;
  vote.generation = generation_;
  vote.yes = yes;
  vote.reason = std::move(reason);
  env_.stats->Update([yes](ParticipantStats& s) { ++(yes ? s.votes_yes : s.votes_no); });
  env_.send(protocol::Encode(vote));
}

absl::Status TxnSession::DoCommit(const std::string& txn) {
  absl::StatusOr<CommitResult> result = env_.resource->Commit(txn);
  if (absl::IsNotFound(result.status())) {
    return Violation(
        absl::StrCat("commit of txn ", txn, ", which this participant never prepared"));
  }
  ONCE_RETURN_IF_ERROR(result.status());
  env_.stats->Update([&result](ParticipantStats& s) {
    ++(result->already_committed ? s.duplicate_commits : s.commits);
    s.messages_applied += result->applied;
    s.messages_skipped += result->skipped;
  });
  reask_.erase(txn);
  protocol::Done done;
  done.txn = txn;
  done.epoch = epoch_;
  done.generation = generation_;
  env_.send(protocol::Encode(done));
  return absl::OkStatus();
}

absl::Status TxnSession::DoAbort(const std::string& txn) {
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, env_.resource->Status(txn));
  if (status == TxnStatus::kCommitted) {
    return Violation(absl::StrCat("abort of txn ", txn, ", which is committed here"));
  }
  if (status == TxnStatus::kAbsent) return absl::OkStatus();  // voted NO: nothing journaled
  ONCE_RETURN_IF_ERROR(env_.resource->Abort(txn));
  reask_.erase(txn);
  env_.stats->Update([](ParticipantStats& s) { ++s.aborts; });
  return absl::OkStatus();
}

absl::Status TxnSession::OnTimer() {
  if (state_ != State::kOpen) return absl::OkStatus();
  // Re-ask (model rule 5) the transactions that were already in doubt at
  // the previous tick: a fresh one is most likely still being decided.
  ONCE_ASSIGN_OR_RETURN(const std::vector<std::string> in_doubt, env_.resource->Recover());
  std::set<std::string> now(in_doubt.begin(), in_doubt.end());
  for (const std::string& txn : now) {
    if (reask_.contains(txn)) SendVote(txn, true, "");
  }
  reask_ = std::move(now);
  return absl::OkStatus();
}

}  // namespace once::participant
