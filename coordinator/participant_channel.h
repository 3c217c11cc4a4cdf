// ParticipantChannel: how the 2PC engine (coordinator/txn_coordinator.h)
// talks to one participant connection. The WebSocket session implements it
// (coordinator/participant_session.h); unit tests mock it with GoogleMock.
//
// Contract for implementations: both calls are thread-safe, never block
// and never call back into the engine synchronously (the engine calls them
// while holding its own mutex, so that the frames of one connection leave
// in the order in which the engine decided them). They only queue: the
// frame is written later, in call order, on the connection's own strand.
// After Close, further Sends are dropped.
#ifndef ONCE_COORDINATOR_PARTICIPANT_CHANNEL_H_
#define ONCE_COORDINATOR_PARTICIPANT_CHANNEL_H_

#include "absl/strings/string_view.h"

#include "schema/txn_protocol.h"

namespace once::coordinator {

class ParticipantChannel {
 public:
  virtual ~ParticipantChannel() = default;

  // Queues `frame` for the participant.
  virtual void Send(protocol::Frame frame) = 0;

  // Queues an error frame {"type":"error", code, message} and then closes
  // the connection (e.g. code "fenced" when a newer connection of the same
  // participant took over).
  virtual void Close(absl::string_view code, absl::string_view message) = 0;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_PARTICIPANT_CHANNEL_H_
