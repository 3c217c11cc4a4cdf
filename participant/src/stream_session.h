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
// The session subscribes with delivery tags (schema/ws_protocol.md): each
// message carries its subscription's next number instead of a token, and
// acks name numbers. Acks are batched: a burst of messages is answered with
// one "ack" frame with "up_to" the highest tag held back, sent at Flush()
// (the owner calls it when the burst is handled) or once half the window
// is held back. "up_to" covers exactly the held-back tags: messages are
// handled in arrival order, tags arrive in increasing order, and every
// tag below the highest was either held back too or nacked already (a
// nack goes out at once and takes its tag off the server's list). Each ack costs the server a
// durable write, so this is where the streaming modes' per-message cost was. Credits (free for the
// server) go back at once, one per message, so the server never waits for a batch to push more;
// nacks (rare) go out at once too. Acks lost with the connection mean redeliveries, as an ack lost
// in flight would. Violations (bad JSON, binary frame, a message before subscribed or for another
// subscription, missing or mistyped fields, an unknown type) and error frames that end the
// subscription end the session; an error about refused acks (a lease that expired) does not.
#ifndef ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_
#define ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_

#include <cstdint>
#include <string>

#include "boost/json/object.hpp"
#include "participant/src/session.h"

namespace once::participant {

// A "message" frame's fields.
struct StreamMessage {
  uint64_t subscription = 0;
  uint64_t tag = 0;  // the delivery tag, >= 1
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
  bool pending() const override { return pending_acks_ > 0; }

 private:
  enum class State { kIdle, kSubscribing, kOpen };

  absl::Status OnMessage(const boost::json::object& o);
  void Send(boost::json::object frame);
  // Gives back one credit and holds back an ack of `tag` (when not 0);
  // flushes once ack_batch_max() acks are held.
  void Settle(uint64_t tag);
  size_t ack_batch_max() const;

  SessionEnv env_;
  State state_ = State::kIdle;
  uint64_t subscription_ = 0;
  size_t pending_acks_ = 0;  // tags held back, the highest of them:
  uint64_t last_tag_ = 0;
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_
