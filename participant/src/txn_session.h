// The exactly-once participant session (DESIGN.md §2, schema/txn_protocol.h):
//
//   start ──hello(in_doubt)──> kHelloSent ──welcome──> kOpen
//                                                       │ prepare -> stage, journal, vote
//                                                       │ commit  -> apply once, done
//                                                       │ abort   -> discard
//   any violation (bad JSON, binary frame, unknown or unexpected type,
//   prepare/commit/abort before welcome, a second welcome, a resolution or
//   commit for a transaction this participant never prepared, a frame of
//   another epoch or generation, an abort of a committed transaction, an
//   error frame) -> the call returns an error and the session ends.
//
// Crash reasoning: a YES vote is sent only after the journal write is
// durable; DONE only after the local commit is durable. Everything else is
// recomputed at reconnect from the journal (in-doubt ids in hello).
//
// Group commit (SessionEnv::group_commit): the first call of a burst that
// reaches the resource (prepare, commit, abort, a welcome's resolutions)
// opens a group (Resource::BeginGroup); from then on every outgoing frame
// (votes, DONEs, re-asks) is held back, pending() is true, and Flush()
// ends the group (EndGroup: one local transaction, one fsync for the
// burst) and only then sends the held frames, in order. The rules above
// still hold: nothing held is sent before EndGroup returned OK; if it
// fails, the held frames are dropped and the session ends. A session that
// fails, or is destroyed, with a group open abandons it (AbortGroup): none
// of its frames was sent. The group is bounded without a cap of its own:
// the coordinator sends at most `window` prepares, and commits only for
// votes it received, so a burst stops growing until we flush.
//
// After any error the session is over: every later call returns it.
#ifndef ONCE_PARTICIPANT_SRC_TXN_SESSION_H_
#define ONCE_PARTICIPANT_SRC_TXN_SESSION_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "participant/src/session.h"
#include "schema/txn_protocol.h"

namespace once::participant {

class TxnSession final : public Session {
 public:
  explicit TxnSession(SessionEnv env) : env_(std::move(env)) {}
  ~TxnSession() override;

  absl::Status Start() override;
  absl::Status OnFrame(absl::string_view data, bool text) override;
  absl::Status OnDecoded(absl::StatusOr<protocol::Frame> frame) override;
  absl::Status OnTimer() override;
  absl::Status Flush() override;
  bool pending() const override { return group_open_; }
  bool open() const override { return state_ == State::kOpen; }

 private:
  enum class State { kIdle, kHelloSent, kOpen };

  absl::Status Dispatch(const protocol::Frame& frame);
  // Remembers the first error (the session is over) and abandons an open
  // group. Returns `status`.
  absl::Status Fail(absl::Status status);
  // Opens the burst's group, with group commit, before the resource is
  // changed; nothing when one is open.
  absl::Status EnterGroup();
  // Ends an open group keeping nothing; its held frames are dropped.
  void AbandonGroup();
  // Sends `frame`, or holds it back while a group is open.
  void Emit(std::string frame);
  // Counts into the stats now, or once the group is durable and sent.
  void Count(std::function<void(ParticipantStats&)> fn);

  absl::Status OnWelcome(const protocol::Welcome& welcome);
  absl::Status OnPrepare(const protocol::Prepare& prepare);
  absl::Status DoCommit(const std::string& txn);
  absl::Status DoAbort(const std::string& txn);
  template <typename F>
  absl::Status CheckFence(const F& frame, absl::string_view type);
  void SendVote(const std::string& txn, bool yes, std::string reason);
  void Hook(absl::string_view point) const {
    if (env_.test_hook) env_.test_hook(point);
  }

  SessionEnv env_;
  State state_ = State::kIdle;
  uint64_t epoch_ = 0;
  uint64_t generation_ = 0;
  std::set<std::string> hello_in_doubt_;  // the ids our hello listed
  std::set<std::string> reask_;           // in doubt at the previous timer tick
  absl::Status failed_;                   // the error that ended the session

  // Group commit: the open group's held frames and counts, in order.
  bool group_open_ = false;
  std::vector<std::string> held_;
  std::vector<std::function<void(ParticipantStats&)>> held_counts_;
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_TXN_SESSION_H_
