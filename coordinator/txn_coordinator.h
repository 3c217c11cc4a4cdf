// TxnCoordinator: the 2PC engine of onced (DESIGN.md §2, the rules of
// schema/model/README.md). One object per onced. It runs the participant
// sessions of exactly-once groups (hello/vote/done from
// coordinator/participant_session.h), a delivery loop per exactly-once
// group (lease a batch, PREPARE), the commit point (Pin, then the group
// commit in coordinator/txn_store.h), COMMIT re-sends until DONE, aborts
// (NO, vote timeout, disconnect, HELLO's presumed abort), recovery at start
// and the operators' forced outcomes.
//
// Every state change goes through Transition() (coordinator/txn_state.h).
// Every state change that a frame depends on is made (and persisted, for
// the durable ones) before the frame is queued: COMMIT only after the
// COMMIT record is durable; ABORT and the welcome's resolutions only after
// the txn was taken out of every path that could still commit it.
//
// Threading. Every public method is thread-safe. One mutex (mu_) guards
// the in-memory tables; it is never held across a broker call or a store
// call. Frames are queued on ParticipantChannels under mu_ (they only
// queue; see participant_channel.h), so one connection's frames leave in
// decision order. Session calls (OnHello, OnVote, OnDone, OnDisconnect),
// Tick, Recover and the operator calls block on broker and store I/O: call
// them on a worker thread. The delivery loops run on `executor`. The
// store's commit callbacks run on its writer thread.
//
// Ordered groups are refused (at creation over HTTP, and at hello): the
// broker's ordered-group rebalance (a member joins, leaves or times out)
// rewinds every delivery past the committed offset, pinned ones included,
// so a batch under a COMMIT record could be delivered again. Should they
// be served later, a participant of an ordered group is kept to one
// transaction in flight (Connection::ordered), so one per partition.
#ifndef ONCE_COORDINATOR_TXN_COORDINATOR_H_
#define ONCE_COORDINATOR_TXN_COORDINATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "broker/consumer_group.h"
#include "coordinator/participant_channel.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_state.h"
#include "coordinator/txn_store.h"
#include "schema/clock.h"
#include "schema/txn_protocol.h"

namespace once::coordinator {

struct TxnCoordinatorOptions {
  // Most messages in one transaction's batch. 1..broker::kMaxFetch.
  // A group's own txn_batch_max (broker/group_config.h) overrides it.
  int batch_max = 100;
  // How long a partial batch lingers (leased, not yet PREPAREd) for more
  // messages before it goes out anyway. 0..broker::kMaxTxnLingerMs; 0
  // sends what is available at once. A group's own txn_linger_ms
  // overrides it; this default is capped at half the group's
  // ack_timeout_ms. A lingering batch goes out when it is full, or at the
  // first delivery round after its deadline: a new message's
  // notification or Tick, so the overshoot is at most Tick's period.
  int64_t linger_ms = 0;
  // A PREPARE not answered within this is aborted (and its leases
  // released). Keep it well below the groups' ack_timeout_ms: a lease
  // that expires under an undecided txn makes the commit point refuse it.
  int64_t vote_timeout_ms = 10'000;
  // COMMIT is re-sent to a connected participant until DONE, first after
  // this, then doubling up to commit_retry_max_ms.
  int64_t commit_retry_initial_ms = 1'000;
  int64_t commit_retry_max_ms = 60'000;
  // A failed COMMIT-record write is retried after this (the leases are
  // pinned by then: the decision can only go forward).
  int64_t commit_write_retry_ms = 1'000;
  // How long the broker delete after a DONE waits for those of other DONEs,
  // to share one group-store write (one fsync) with them. At a steady
  // 2,000 msg/s each DONE took an fsync of its own, ~1,000 a second queued
  // at the device in front of every other. Only the coordinator's own
  // bookkeeping waits: the participant's slot is free at the DONE, and a
  // crash meanwhile only re-sends the COMMIT (the record is still there).
  // Real time, on a worker. 0..1000; 0: each DONE at once.
  int64_t finish_delay_ms = 0;
  // The most transactions in flight one participant may ask for (a larger
  // hello window is clamped; the codec allows 1..1024). The group's
  // prefetch bounds the leases besides.
  uint32_t max_window = 1024;
  // How long a HELLO waits for a commit point of the same participant that
  // is being written, before it is refused with "unavailable".
  int64_t hello_wait_ms = 10'000;
  Clock* clock = SystemClock();
};

// kInvalidArgument naming the first option out of range.
absl::Status ValidateTxnCoordinatorOptions(const TxnCoordinatorOptions& options);

// One transaction as operators see it.
struct TxnView {
  TxnRecord record;         // record.state is the current state
  bool committing = false;  // its commit point is being written
  bool participant_connected = false;
};

class TxnCoordinator {
 public:
  using GroupLookup = std::function<absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>>(
      absl::string_view topic, absl::string_view group)>;
  // Runs `work` soon on some thread that may block (the worker pool; tests
  // may run it inline).
  using Executor = std::function<void(std::function<void()> work)>;

  // Nothing is owned; `store`, `metrics` (may be null) and the clock
  // outlive the engine. Call Recover before anything else. Before the
  // engine is destroyed, Close the store (its queued callbacks call the
  // engine) and stop the executor's threads.
  TxnCoordinator(TxnStore* store, GroupLookup groups, Executor executor,
                 TxnCoordinatorOptions options, TxnMetrics* metrics = nullptr);
  ~TxnCoordinator();

  TxnCoordinator(const TxnCoordinator&) = delete;
  TxnCoordinator& operator=(const TxnCoordinator&) = delete;

  // Recovery at start, before any session or delivery: bumps the epoch,
  // loads every committed-not-done txn, deletes its batch in the broker
  // (AckPositions, idempotent) and records that, and keeps it to re-send
  // COMMIT when its participant says hello. An error means the service must
  // not serve (a batch under a COMMIT record could be delivered again).
  absl::Status Recover();
  uint64_t epoch() const;

  // ---- participant sessions

  // Opens (or, for a participant id already connected, takes over: the
  // older connection is closed with "fenced") a session; answers welcome.
  // May wait for the store: call on a worker thread.
  void OnHello(std::shared_ptr<ParticipantChannel> channel, const protocol::Hello& hello);
  // Do no I/O themselves (what needs it, releasing leases or looking up a
  // closed txn, goes to the executor), so that the network thread can call
  // them: a vote's COMMIT record is queued and a DONE's freed slot lets the
  // next PREPARE out without a hand-off to a worker first.
  void OnVote(ParticipantChannel* channel, const protocol::Vote& vote);
  void OnDone(ParticipantChannel* channel, const protocol::Done& done);
  // The connection is gone: its undecided txns are aborted (their leases
  // released); its committed ones wait for the participant's return.
  void OnDisconnect(ParticipantChannel* channel);

  // Timers, due at the clock's now: vote timeouts, COMMIT re-sends, retried
  // commit writes; then wakes every delivery loop (redeliveries after a
  // backoff raise no notification). Call periodically, on a worker.
  void Tick();

  // Stops the delivery loops (they finish their current round) and makes
  // later hellos fail. Idempotent.
  void Shutdown();

  // ---- operators (on a worker thread)

  // kNotFound when there is neither an open txn nor a record of it.
  absl::StatusOr<TxnView> Get(absl::string_view txn);
  // Open txns (memory) and, for state kDone or nullopt, the done records
  // not yet removed; oldest first, at most `limit`.
  absl::StatusOr<std::vector<TxnView>> List(std::optional<TxnState> state, size_t limit);
  // Forced outcomes, audited with `reason` and `actor`. ForceCommit: only a
  // txn whose participant voted yes (kVotedYes); ForceAbort: only before
  // the commit point is being written. Otherwise kFailedPrecondition
  // saying why, kNotFound for an unknown txn.
  absl::Status ForceCommit(absl::string_view txn, absl::string_view reason,
                           absl::string_view actor);
  absl::Status ForceAbort(absl::string_view txn, absl::string_view reason, absl::string_view actor);

  // Counts per state of the open txns, and the in-doubt count (a YES vote
  // without an outcome the participant acknowledged), for /metrics.
  TxnGauges Gauges() const;

 private:
  using ParticipantKey = std::tuple<std::string, std::string, std::string>;  // topic, group, id
  using GroupKey = std::pair<std::string, std::string>;                      // topic, group

  struct GroupLoop {
    GroupKey key;
    std::shared_ptr<broker::ConsumerGroup> group;
    int64_t listener = 0;
    bool running = false;  // a round is scheduled or running
    bool again = false;    // something changed during the round
  };

  struct Connection {
    std::shared_ptr<ParticipantChannel> channel;
    uint64_t generation = 0;
    uint32_t window = 1;
    int inflight = 0;       // txns prepared on it, not done or aborted (+ reservations)
    bool welcomed = false;  // welcome sent: PREPAREs may follow
    bool ordered = false;
    std::shared_ptr<GroupLoop> loop;
    // A partial batch leased while it lingers (see linger_ms): not a txn
    // yet (nothing counted in inflight); its leases are released (nack,
    // requeue) when the connection goes. Taken out by the delivery round
    // that tops it up, so only that round touches it.
    std::vector<broker::Delivery> lingering;
    int64_t linger_deadline_ms = 0;
  };

  struct Txn {
    TxnRecord record;  // record.state is the state
    ParticipantKey key;
    std::shared_ptr<broker::ConsumerGroup> group;  // null for a recovered txn
    // Its leases (LeaseHandles); empty for a recovered txn.
    std::vector<broker::DeliveryToken> handles;
    // The generation of the connection it was prepared on, while it counts
    // in that connection's inflight (0: in none). A generation, not the
    // channel's address: a later session may be allocated at the address
    // of an ended one.
    uint64_t prepared_generation = 0;
    int64_t vote_deadline_ms = 0;
    // For the prepare and commit histograms only: a monotonic clock at
    // microsecond resolution (NowMs would put a 0.3 ms wait in the 0 or
    // 1 ms bucket). Unset for a recovered txn.
    std::chrono::steady_clock::time_point prepare_sent;
    std::chrono::steady_clock::time_point voted;
    bool committing = false;         // Pin + COMMIT record in progress
    bool pinned = false;             // its leases are pinned (can only be acked)
    int64_t commit_retry_at_ms = 0;  // > 0: the record write failed; retry then
    TxnEvent commit_event = TxnEvent::kDecideCommit;
    bool finishing = false;    // DONE being applied
    int64_t next_send_ms = 0;  // committed: next COMMIT re-send
    int64_t backoff_ms = 0;
  };

  // What to do after mu_ is released.
  struct Aftermath {
    std::vector<
        std::pair<std::shared_ptr<broker::ConsumerGroup>, std::vector<broker::DeliveryToken>>>
        nacks;
    std::vector<std::shared_ptr<GroupLoop>> wake;
    std::vector<std::string> attempts;
    std::vector<std::string> commits;  // resubmit the COMMIT record
  };

  // ---- txn_coordinator.cc: sessions and decisions
  // Aborts T (`event` must be legal in its state): queues ABORT to its
  // connection when `send_frame`, releases its leases (nack, requeue) when
  // `release`, counts `label` and erases T. Nothing is written (presumed
  // abort).
  void Abort(Txn& txn, TxnEvent event, absl::string_view label, absl::string_view message,
             bool send_frame, bool release, Aftermath* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies `event` to T's state; false (logged) when the table refuses.
  bool Apply(Txn& txn, TxnEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(Aftermath after);
  // Run, but on the executor if it releases leases (a broker write): for
  // the callers that must not wait for I/O.
  void RunSoon(Aftermath after);
  // Waits until T's records are durable in the broker (they were PREPAREd
  // once written, see broker::Topic::written_partition), pins T's leases,
  // then submits its COMMIT record (T is `committing`).
  void DecideCommit(const std::string& txn_id, std::function<void(absl::Status)> done = nullptr);
  // DecideCommit once T's records are durable.
  void PinAndWriteCommit(const std::string& txn_id, std::function<void(absl::Status)> done);
  // Runs `task` once the records under `handles` are durable in the
  // group's topic (with the status of broker::ConsumerGroup::WhenDurable):
  // here when they are already, else on the executor (not after Shutdown).
  void AfterDurable(const broker::ConsumerGroup& group,
                    absl::Span<const broker::DeliveryToken> handles,
                    absl::AnyInvocable<void(absl::Status)> task);
  void OnCommitWritten(const std::string& txn_id, absl::Status status,
                       const std::function<void(absl::Status)>& done);
  void SendCommitLocked(Txn& txn, Aftermath* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a DONE: deletes T's batch in the broker, then records T done. Runs
  // on the executor, off the participant's frame queue: the broker delete is
  // a durable group-store write, and the VOTE that usually follows a DONE in
  // the same burst must not wait for it.
  struct PendingFinish {
    std::string txn;
    std::shared_ptr<broker::ConsumerGroup> group;
    std::vector<broker::DeliveryToken> handles;
    TxnRecord record;
  };
  // FinishDone for `p`, at once or (finish_delay_ms) with the DONEs of the
  // next few milliseconds.
  void QueueFinish(PendingFinish p) ABSL_LOCKS_EXCLUDED(mu_, finish_mu_);
  // The queued DONEs: one broker delete per group for all of them (falling
  // back to each one's own), then FinishDone each.
  void FinishQueued() ABSL_LOCKS_EXCLUDED(mu_, finish_mu_);
  void FinishDone(const std::string& txn_id, std::shared_ptr<broker::ConsumerGroup> group,
                  std::vector<broker::DeliveryToken> handles, TxnRecord record)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseInflightLocked(Txn& txn, Aftermath* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The connection `channel` speaks for if it is the current one of its
  // participant and `epoch`/`generation` are current; else queues the
  // error frame ("hello_required" or "stale_generation") and returns null.
  Connection* CheckFrameLocked(ParticipantChannel* channel, uint64_t epoch, uint64_t generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Connection* CurrentLocked(const ParticipantKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerClosedTxn(ParticipantChannel* channel, const std::string& txn, uint64_t generation);
  bool NoCommitInProgressLocked(const ParticipantKey& key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes T (terminal) from the tables.
  void EraseLocked(const std::string& txn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `txn` belongs to the participant on `channel`; if not, answers
  // it with a wrong_participant error frame.
  bool OwnedByLocked(const Txn& txn, ParticipantChannel* channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- txn_delivery.cc: the delivery loops and timers
  std::shared_ptr<GroupLoop> LoopForLocked(const GroupKey& key,
                                           std::shared_ptr<broker::ConsumerGroup> group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake(const std::shared_ptr<GroupLoop>& loop);
  void RunLoop(std::shared_ptr<GroupLoop> loop);
  // One lease + PREPARE for the participant; true when a batch went out.
  bool DeliverOne(const std::shared_ptr<GroupLoop>& loop, const ParticipantKey& key,
                  uint64_t generation);
  std::string NextTxnIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases `c`'s lingering batch (before the connection is erased).
  void ReleaseLingeringLocked(Connection& c, Aftermath* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lets a notifier listener reach the engine only while it lives.
  // No lock is held while a listener runs the engine (a delivery round run
  // inline may notify again); the destructor waits for running ones.
  struct Life {
    absl::Mutex mu;
    TxnCoordinator* engine ABSL_GUARDED_BY(mu) = nullptr;
    int running ABSL_GUARDED_BY(mu) = 0;
  };

  TxnStore* const store_;
  const GroupLookup groups_;
  const Executor executor_;
  const TxnCoordinatorOptions options_;
  TxnMetrics* const metrics_;
  Clock* const clock_;

  const std::shared_ptr<Life> life_;

  mutable absl::Mutex mu_;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Open txns: undecided ones and committed-not-done ones (recovered too).
  absl::btree_map<std::string, Txn> txns_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<ParticipantKey, Connection> connections_ ABSL_GUARDED_BY(mu_);
  // Every channel that said hello, to its participant (current or fenced).
  absl::flat_hash_map<ParticipantChannel*, ParticipantKey> channels_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<ParticipantKey, uint64_t> generations_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<GroupKey, std::shared_ptr<GroupLoop>> loops_ ABSL_GUARDED_BY(mu_);

  absl::Mutex finish_mu_;
  std::vector<PendingFinish> finish_queue_ ABSL_GUARDED_BY(finish_mu_);
  bool finish_scheduled_ ABSL_GUARDED_BY(finish_mu_) = false;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_TXN_COORDINATOR_H_
