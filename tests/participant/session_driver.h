// Driving an exactly-once TxnSession directly, without a network: the
// coordinator's frames (epoch 3, generation 1) and a session over a
// resource whose outgoing frames are collected. Used by the session and
// crash tests.
#ifndef ONCE_TESTS_PARTICIPANT_SESSION_DRIVER_H_
#define ONCE_TESTS_PARTICIPANT_SESSION_DRIVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "participant/src/txn_session.h"
#include "schema/txn_protocol.h"
#include "tests/participant/coordinator_frames.h"
#include "tests/participant/ledger_testing.h"

namespace once::participant::session_testing {

inline constexpr uint64_t kEpoch = 3;
inline constexpr uint64_t kGeneration = 1;

// PREPARE of `txn`: one payments message (partition 0) per value, at
// offsets first_offset, first_offset + 1, ...
inline std::string PrepareFrame(const std::string& txn, uint64_t first_offset,
                                const std::vector<std::string>& values) {
  std::vector<protocol::TxnMessage> messages;
  for (size_t i = 0; i < values.size(); ++i) {
    messages.push_back(frames::Payment(first_offset + i, values[i]));
  }
  return frames::Prepare(txn, kEpoch, kGeneration, std::move(messages));
}

inline std::string CommitFrame(const std::string& txn) {
  return frames::Commit(txn, kEpoch, kGeneration);
}

inline std::string WelcomeFrame(std::vector<protocol::Resolution> resolutions = {}) {
  return frames::Welcome(kEpoch, kGeneration, std::move(resolutions));
}

// One session of participant "p1" (payments/ledger, the ledger handler)
// over `resource`, its outgoing frames decoded into `sent`.
struct SessionDriver {
  SessionDriver(Resource* resource, bool group_commit,
                std::function<void(absl::string_view)> hook = nullptr) {
    options.topic = "payments";
    options.group = "ledger";
    options.participant_id = "p1";
    handler = testing::LedgerHandler;
    SessionEnv env;
    env.options = &options;
    env.resource = resource;
    env.handler = &handler;
    env.stats = &stats;
    env.group_commit = group_commit;
    env.send = [this](std::string f) { sent.push_back(protocol::Decode(f).value()); };
    env.test_hook = std::move(hook);
    session = std::make_unique<TxnSession>(std::move(env));
  }
  ParticipantOptions options;
  Handler handler;
  StatsBox stats;
  std::vector<protocol::Frame> sent;
  std::unique_ptr<TxnSession> session;
};

}  // namespace once::participant::session_testing

#endif  // ONCE_TESTS_PARTICIPANT_SESSION_DRIVER_H_
