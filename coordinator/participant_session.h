// ParticipantSession: the participant side of one /v1/ws connection, the
// glue between the WebSocket session (coordinator/websocket_session.cc)
// and the 2PC engine (coordinator/txn_coordinator.h). The session hands it
// every "hello", "vote" and "done" text frame; it decodes them with the
// wire codec (schema/txn_protocol.h) and calls the engine. It implements
// ParticipantChannel for the engine over the session's write queue (one
// write in flight; the number of frames the engine queues is bounded by
// the participant's window).
//
// Ordering: one connection's frames are handled one at a time, in arrival
// order, ending with the disconnect: a vote can never overtake its hello,
// nor a hello the connection's end. Where: a hello may wait for the store
// (in-doubt lookups, a commit being written), so it runs on the worker
// pool, and the disconnect too (it releases leases); the engine never
// waits for I/O on a vote or a done (TxnCoordinator::OnVote), so they run
// at once on the caller's thread (the network thread) when no earlier
// frame of the connection is still queued. That spares a hand-off to a
// worker on the way from a vote to its COMMIT record and from a DONE to
// the PREPARE that its freed slot lets out.
//
// Thread-safe. Knows nothing of Beast: the session passes its hooks, so
// that the glue is testable without a network.
#ifndef ONCE_COORDINATOR_PARTICIPANT_SESSION_H_
#define ONCE_COORDINATOR_PARTICIPANT_SESSION_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/participant_channel.h"
#include "coordinator/txn_coordinator.h"
#include "schema/txn_protocol.h"

namespace once::coordinator {

class ParticipantSession : public ParticipantChannel,
                           public std::enable_shared_from_this<ParticipantSession> {
 public:
  struct Hooks {
    // Queues one text frame on the connection (thread-safe, non-blocking).
    std::function<void(std::string text)> send;
    // Queues one text frame, then closes the connection.
    std::function<void(std::string text)> close;
    // Runs blocking work on the worker pool.
    std::function<void(std::function<void()> work)> run;
  };

  // `engine` outlives the session (null: every frame is answered
  // "not_ready").
  ParticipantSession(TxnCoordinator* engine, Hooks hooks);

  // A text frame whose "type" is hello, vote or done.
  void HandleFrame(std::string text);
  // The connection is over: the engine is told (after the frames already
  // received) and later Sends are dropped.
  void Disconnected();

  // ParticipantChannel.
  void Send(protocol::Frame frame) override;
  void Close(absl::string_view code, absl::string_view message) override;

 private:
  // Runs `task` after every task queued before it, on the worker pool.
  void Enqueue(std::function<void()> task);
  // Runs `task` now, on this thread, if no task is queued or running;
  // false (nothing run) otherwise.
  bool RunNowIfIdle(absl::FunctionRef<void()> task);
  void Drain();
  // Runs one task; an exception becomes an "internal" error frame.
  void RunGuarded(absl::FunctionRef<void()> task);
  void Handle(const absl::StatusOr<protocol::Frame>& frame);
  void SendError(absl::string_view code, absl::string_view message, int status);

  TxnCoordinator* const engine_;
  const Hooks hooks_;

  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_PARTICIPANT_SESSION_H_
