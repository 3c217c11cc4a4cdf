// A session: one WebSocket connection's worth of the participant protocol,
// as a state machine fed with frames. It does no I/O of its own: outgoing
// frames go to SessionEnv::send, and the owner (participant.cc) closes the
// connection and reconnects when a call returns an error. This keeps the
// protocol logic testable without a network (the crash tests drive it
// directly).
//
// Not thread-safe: the owner calls one session from one thread.
#ifndef ONCE_PARTICIPANT_SRC_SESSION_H_
#define ONCE_PARTICIPANT_SRC_SESSION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "once/participant.h"
#include "once/resource.h"
#include "schema/txn_protocol.h"

namespace once::participant {

// Counters shared by the sessions of one Participant; thread-safe.
class StatsBox {
 public:
  void Update(const std::function<void(ParticipantStats&)>& fn) {
    absl::MutexLock lock(&mu_);
    fn(stats_);
  }
  ParticipantStats Get() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  mutable absl::Mutex mu_;
  ParticipantStats stats_ ABSL_GUARDED_BY(mu_);
};

struct SessionEnv {
  const ParticipantOptions* options = nullptr;
  Resource* resource = nullptr;
  const Handler* handler = nullptr;
  StatsBox* stats = nullptr;
  // Queues one text frame for the peer.
  std::function<void(std::string frame)> send;
  // Exactly-once: the frames of one burst share one local transaction of
  // the resource (Resource::BeginGroup/EndGroup), and their votes and DONEs
  // are held back until Flush() made it durable. Off: every call is
  // durable on its own and its frame goes out at once. Participant sets it
  // from ParticipantOptions::group_commit.
  bool group_commit = false;
  // Crash points for tests: "prepare:staged" (handler ran, nothing
  // journaled yet), "vote:sent" (YES vote handed to `send`; without group
  // commit), and with group commit "vote:held" (YES vote held back, its
  // prepare not durable), "flush:durable" (EndGroup returned OK, nothing
  // sent yet) and "flush:sent" (the held frames handed to `send`).
  std::function<void(absl::string_view point)> test_hook;
};

class Session {
 public:
  virtual ~Session() = default;
  // Sends the opening frame (hello or subscribe).
  virtual absl::Status Start() = 0;
  // One frame from the peer. An error ends the session: the owner closes
  // the connection (nothing was applied for the offending frame).
  virtual absl::Status OnFrame(absl::string_view data, bool text) = 0;
  // A text frame that was decoded (protocol::Decode) before it reached the
  // session's thread: the Participant decodes exactly-once frames on its
  // network thread, so that the thread applying one frame is not also the
  // one parsing the next. Same as OnFrame(that text, true). Only for the
  // modes TakesDecodedFrames names; the others refuse it.
  virtual absl::Status OnDecoded(absl::StatusOr<protocol::Frame> frame);
  // Periodic work (exactly-once: re-ask in-doubt transactions).
  virtual absl::Status OnTimer() = 0;
  // Sends what the session holds back to batch it (streaming: acks;
  // exactly-once with group commit: makes the burst's group durable, then
  // sends its votes and DONEs). The owner calls it once the frames that had
  // already arrived are handled (the end of a burst), and before closing.
  // An error ends the session (the owner closes the connection): nothing
  // held was sent.
  virtual absl::Status Flush() { return absl::OkStatus(); }
  // True while Flush has something to send.
  virtual bool pending() const { return false; }
  // True once the peer accepted the session (welcome or subscribed).
  virtual bool open() const = 0;
};

// The session for options.mode.
std::unique_ptr<Session> MakeSession(SessionEnv env);
// Whether the session for `mode` takes its text frames decoded (OnDecoded).
bool TakesDecodedFrames(Mode mode);

// Runs the handler, turning an exception into an error naming it.
absl::Status RunHandler(const Handler& handler, const Message& message, Staging& staging);

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_SESSION_H_
