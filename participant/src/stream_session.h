// The streaming session for idempotent and at-least-once groups
// (schema/ws_protocol.md, "Streaming consumption"):
//
//   start ──subscribe(credits = window)──> kSubscribing ──subscribed──> kOpen
//   kOpen: message -> handler -> apply (idempotent: effects + message id in
//          one local transaction; a recorded id is skipped) -> ack, credit 1
//          handler error -> nack (requeue), credit 1
//
// An ack is sent only after the local commit is durable, so a crash
// between them redelivers the message, and the idempotent guard skips it.
//
// Acks are batched: a burst of messages is answered with one "ack" frame
// listing every token (schema/ws_protocol.md allows up to 10 000), sent at
// Flush() (the owner calls it when the burst is handled) or once half the
// window is held back. Each ack costs the server a durable write, so this
// is where the streaming modes' per-message cost was. Credits (free for
// the server) go back at once, one per message, so the server never waits
// for a batch to push more; nacks (rare) go out at once too. Acks lost
// with the connection mean redeliveries, as an ack lost in flight would.
// Violations (bad JSON, binary frame, a message before subscribed or for
// another subscription, missing or mistyped fields, an unknown type) and
// error frames that end the subscription end the session; an error about
// refused ack tokens (a lease that expired) does not.
#ifndef ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_
#define ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_

#include <cstdint>
#include <string>

#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "participant/src/session.h"

namespace once::participant {

// A "message" frame's fields.
struct StreamMessage {
  uint64_t subscription = 0;
  std::string token;
  Message message;
};

// Strict decoding of a "message" frame: required fields present and typed.
absl::StatusOr<StreamMessage> DecodeStreamMessage(const boost::json::object& o);

class StreamSession final : public Session {
 public:
  explicit StreamSession(SessionEnv env) : env_(std::move(env)) {}

  absl::Status Start() override;
  absl::Status OnFrame(absl::string_view data, bool text) override;
  absl::Status OnTimer() override { return absl::OkStatus(); }
  bool open() const override { return state_ == State::kOpen; }
  absl::Status Flush() override;
  bool pending() const override { return !pending_acks_.empty(); }

 private:
  enum class State { kIdle, kSubscribing, kOpen };

  absl::Status OnMessage(const boost::json::object& o);
  void Send(boost::json::object frame);
  // Gives back one credit and holds back an ack of `token` (when not
  // empty); flushes once ack_batch_max() acks are held.
  void Settle(std::string token);
  size_t ack_batch_max() const;

  SessionEnv env_;
  State state_ = State::kIdle;
  uint64_t subscription_ = 0;
  boost::json::array pending_acks_;  // tokens, in arrival order
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_
