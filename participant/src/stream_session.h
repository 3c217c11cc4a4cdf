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
// Violations (bad JSON, binary frame, a message before subscribed or for
// another subscription, missing or mistyped fields, an unknown type) and
// error frames that end the subscription end the session; an error about
// refused ack tokens (a lease that expired) does not.
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

 private:
  enum class State { kIdle, kSubscribing, kOpen };

  absl::Status OnMessage(const boost::json::object& o);
  void Send(boost::json::object frame);

  SessionEnv env_;
  State state_ = State::kIdle;
  uint64_t subscription_ = 0;
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_STREAM_SESSION_H_
