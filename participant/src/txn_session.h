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
#ifndef ONCE_PARTICIPANT_SRC_TXN_SESSION_H_
#define ONCE_PARTICIPANT_SRC_TXN_SESSION_H_

#include <cstdint>
#include <set>
#include <string>

#include "participant/src/session.h"
#include "schema/txn_protocol.h"

namespace once::participant {

class TxnSession final : public Session {
 public:
  explicit TxnSession(SessionEnv env) : env_(std::move(env)) {}

  absl::Status Start() override;
  absl::Status OnFrame(absl::string_view data, bool text) override;
  absl::Status OnTimer() override;
  bool open() const override { return state_ == State::kOpen; }

 private:
  enum class State { kIdle, kHelloSent, kOpen };

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
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_TXN_SESSION_H_
