// TxnStore's writer thread: the group commit of decisions, done markings
// and attempt counts, and the batched removal of done records.
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "coordinator/txn_store.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

absl::Status ValidateCommit(const TxnRecord& r) {
  if (r.txn.empty()) return absl::InvalidArgumentError("a COMMIT record needs a txn id");
  if (r.state != TxnState::kCommitted) {
    return absl::InvalidArgumentError(absl::StrCat("txn ", r.txn, ": a COMMIT record has state ",
                                                   std::string(TxnStateName(TxnState::kCommitted)),
                                                   ", not ", std::string(TxnStateName(r.state))));
  }
  if (r.topic.empty() || r.group.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("txn ", r.txn, ": topic and group are required"));
  }
  if (r.done_ms != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("txn ", r.txn, ": a new COMMIT record has done_ms 0"));
  }
  return absl::OkStatus();
}

}  // namespace

void TxnStore::SubmitCommit(TxnRecord record, std::function<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&queue_mu_);
    if (!stopping_) {
      queue_.commits.push_back(PendingCommit{std::move(record), std::move(done)});
      return;
    }
  }
  done(absl::FailedPreconditionError(
      absl::StrCat("txn store ", path_, ": closed; COMMIT of txn ", record.txn, " not written")));
}

void TxnStore::SubmitDone(std::string txn, std::function<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&queue_mu_);
    if (!stopping_) {
      queue_.dones.push_back(PendingDone{std::move(txn), std::move(done)});
      return;
    }
  }
  done(absl::FailedPreconditionError(
      absl::StrCat("txn store ", path_, ": closed; done of txn ", txn, " not written")));
}

absl::Status TxnStore::RecordCommit(TxnRecord record) {
  absl::Notification written;
  absl::Status result;
  SubmitCommit(std::move(record), [&](absl::Status s) {
    result = std::move(s);
    written.Notify();
  });
  written.WaitForNotification();
  return result;
}

absl::Status TxnStore::RecordDone(std::string txn) {
  absl::Notification written;
  absl::Status result;
  SubmitDone(std::move(txn), [&](absl::Status s) {
    result = std::move(s);
    written.Notify();
  });
  written.WaitForNotification();
  return result;
}

absl::Status TxnStore::RecordAttempt(std::string_view txn) {
  absl::MutexLock lock(&queue_mu_);
  if (stopping_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "txn store ", path_, ": closed; attempt of txn ", std::string(txn), " not counted"));
  }
  ++queue_.attempts[std::string(txn)];
  return absl::OkStatus();
}

void TxnStore::Close() {
  absl::MutexLock close_lock(&close_mu_);
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

void TxnStore::WriterLoop() {
  while (true) {
    Batch batch;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return stopping_ || !queue_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (!stopping_ && !queue_.urgent(options_.max_batch) &&
          options_.bookkeeping_delay > absl::ZeroDuration()) {
        // Only bookkeeping: let it ride with the next decision's fsync.
        auto urgent = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
          return stopping_ || queue_.urgent(options_.max_batch);
        };
        queue_mu_.AwaitWithTimeout(absl::Condition(&urgent), options_.bookkeeping_delay);
      }
      if (queue_.empty()) break;  // stopping, and everything is drained
      if (queue_.commits.size() <= options_.max_batch) {
        batch.commits = std::move(queue_.commits);
        queue_.commits.clear();
      } else {
        auto first = queue_.commits.begin();
        auto last = first + static_cast<std::ptrdiff_t>(options_.max_batch);
        batch.commits.assign(std::make_move_iterator(first), std::make_move_iterator(last));
        queue_.commits.erase(first, last);
      }
      batch.dones = std::move(queue_.dones);
      queue_.dones.clear();
      batch.attempts = std::move(queue_.attempts);
      queue_.attempts.clear();
    }

    std::vector<absl::Status> results;
    absl::Status written;
    {
      absl::MutexLock lock(&write_mu_);
      written = WriteBatch(batch, results);
    }
    if (written.ok()) {
      absl::MutexLock lock(&queue_mu_);
      ++stats_.commits;
      for (size_t i = 0; i < batch.commits.size(); ++i) {
        if (results[i].ok()) ++stats_.decisions;
      }
      for (size_t i = 0; i < batch.dones.size(); ++i) {
        if (results[batch.commits.size() + i].ok()) ++stats_.done_marked;
      }
      stats_.removed += batch.removed;
    }
    // Durable (or failed as a whole): now, and only now, tell the callers.
    for (size_t i = 0; i < batch.commits.size(); ++i) {
      batch.commits[i].done(written.ok() ? results[i] : written);
    }
    for (size_t i = 0; i < batch.dones.size(); ++i) {
      batch.dones[i].done(written.ok() ? results[batch.commits.size() + i] : written);
    }
  }
  absl::MutexLock lock(&write_mu_);
  (void)RemoveDoneLocked();
}

absl::Status TxnStore::WriteBatch(Batch& batch, std::vector<absl::Status>& results) {
  results.assign(batch.commits.size() + batch.dones.size(), absl::OkStatus());
  sqlite::Database* db = write_db_.get();
  auto write = [&]() -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db));
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement insert_txn,
        db->PrepareCached(
            "INSERT INTO txns (txn, topic, grp, participant, epoch, generation, state, "
            "message_count, created_ms, decided_ms, done_ms, attempts, reason, "
            "broker_deleted) VALUES (?, ?, ?, ?, ?, ?, 3, ?, ?, ?, 0, ?, ?, ?)"));
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement insert_run,
        db->PrepareCached("INSERT INTO txn_runs (txn, seq, partition_id, first_offset, count) "
                          "VALUES (?, ?, ?, ?, ?)"));
    const int64_t now = options_.clock->NowMs();
    absl::flat_hash_set<std::string> seen;
    for (size_t i = 0; i < batch.commits.size(); ++i) {
      TxnRecord& r = batch.commits[i].record;
      absl::Status valid = ValidateCommit(r);
      if (valid.ok() && !seen.insert(r.txn).second) {
        valid = absl::AlreadyExistsError(
            absl::StrCat("txn ", r.txn, ": submitted twice in one group commit"));
      }
      if (!valid.ok()) {
        results[i] =
            absl::Status(valid.code(), absl::StrCat("txn store ", path_, ": ", valid.message()));
        continue;
      }
      if (r.decided_ms == 0) r.decided_ms = now;
      // A savepoint per record: one bad record (a duplicate id) is undone
      // alone and fails alone; the others of the batch still commit.
      ONCE_RETURN_IF_ERROR(db->ExecCached("SAVEPOINT one_commit"));
      auto insert = [&]() -> absl::Status {
        ONCE_RETURN_IF_ERROR(insert_txn.Reset());
        ONCE_RETURN_IF_ERROR(insert_txn.BindText(1, r.txn));
        ONCE_RETURN_IF_ERROR(insert_txn.BindText(2, r.topic));
        ONCE_RETURN_IF_ERROR(insert_txn.BindText(3, r.group));
        ONCE_RETURN_IF_ERROR(insert_txn.BindText(4, r.participant));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(5, static_cast<int64_t>(r.epoch)));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(6, static_cast<int64_t>(r.generation)));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(7, static_cast<int64_t>(r.messages.size())));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(8, r.created_ms));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(9, r.decided_ms));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(10, r.attempts));
        ONCE_RETURN_IF_ERROR(insert_txn.BindText(11, r.reason));
        ONCE_RETURN_IF_ERROR(insert_txn.BindInt64(12, r.broker_deleted ? 1 : 0));
        ONCE_RETURN_IF_ERROR(insert_txn.Run());
        int64_t seq = 0;
        for (const TxnMessageRun& run : ToRuns(r.messages)) {
          ONCE_RETURN_IF_ERROR(insert_run.Reset());
          ONCE_RETURN_IF_ERROR(insert_run.BindText(1, r.txn));
          ONCE_RETURN_IF_ERROR(insert_run.BindInt64(2, seq++));
          ONCE_RETURN_IF_ERROR(insert_run.BindInt64(3, run.partition));
          ONCE_RETURN_IF_ERROR(insert_run.BindInt64(4, static_cast<int64_t>(run.first_offset)));
          ONCE_RETURN_IF_ERROR(insert_run.BindInt64(5, static_cast<int64_t>(run.count)));
          ONCE_RETURN_IF_ERROR(insert_run.Run());
        }
        return absl::OkStatus();
      };
      absl::Status inserted = insert();
      if (!inserted.ok()) {
        ONCE_RETURN_IF_ERROR(db->ExecCached("ROLLBACK TO one_commit"));
        if (inserted.code() == absl::StatusCode::kAlreadyExists) {
          inserted = absl::AlreadyExistsError(
              absl::StrCat("txn store ", path_, ": txn ", r.txn, " already has a record"));
        } else if (inserted.code() != absl::StatusCode::kFailedPrecondition &&
                   inserted.code() != absl::StatusCode::kInvalidArgument) {
          // Not a problem of this record (I/O, full disk): fail the batch.
          return inserted;
        }
        results[i] = inserted;
      }
      ONCE_RETURN_IF_ERROR(db->ExecCached("RELEASE one_commit"));
    }

    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement mark_done,
        db->PrepareCached("UPDATE txns SET state = 4, done_ms = ? WHERE txn = ? AND state = 3"));
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement exists,
                          db->PrepareCached("SELECT state FROM txns WHERE txn = ?"));
    size_t newly_done = 0;  // counted into done_unremoved_ once committed
    for (size_t i = 0; i < batch.dones.size(); ++i) {
      const std::string& id = batch.dones[i].txn;
      ONCE_RETURN_IF_ERROR(mark_done.Reset());
      ONCE_RETURN_IF_ERROR(mark_done.BindInt64(1, now));
      ONCE_RETURN_IF_ERROR(mark_done.BindText(2, id));
      ONCE_RETURN_IF_ERROR(mark_done.Run());
      if (db->Changes() > 0) {
        ++newly_done;
        continue;
      }
      ONCE_RETURN_IF_ERROR(exists.Reset());
      ONCE_RETURN_IF_ERROR(exists.BindText(1, id));
      ONCE_ASSIGN_OR_RETURN(bool found, exists.Step());
      ONCE_RETURN_IF_ERROR(exists.Reset());
      // Found means already done: done twice is fine.
      if (!found) {
        results[batch.commits.size() + i] = absl::NotFoundError(
            absl::StrCat("txn store ", path_, ": no record of txn ", id, " to mark done"));
      }
    }

    const size_t done_now = done_unremoved_ + newly_done;
    ONCE_ASSIGN_OR_RETURN(batch.removed, RemoveDoneChunkLocked(done_now, newly_done));

    if (!batch.attempts.empty()) {
      ONCE_ASSIGN_OR_RETURN(
          sqlite::Statement add_attempts,
          db->PrepareCached("UPDATE txns SET attempts = attempts + ? WHERE txn = ?"));
      for (const auto& [id, count] : batch.attempts) {
        ONCE_RETURN_IF_ERROR(add_attempts.Reset());
        ONCE_RETURN_IF_ERROR(add_attempts.BindInt64(1, count));
        ONCE_RETURN_IF_ERROR(add_attempts.BindText(2, id));
        ONCE_RETURN_IF_ERROR(add_attempts.Run());
      }
    }
    ONCE_RETURN_IF_ERROR(txn.Commit());
    done_unremoved_ = done_now - std::min(done_now, batch.removed);
    return absl::OkStatus();
  };
  absl::Status written = write();
  if (!written.ok()) {
    batch.removed = 0;  // rolled back with the rest
    return absl::Status(
        written.code(),
        absl::StrCat("txn store: group commit of ", batch.commits.size(), " decisions and ",
                     batch.dones.size(), " done markings: ", written.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TxnStore::RemoveDoneChunkLocked(size_t done, size_t marked) {
  if (done <= options_.remove_batch) return 0;
  const size_t limit = std::min(done - options_.remove_batch, marked + options_.remove_chunk);
  sqlite::Database* db = write_db_.get();
  ONCE_RETURN_IF_ERROR(db->ExecCached("SAVEPOINT remove_done"));
  auto remove = [&]() -> absl::StatusOr<size_t> {
    // Oldest decisions first (txns_by_state); runs go by cascade.
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement remove_oldest,
        db->PrepareCached("DELETE FROM txns WHERE txn IN (SELECT txn FROM txns WHERE state = 4 "
                          "ORDER BY decided_ms LIMIT ?)"));
    ONCE_RETURN_IF_ERROR(remove_oldest.Reset());
    ONCE_RETURN_IF_ERROR(remove_oldest.BindInt64(1, static_cast<int64_t>(limit)));
    ONCE_RETURN_IF_ERROR(remove_oldest.Run());
    return static_cast<size_t>(db->Changes());
  };
  absl::StatusOr<size_t> removed = remove();
  if (!removed.ok()) {
    ONCE_RETURN_IF_ERROR(db->ExecCached("ROLLBACK TO remove_done"));
    spdlog::warn("txn store {}: removing done records: {}; retried with the next group commit",
                 path_, removed.status().ToString());
    removed = 0;
  }
  ONCE_RETURN_IF_ERROR(db->ExecCached("RELEASE remove_done"));
  return removed;
}

}  // namespace once::coordinator
