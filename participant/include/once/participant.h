// The participant SDK a consumer embeds (DESIGN.md §2 and §4): it connects
// to onced's /v1/ws, receives a group's messages, runs the consumer's
// handler and makes the handler's effects happen in the consumer's store
// exactly once (or idempotently, or at least once).
//
//   once::ParticipantOptions options;
//   options.url = "ws://127.0.0.1:8080/v1/ws";
//   options.topic = "payments"; options.group = "ledger";
//   options.participant_id = "ledger-1";
//   ONCE_ASSIGN_OR_RETURN(auto resource, once::SqliteResource::Open("ledger.db"));
//   ONCE_ASSIGN_OR_RETURN(auto participant, once::Participant::Create(
//       options, resource.get(), [](const once::Message& m, once::Staging& s) {
//         s.Add("UPDATE ... ?1", {m.value}); return absl::OkStatus(); }));
//   participant->Start();  ...  participant->Stop();
//
// Modes (the group's delivery guarantee, set when the group was created):
// - kExactlyOnce: a participant session (hello/welcome/prepare/vote/commit/
//   abort/done, schema/txn_protocol.h). The handler only stages effects;
//   they are journaled with the YES vote and applied in one local
//   transaction on COMMIT, guarded by the committed message ids.
// - kIdempotent: a streaming subscription; each message's effects are
//   applied together with its id in one local transaction (a redelivered
//   id is skipped), then acked.
// - kAtLeastOnce: a streaming subscription; effects applied, then acked; a
//   handler error nacks (requeue).
//
// Failure handling: any transport error or protocol violation (malformed
// JSON, unknown or out-of-order frame, a frame of another epoch or
// generation, ...) fails the session: the socket is closed and the SDK
// reconnects after a backoff (exponential between backoff_min_ms and
// backoff_max_ms, +-jitter) and sends hello again with its in-doubt
// transactions. Nothing is applied twice and nothing crashes.
//
// Threading: the SDK runs one thread of its own (started by Start, joined
// by Stop), and a second one for the network with read_ahead; the handler
// and the resource are called on the first, one message at a time. Start,
// Stop and stats() are thread-safe; the handler must not call Stop (it
// would wait for itself).
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_PARTICIPANT_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_PARTICIPANT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "once/message.h"
#include "once/resource.h"
#include "once/staging.h"

namespace once {

enum class Mode { kExactlyOnce, kIdempotent, kAtLeastOnce };

struct ParticipantOptions {
  // ws://host:port/path (plain WebSocket; no TLS).
  std::string url = "ws://127.0.0.1:8080/v1/ws";
  std::string topic;
  std::string group;
  // The participant's identity (1..255 characters). It must stay the same
  // across restarts of the consumer: the coordinator re-drives in-doubt
  // transactions by it. A second connection with the same id fences the
  // first one.
  std::string participant_id;
  // The journal's SQLite file, used when Create() gets no resource: the
  // SDK then opens a SqliteResource there itself.
  std::string journal_path;
  Mode mode = Mode::kExactlyOnce;
  // Exactly-once: transactions accepted in flight (hello's "window",
  // 1..1024). Streaming: the subscription's credits (messages in flight).
  uint32_t window = 16;
  // Reconnect backoff: the first retry waits backoff_min_ms, each further
  // failure doubles it up to backoff_max_ms; every wait is scaled by a
  // random factor in [1 - jitter, 1 + jitter]. Reset once a session opens.
  int64_t backoff_min_ms = 100;
  int64_t backoff_max_ms = 10'000;
  double backoff_jitter = 0.2;
  // In-doubt transactions re-send their YES vote this often (model rule
  // 5); the coordinator answers with the outcome.
  int64_t reask_interval_ms = 2'000;
  // TCP connect + WebSocket handshake, and the wait for welcome/subscribed.
  int64_t connect_timeout_ms = 5'000;
  // Largest frame accepted from the service.
  uint64_t max_frame_bytes = 64ull << 20;
  // Exactly-once: the frames of one burst (those already arrived when the
  // SDK gets to them) share one local transaction of the resource, hence
  // one fsync (Resource::BeginGroup/EndGroup), and their votes and DONEs
  // are sent once it is durable. A YES vote still means "durably
  // prepared", a DONE "durably applied". Off: one local transaction (and
  // fsync) per prepare and per commit, each answered at once. A resource
  // without grouping (the Resource defaults) behaves as off, except that
  // its frames still go out at the end of the burst.
  bool group_commit = true;
  // Exactly-once with group_commit: a group ends (is made durable, its
  // votes and DONEs sent) after this many frames even while more keep
  // arriving, and the next frames open the next group. Without a cap a
  // long burst is one group; with read_ahead, where frames arrive decoded
  // as fast as the service sends them, a whole window of PREPAREs was one:
  // the coordinator got no vote until the last was handled, and had
  // nothing to do meanwhile. With 8 (half the default window) a consumer
  // through a backlog with read_ahead committed ~10% more messages a
  // second (README, Benchmarks); shorter bursts are one group each, as
  // before. 0: no cap.
  uint32_t max_group_frames = 8;
  // A network thread of the SDK's own reads (and, exactly-once, decodes)
  // the next frames and writes the answers while the SDK's thread applies
  // the current one. For a consumer working through a backlog: an
  // exactly-once consumer applying one INSERT per message, in batches of
  // 1,000, committed 4-10% more messages a second with it (README,
  // Benchmarks). Off by default: each frame then crosses two threads, and
  // at a low rate, where every hand-off wakes a sleeping thread, that made
  // an exactly-once message ~0.4 ms slower (p50 at 2,000 msg/s).
  bool read_ahead = false;
};

// Called once per message. Stage effects into `staging` and return OK; an
// error (or an exception) makes the SDK vote NO for the message's
// transaction (exactly-once) or nack it (streaming modes), with the
// error's message as the reason. Runs on the SDK's thread.
using Handler = std::function<absl::Status(const Message& message, Staging& staging)>;

// Counters for monitoring and tests; a snapshot.
struct ParticipantStats {
  uint64_t connects = 0;          // sessions opened (welcome / subscribed received)
  uint64_t session_failures = 0;  // sessions that ended with an error
  uint64_t votes_yes = 0;
  uint64_t votes_no = 0;
  uint64_t commits = 0;  // transactions committed locally (not duplicates)
  uint64_t duplicate_commits = 0;
  uint64_t aborts = 0;
  uint64_t messages_applied = 0;  // messages whose effects were applied
  uint64_t messages_skipped = 0;  // already-committed ids (guard hits)
  uint64_t acks = 0;
  uint64_t nacks = 0;
  uint64_t frames_dropped = 0;  // fenced: another epoch/generation
  std::string last_error;       // why the last session failed
};

class Participant {
 public:
  // Validates the options. `resource` (not owned; must outlive the
  // participant) may be null: a SqliteResource is then opened at
  // options.journal_path.
  static absl::StatusOr<std::unique_ptr<Participant>> Create(ParticipantOptions options,
                                                             Resource* resource, Handler handler);
  ~Participant();  // Stop()s
  Participant(const Participant&) = delete;
  Participant& operator=(const Participant&) = delete;

  // Starts the SDK's thread, which connects and keeps reconnecting until
  // Stop. kFailedPrecondition when already started.
  absl::Status Start();
  // Closes the session and joins the thread. Idempotent. A transaction
  // prepared and not decided stays in the journal (in doubt) and is
  // resolved at the next Start, by this or another process.
  void Stop();

  ParticipantStats stats() const;

  class Impl;

 private:
  explicit Participant(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_PARTICIPANT_H_
