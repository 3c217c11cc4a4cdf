#include "participant/src/session.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "participant/src/stream_session.h"
#include "participant/src/txn_session.h"

namespace once::participant {

std::unique_ptr<Session> MakeSession(SessionEnv env) {
  if (env.options->mode == Mode::kExactlyOnce) return std::make_unique<TxnSession>(std::move(env));
  return std::make_unique<StreamSession>(std::move(env));
}

bool TakesDecodedFrames(Mode mode) { return mode == Mode::kExactlyOnce; }

absl::Status Session::OnDecoded(absl::StatusOr<protocol::Frame>) {
  return absl::InternalError("this session takes its frames as text (OnFrame), not decoded");
}

absl::Status RunHandler(const Handler& handler, const Message& message, Staging& staging) {
  // The handler is the consumer's code: an exception must not escape into
  // the SDK's event loop (it would end the process).
  try {
    return handler(message, staging);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("handler threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("handler threw a non-standard exception");
  }
}

}  // namespace once::participant
