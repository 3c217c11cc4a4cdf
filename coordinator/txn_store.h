// TxnStore: the coordinator's durable 2PC state, <data-dir>/coordinator.db
// (SQLite, WAL; schema and table documentation in schema/coordinator.sql).
//
// Presumed abort: only the COMMIT decision is written (state kCommitted, the
// commit point), then kDone once the participant answered DONE and the
// batch was deleted in the broker; done records are removed later, in
// batches. A txn without a record is aborted (or never existed).
//
// Group commit: SubmitCommit and SubmitDone only queue. One writer thread
// takes everything queued so far (at most `max_batch` decisions) and writes
// it in ONE SQLite transaction, so N concurrent decisions cost one fsync;
// each callback runs once that transaction is durable under the configured
// synchronous setting (or with its error), and never before.
//
// Thread-safety: every method may be called from any thread. Callbacks run
// on the writer thread, after the writer released its locks: they may call
// any method except the blocking ones (RecordCommit, RecordDone, Close),
// which would wait for the writer itself. Reads use their own connection
// (WAL readers do not wait for the writer's fsync).
//
// Crash reasoning: a decision is one SQLite transaction together with its
// messages, so after a crash a record is there with all its messages or not
// at all; a callback ran only after COMMIT returned, so every decision
// acknowledged to a caller survives (with synchronous=FULL, power loss too).
#ifndef ONCE_COORDINATOR_TXN_STORE_H_
#define ONCE_COORDINATOR_TXN_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/txn_state.h"
#include "schema/clock.h"
#include "schema/sqlite.h"

namespace once::coordinator {

// One message of a txn's batch B: its place in the topic's log.
struct TxnMessageRef {
  uint32_t partition = 0;
  uint64_t offset = 0;
  friend bool operator==(const TxnMessageRef&, const TxnMessageRef&) = default;
};

// Consecutive offsets of one partition: how a batch is stored
// (schema/coordinator.sql, txn_runs).
struct TxnMessageRun {
  uint32_t partition = 0;
  uint64_t first_offset = 0;
  uint64_t count = 0;
  friend bool operator==(const TxnMessageRun&, const TxnMessageRun&) = default;
};

// `messages` as runs, in their order: a message extends the run before it
// when it is the next offset of the same partition.
std::vector<TxnMessageRun> ToRuns(const std::vector<TxnMessageRef>& messages);

struct TxnRecord {
  std::string txn;  // "<epoch>.<sequence>"
  std::string topic;
  std::string group;
  std::string participant;
  uint64_t epoch = 0;       // the coordinator epoch that decided it
  uint64_t generation = 0;  // the participant connection's generation
  TxnState state = TxnState::kCommitted;
  std::vector<TxnMessageRef> messages;
  int64_t created_ms = 0;       // PREPARE sent
  int64_t decided_ms = 0;       // the COMMIT record written (0: set by the store)
  int64_t done_ms = 0;          // 0 while not done
  uint32_t attempts = 0;        // COMMIT frames sent (informational)
  std::string reason;           // why it was decided so (e.g. an operator's reason)
  bool broker_deleted = false;  // B is known deleted (acked) in the broker
};

struct AuditEntry {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string txn;
  std::string action;  // e.g. "force_commit", "force_abort", "resolve"
  std::string reason;
  std::string actor;  // e.g. "once-recover", "http", "onced"
};

struct TxnStoreOptions {
  // PRAGMA synchronous FULL (a decision survives power loss) or NORMAL (it
  // survives a process crash; power loss may lose the last commits, never
  // corrupt the file).
  bool synchronous_full = true;
  // Most decisions written in one SQLite transaction.
  size_t max_batch = 1024;
  Clock* clock = SystemClock();
  // Open fails with kNotFound instead of creating a missing file (tools).
  bool create_if_missing = true;
  // Done records are kept until this many have accumulated (operators see
  // the recent ones); from then on every group commit removes the oldest
  // ones in its own SQLite transaction, at most remove_chunk more than it
  // marks done, so the count stays near remove_batch. All go at Close.
  size_t remove_batch = 256;
  // A removal costs some 10 us a record (the record and its runs): in
  // chunks of this size, riding the decisions' commits, it adds tens of
  // microseconds to a group commit, where removing remove_batch records in
  // a commit of their own held the next decisions back 2-4 ms. >= 1.
  size_t remove_chunk = 16;
  // How long done markings and attempt counts with no COMMIT record queued
  // may wait for one to share its fsync. They are bookkeeping: a done
  // marking lost to a crash only makes recovery send that COMMIT again,
  // which the participant answers with DONE (DESIGN.md §2). At a steady
  // rate this takes two of the three fsyncs per transaction off the disk
  // that every other fsync of the machine queues behind. 0: written at once.
  absl::Duration bookkeeping_delay = absl::ZeroDuration();
};

class TxnStore {
 public:
  // Opens or creates `path` (normally <data-dir>/coordinator.db) and brings
  // its schema up to date. Errors name the path: kFailedPrecondition for a
  // path that cannot be opened or a schema newer than this program, kDataLoss
  // for a file that is not a database or is damaged, kNotFound for a missing
  // file with create_if_missing=false.
  static absl::StatusOr<std::unique_ptr<TxnStore>> Open(const std::string& path,
                                                        TxnStoreOptions options = {});
  // The schema version this program writes (the last migration of
  // schema/coordinator.sql).
  static int LatestSchemaVersion();

  // Close()s.
  ~TxnStore();
  TxnStore(const TxnStore&) = delete;
  TxnStore& operator=(const TxnStore&) = delete;

  const std::string& path() const { return path_; }

  // Durably increments the epoch (onced calls it once per start, before any
  // txn id is handed out) and returns the new one: 1 on a fresh store.
  absl::StatusOr<uint64_t> BumpEpoch();
  // The current epoch (0 on a fresh store before BumpEpoch).
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // Queues T's COMMIT record (record.state must be kCommitted, record.txn
  // unique and non-empty); `done` runs on the writer thread once the group
  // commit holding it is durable, or with its error: kAlreadyExists when a
  // record of that txn exists, kInvalidArgument for a malformed record,
  // kFailedPrecondition after Close. One bad record never fails the others
  // of its batch. decided_ms 0 is set to the clock's now.
  void SubmitCommit(TxnRecord record, std::function<void(absl::Status)> done);
  // SubmitCommit and wait.
  absl::Status RecordCommit(TxnRecord record);

  // Queues "T is done" (DONE received and B deleted in the broker): the
  // record moves to kDone with done_ms, durably before `done` runs; it is
  // removed later, in batches. kNotFound for an unknown txn (already
  // removed or never committed); done twice is OK. Written with the next
  // COMMIT record, or after options.bookkeeping_delay.
  void SubmitDone(std::string txn, std::function<void(absl::Status)> done);
  // SubmitDone and wait.
  absl::Status RecordDone(std::string txn);

  // Durably records that T's batch is deleted (acked) in the broker.
  // kNotFound for an unknown txn. Idempotent.
  absl::Status MarkBrokerDeleted(std::string_view txn);
  // The same for many txns in one durable SQLite transaction (recovery,
  // once-recover): all or nothing; kNotFound naming the first unknown txn.
  absl::Status MarkBrokerDeletedBatch(const std::vector<std::string>& txns);
  // Counts one more COMMIT sent for T. Lazy: written with the writer's next
  // batch (attempts are informational); unknown txns are ignored.
  absl::Status RecordAttempt(std::string_view txn);

  // Every committed, not done txn (with its messages), oldest decision first.
  absl::StatusOr<std::vector<TxnRecord>> LoadUnfinished();
  absl::StatusOr<std::optional<TxnRecord>> Find(std::string_view txn);
  // Records in `state` (all when nullopt), oldest decision first; at most
  // `limit` (0: no limit).
  absl::StatusOr<std::vector<TxnRecord>> List(std::optional<TxnState> state, size_t limit);

  // Appends to the audit table (never removed), durably.
  absl::Status Audit(std::string_view txn, std::string_view action, std::string_view reason,
                     std::string_view actor);
  // Appends many entries (their id and at_ms are ignored: set by the store)
  // in one durable SQLite transaction.
  absl::Status AuditBatch(const std::vector<AuditEntry>& entries);
  // Every audit entry, or those of one txn; oldest first.
  absl::StatusOr<std::vector<AuditEntry>> AuditLog(std::optional<std::string> txn);

  // Removes every done record now; returns how many. (The writer does it
  // by itself, in chunks, past `remove_batch` done records, and at Close.)
  absl::StatusOr<size_t> RemoveDone();

  struct Stats {
    uint64_t commits = 0;      // SQLite transactions committed by the writer
    uint64_t decisions = 0;    // COMMIT records written
    uint64_t done_marked = 0;  // records moved to kDone
    uint64_t removed = 0;      // done records removed
  };
  Stats stats() const;

  // Drains the queue (every queued callback runs), removes done records,
  // stops the writer. Later Submit* fail with kFailedPrecondition.
  // Idempotent.
  void Close();

 private:
  struct PendingCommit {
    TxnRecord record;
    std::function<void(absl::Status)> done;
  };
  struct PendingDone {
    std::string txn;
    std::function<void(absl::Status)> done;
  };
  // What one writer round takes from the queue.
  struct Batch {
    std::vector<PendingCommit> commits;
    std::vector<PendingDone> dones;
    absl::flat_hash_map<std::string, uint32_t> attempts;
    size_t removed = 0;  // done records its write removed (WriteBatch)
    bool empty() const { return commits.empty() && dones.empty() && attempts.empty(); }
    // Worth an fsync of its own now: a decision waits, or enough markings.
    bool urgent(size_t max_batch) const { return !commits.empty() || dones.size() >= max_batch; }
  };

  TxnStore(std::string path, TxnStoreOptions options, std::unique_ptr<sqlite::Database> write_db,
           std::unique_ptr<sqlite::Database> read_db, uint64_t epoch, size_t done_unremoved);

  // The writer thread (txn_store_writer.cc).
  void WriterLoop();
  // Writes one batch in one SQLite transaction and fills `results` (one per
  // commit, then one per done). Returns the transaction's own error.
  absl::Status WriteBatch(Batch& batch, std::vector<absl::Status>& results)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<size_t> RemoveDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Inside WriteBatch's transaction, where `done` records are done (this
  // batch's `marked` included): removes the oldest past remove_batch, at
  // most `marked` + remove_chunk of them. A failure is undone alone
  // (logged): the decisions of the batch do not depend on it. Returns how
  // many were removed.
  absl::StatusOr<size_t> RemoveDoneChunkLocked(size_t done, size_t marked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status Prefixed(const absl::Status& status, std::string_view what) const;

  const std::string path_;
  const TxnStoreOptions options_;
  std::atomic<uint64_t> epoch_;

  // The writer's connection: the writer thread, BumpEpoch, MarkBrokerDeleted,
  // Audit and RemoveDone. Never held while callbacks run.
  mutable absl::Mutex write_mu_;
  std::unique_ptr<sqlite::Database> write_db_ ABSL_GUARDED_BY(write_mu_);
  // Done records not yet removed: counted at open, then kept by the
  // committed markings and removals.
  size_t done_unremoved_ ABSL_GUARDED_BY(write_mu_);

  // The readers' connection.
  mutable absl::Mutex read_mu_;
  std::unique_ptr<sqlite::Database> read_db_ ABSL_GUARDED_BY(read_mu_);

  mutable absl::Mutex queue_mu_;
  Batch queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(queue_mu_);

  absl::Mutex close_mu_;  // serializes Close()
  std::thread writer_;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_TXN_STORE_H_
