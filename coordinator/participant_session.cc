#include "coordinator/participant_session.h"

#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "coordinator/api_error.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {

ParticipantSession::ParticipantSession(TxnCoordinator* engine, Hooks hooks)
    : engine_(engine), hooks_(std::move(hooks)) {}

void ParticipantSession::HandleFrame(std::string text) {
  absl::StatusOr<protocol::Frame> frame = protocol::Decode(text);
  const bool never_waits = frame.ok() && (std::holds_alternative<protocol::Vote>(*frame) ||
                                          std::holds_alternative<protocol::Done>(*frame));
  if (never_waits && RunNowIfIdle([this, &frame] { Handle(frame); })) {
    return;
  }
  Enqueue([self = shared_from_this(), frame = std::move(frame)] { self->Handle(frame); });
}

void ParticipantSession::Disconnected() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
  }
  Enqueue([self = shared_from_this()] {
    if (self->engine_ != nullptr) self->engine_->OnDisconnect(self.get());
  });
}

void ParticipantSession::Enqueue(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    if (draining_) return;
    draining_ = true;
  }
  hooks_.run([self = shared_from_this()] { self->Drain(); });
}

bool ParticipantSession::RunNowIfIdle(absl::FunctionRef<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return false;
    draining_ = true;  // what arrives meanwhile queues behind `task`
  }
  RunGuarded(task);
  {
    absl::MutexLock lock(&mu_);
    if (tasks_.empty()) {
      draining_ = false;
      return true;
    }
  }
  hooks_.run([self = shared_from_this()] { self->Drain(); });
  return true;
}

void ParticipantSession::RunGuarded(absl::FunctionRef<void()> task) {
  try {
    task();
  } catch (const std::exception& e) {
    spdlog::error("participant frame handler threw: {}", e.what());
    SendError("internal", "internal error while handling the frame", 500);
  }
}

void ParticipantSession::Drain() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      if (tasks_.empty()) {
        draining_ = false;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    RunGuarded(task);
  }
}

void ParticipantSession::Handle(const absl::StatusOr<protocol::Frame>& frame) {
  if (engine_ == nullptr) {
    SendError(kNotReady, "the transaction coordinator is not ready", 503);
    return;
  }
  if (!frame.ok()) {
    SendError(kInvalidField, frame.status().message(), 400);
    return;
  }
  if (const auto* hello = std::get_if<protocol::Hello>(&*frame)) {
    engine_->OnHello(shared_from_this(), *hello);
  } else if (const auto* vote = std::get_if<protocol::Vote>(&*frame)) {
    engine_->OnVote(this, *vote);
  } else if (const auto* done = std::get_if<protocol::Done>(&*frame)) {
    engine_->OnDone(this, *done);
  } else {
    SendError("unexpected_frame",
              absl::StrCat("a \"", std::string(protocol::TypeName(*frame)),
                           "\" frame is sent by the coordinator, not to it; a participant sends "
                           "hello, vote and done"),
              400);
  }
}

void ParticipantSession::SendError(absl::string_view code, absl::string_view message, int status) {
  protocol::Error e;
  e.code = std::string(code);
  e.message = std::string(message);
  e.status = status;
  Send(std::move(e));
}

void ParticipantSession::Send(protocol::Frame frame) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
  }
  hooks_.send(protocol::Encode(frame));
}

namespace {

// The HTTP-like status of the codes a session is closed with.
int CloseStatus(absl::string_view code) {
  if (code == "fenced") return 409;
  if (code == "group_not_found" || code == "topic_not_found") return 404;
  if (code == "unavailable" || code == "shutting_down" || code == kNotReady) return 503;
  return 400;  // not_exactly_once, invalid_field, unsupported_version
}

}  // namespace

void ParticipantSession::Close(absl::string_view code, absl::string_view message) {
  protocol::Error e;
  e.code = std::string(code);
  e.message = std::string(message);
  e.status = CloseStatus(code);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
  }
  hooks_.close(protocol::Encode(e));
}

}  // namespace once::coordinator
