// TxnStore: opening, the epoch, synchronous writes and reads. The writer
// thread and the group commit are in txn_store_writer.cc.
#include "coordinator/txn_store.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "schema/coordinator_sql.h"
#include "schema/status_macros.h"

namespace once::coordinator {
namespace {

constexpr char kRecordColumns[] =
    "SELECT txn, topic, grp, participant, epoch, generation, state, message_count, created_ms, "
    "decided_ms, done_ms, attempts, reason, broker_deleted FROM txns";

// Reads the record at the current row of a kRecordColumns query, then its
// messages with `messages` (bound to the txn, reset after use).
absl::StatusOr<TxnRecord> ReadRecord(sqlite::Statement& row, sqlite::Statement& messages,
                                     const std::string& path) {
  TxnRecord r;
  r.txn = std::string(row.ColumnText(0));
  r.topic = std::string(row.ColumnText(1));
  r.group = std::string(row.ColumnText(2));
  r.participant = std::string(row.ColumnText(3));
  r.epoch = static_cast<uint64_t>(row.ColumnInt64(4));
  r.generation = static_cast<uint64_t>(row.ColumnInt64(5));
  std::optional<TxnState> state = TxnStateFromNumber(row.ColumnInt64(6));
  if (!state.has_value() || !IsDurable(*state)) {
    return absl::DataLossError(absl::StrCat("txn store ", path, ": txn ", r.txn,
                                            " has state number ", row.ColumnInt64(6),
                                            ", which is never stored"));
  }
  r.state = *state;
  const int64_t message_count = row.ColumnInt64(7);
  r.created_ms = row.ColumnInt64(8);
  r.decided_ms = row.ColumnInt64(9);
  r.done_ms = row.ColumnInt64(10);
  r.attempts = static_cast<uint32_t>(row.ColumnInt64(11));
  r.reason = std::string(row.ColumnText(12));
  r.broker_deleted = row.ColumnInt64(13) != 0;

  ONCE_RETURN_IF_ERROR(messages.Reset());
  ONCE_RETURN_IF_ERROR(messages.BindText(1, r.txn));
  while (true) {
    ONCE_ASSIGN_OR_RETURN(bool more, messages.Step());
    if (!more) break;
    const int64_t count = messages.ColumnInt64(2);
    // Checked before expanding: a damaged count must not allocate wildly.
    if (count < 1 || count > message_count - static_cast<int64_t>(r.messages.size())) {
      return absl::DataLossError(absl::StrCat("txn store ", path, ": txn ", r.txn, " has a run of ",
                                              count, " messages beyond its record's message_count ",
                                              message_count));
    }
    const uint32_t partition = static_cast<uint32_t>(messages.ColumnInt64(0));
    const uint64_t first = static_cast<uint64_t>(messages.ColumnInt64(1));
    for (int64_t i = 0; i < count; ++i) {
      r.messages.push_back(TxnMessageRef{partition, first + static_cast<uint64_t>(i)});
    }
  }
  ONCE_RETURN_IF_ERROR(messages.Reset());
  if (static_cast<int64_t>(r.messages.size()) != message_count) {
    return absl::DataLossError(
        absl::StrCat("txn store ", path, ": txn ", r.txn, " has ", r.messages.size(),
                     " messages in its rows, its record says ", message_count));
  }
  return r;
}

// Runs `query` (a kRecordColumns query, parameters already bound) and
// reads every row.
absl::StatusOr<std::vector<TxnRecord>> ReadRecords(sqlite::Database& db, sqlite::Statement& query) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement messages,
      // A txn's batch is in txn_runs, or (decided by schema version 1) in
      // txn_messages: never in both.
      db.Prepare("SELECT partition_id, first_offset, count FROM ("
                 "SELECT seq, partition_id, first_offset, count FROM txn_runs WHERE txn = ?1 "
                 "UNION ALL "
                 "SELECT seq, partition_id, msg_offset, 1 FROM txn_messages WHERE txn = ?1) "
                 "ORDER BY seq"));
  std::vector<TxnRecord> out;
  while (true) {
    ONCE_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    ONCE_ASSIGN_OR_RETURN(TxnRecord r, ReadRecord(query, messages, db.path()));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

std::vector<TxnMessageRun> ToRuns(const std::vector<TxnMessageRef>& messages) {
  std::vector<TxnMessageRun> runs;
  for (const TxnMessageRef& m : messages) {
    if (!runs.empty() && runs.back().partition == m.partition &&
        runs.back().first_offset + runs.back().count == m.offset) {
      ++runs.back().count;
    } else {
      runs.push_back({m.partition, m.offset, 1});
    }
  }
  return runs;
}

// Abseil 20220623 as packaged has its own string_view; the API speaks std.
static absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status TxnStore::Prefixed(const absl::Status& status, std::string_view what) const {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("txn store: ", Sv(what), ": ", status.message()));
}

int TxnStore::LatestSchemaVersion() {
  absl::StatusOr<std::vector<sqlite::Migration>> migrations =
      sqlite::ParseMigrations(schema::CoordinatorSql(), "schema/coordinator.sql");
  return migrations.ok() ? static_cast<int>(migrations->size()) : 0;
}

absl::StatusOr<std::unique_ptr<TxnStore>> TxnStore::Open(const std::string& path,
                                                         TxnStoreOptions options) {
  if (path.empty() || path == ":memory:") {
    return absl::InvalidArgumentError(
        absl::StrCat("txn store: path \"", path, "\": a file path is required"));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("txn store ", path, ": options.clock is null"));
  }
  if (options.max_batch == 0) options.max_batch = 1;
  if (options.remove_chunk == 0) options.remove_chunk = 1;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat("txn store ", path, ": cannot stat: ", std::strerror(errno)));
    }
    if (!options.create_if_missing) {
      return absl::NotFoundError(absl::StrCat("txn store ", path, ": no such file"));
    }
  } else if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("txn store ", path, ": not a regular file"));
  }

  sqlite::DatabaseOptions db_options;
  db_options.synchronous =
      options.synchronous_full ? sqlite::Synchronous::kFull : sqlite::Synchronous::kNormal;
  db_options.create_if_missing = options.create_if_missing;
  auto prefix = [&](const absl::Status& s, std::string_view what) {
    return absl::Status(s.code(), absl::StrCat("txn store: ", Sv(what), ": ", s.message()));
  };
  absl::StatusOr<std::unique_ptr<sqlite::Database>> write_db =
      sqlite::Database::Open(path, db_options);
  if (!write_db.ok()) return prefix(write_db.status(), "opening");
  ONCE_ASSIGN_OR_RETURN(
      std::vector<sqlite::Migration> migrations,
      sqlite::ParseMigrations(schema::CoordinatorSql(), "schema/coordinator.sql"));
  absl::StatusOr<int> version = sqlite::Migrate(write_db->get(), migrations);
  if (!version.ok()) return prefix(version.status(), "migrating the schema");
  absl::StatusOr<int64_t> epoch =
      (*write_db)->QueryInt64("SELECT value FROM meta WHERE key = 'epoch'");
  if (!epoch.ok()) return prefix(epoch.status(), "reading the epoch");
  if (*epoch < 0) {
    return absl::DataLossError(absl::StrCat("txn store ", path, ": epoch ", *epoch, " < 0"));
  }
  // Done records a crash left behind count towards the next removal.
  absl::StatusOr<int64_t> done =
      (*write_db)->QueryInt64("SELECT count(*) FROM txns WHERE state = 4");
  if (!done.ok()) return prefix(done.status(), "counting done records");
  db_options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<sqlite::Database>> read_db =
      sqlite::Database::Open(path, db_options);
  if (!read_db.ok()) return prefix(read_db.status(), "opening the read connection");
  return std::unique_ptr<TxnStore>(new TxnStore(path, options, std::move(*write_db),
                                                std::move(*read_db), static_cast<uint64_t>(*epoch),
                                                static_cast<size_t>(*done)));
}

TxnStore::TxnStore(std::string path, TxnStoreOptions options,
                   std::unique_ptr<sqlite::Database> write_db,
                   std::unique_ptr<sqlite::Database> read_db, uint64_t epoch, size_t done_unremoved)
    : path_(std::move(path)),
      options_(options),
      epoch_(epoch),
      write_db_(std::move(write_db)),
      done_unremoved_(done_unremoved),
      read_db_(std::move(read_db)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

TxnStore::~TxnStore() { Close(); }

absl::StatusOr<uint64_t> TxnStore::BumpEpoch() {
  absl::MutexLock lock(&write_mu_);
  auto bump = [&]() -> absl::StatusOr<uint64_t> {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(write_db_.get()));
    ONCE_RETURN_IF_ERROR(write_db_->Exec("UPDATE meta SET value = value + 1 WHERE key = 'epoch'"));
    ONCE_ASSIGN_OR_RETURN(int64_t epoch,
                          write_db_->QueryInt64("SELECT value FROM meta WHERE key = 'epoch'"));
    ONCE_RETURN_IF_ERROR(txn.Commit());
    return static_cast<uint64_t>(epoch);
  };
  absl::StatusOr<uint64_t> epoch = bump();
  if (!epoch.ok()) return Prefixed(epoch.status(), "bumping the epoch");
  epoch_.store(*epoch, std::memory_order_release);
  return *epoch;
}

absl::Status TxnStore::MarkBrokerDeleted(std::string_view txn) {
  return MarkBrokerDeletedBatch({std::string(txn)});
}

absl::Status TxnStore::MarkBrokerDeletedBatch(const std::vector<std::string>& txns) {
  absl::MutexLock lock(&write_mu_);
  auto mark = [&]() -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(write_db_.get()));
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement update,
        write_db_->PrepareCached("UPDATE txns SET broker_deleted = 1 WHERE txn = ?"));
    for (const std::string& id : txns) {
      ONCE_RETURN_IF_ERROR(update.Reset());
      ONCE_RETURN_IF_ERROR(update.BindText(1, id));
      ONCE_RETURN_IF_ERROR(update.Run());
      if (write_db_->Changes() == 0) {
        return absl::NotFoundError(absl::StrCat("no record of txn ", id, " in ", path_));
      }
    }
    return txn.Commit();
  };
  return Prefixed(mark(),
                  txns.size() == 1
                      ? absl::StrCat("marking txn ", txns[0], " deleted in the broker")
                      : absl::StrCat("marking ", txns.size(), " txns deleted in the broker"));
}

absl::StatusOr<std::vector<TxnRecord>> TxnStore::LoadUnfinished() {
  return List(TxnState::kCommitted, 0);
}

absl::StatusOr<std::optional<TxnRecord>> TxnStore::Find(std::string_view txn) {
  absl::MutexLock lock(&read_mu_);
  auto find = [&]() -> absl::StatusOr<std::vector<TxnRecord>> {
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Transaction snapshot,
        sqlite::Transaction::Begin(read_db_.get(), sqlite::TransactionMode::kDeferred));
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement query,
                          read_db_->Prepare(absl::StrCat(kRecordColumns, " WHERE txn = ?")));
    ONCE_RETURN_IF_ERROR(query.BindText(1, Sv(txn)));
    return ReadRecords(*read_db_, query);
  };
  absl::StatusOr<std::vector<TxnRecord>> found = find();
  if (!found.ok()) return Prefixed(found.status(), absl::StrCat("finding txn ", Sv(txn)));
  if (found->empty()) return std::optional<TxnRecord>();
  return std::optional<TxnRecord>(std::move(found->front()));
}

absl::StatusOr<std::vector<TxnRecord>> TxnStore::List(std::optional<TxnState> state, size_t limit) {
  absl::MutexLock lock(&read_mu_);
  auto list = [&]() -> absl::StatusOr<std::vector<TxnRecord>> {
    // One read transaction: a consistent snapshot of records and messages.
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Transaction snapshot,
        sqlite::Transaction::Begin(read_db_.get(), sqlite::TransactionMode::kDeferred));
    std::string sql = kRecordColumns;
    if (state.has_value()) absl::StrAppend(&sql, " WHERE state = ?1");
    absl::StrAppend(&sql, " ORDER BY decided_ms, txn");
    if (limit > 0) absl::StrAppend(&sql, " LIMIT ", limit);
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement query, read_db_->Prepare(sql));
    if (state.has_value()) ONCE_RETURN_IF_ERROR(query.BindInt64(1, static_cast<int>(*state)));
    return ReadRecords(*read_db_, query);
  };
  absl::StatusOr<std::vector<TxnRecord>> out = list();
  if (!out.ok()) {
    return Prefixed(
        out.status(),
        absl::StrCat("listing ", state ? Sv(TxnStateName(*state)) : absl::string_view("all"),
                     " txns"));
  }
  return out;
}

absl::Status TxnStore::Audit(std::string_view txn, std::string_view action, std::string_view reason,
                             std::string_view actor) {
  AuditEntry e;
  e.txn = std::string(txn);
  e.action = std::string(action);
  e.reason = std::string(reason);
  e.actor = std::string(actor);
  return AuditBatch({e});
}

absl::Status TxnStore::AuditBatch(const std::vector<AuditEntry>& entries) {
  const int64_t now = options_.clock->NowMs();
  absl::MutexLock lock(&write_mu_);
  auto audit = [&]() -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(write_db_.get()));
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement insert,
        write_db_->Prepare(
            "INSERT INTO audit (at_ms, txn, action, reason, actor) VALUES (?, ?, ?, ?, ?)"));
    for (const AuditEntry& e : entries) {
      ONCE_RETURN_IF_ERROR(insert.Reset());
      ONCE_RETURN_IF_ERROR(insert.BindInt64(1, now));
      ONCE_RETURN_IF_ERROR(insert.BindText(2, e.txn));
      ONCE_RETURN_IF_ERROR(insert.BindText(3, e.action));
      ONCE_RETURN_IF_ERROR(insert.BindText(4, e.reason));
      ONCE_RETURN_IF_ERROR(insert.BindText(5, e.actor));
      ONCE_RETURN_IF_ERROR(insert.Run());
    }
    return txn.Commit();
  };
  return Prefixed(audit(),
                  entries.size() == 1
                      ? absl::StrCat("auditing ", entries[0].action, " of txn ", entries[0].txn)
                      : absl::StrCat("auditing ", entries.size(), " entries"));
}

absl::StatusOr<std::vector<AuditEntry>> TxnStore::AuditLog(std::optional<std::string> txn) {
  absl::MutexLock lock(&read_mu_);
  auto read = [&]() -> absl::StatusOr<std::vector<AuditEntry>> {
    std::string sql = "SELECT id, at_ms, txn, action, reason, actor FROM audit";
    if (txn.has_value()) absl::StrAppend(&sql, " WHERE txn = ?1");
    absl::StrAppend(&sql, " ORDER BY id");
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement query, read_db_->Prepare(sql));
    if (txn.has_value()) ONCE_RETURN_IF_ERROR(query.BindText(1, *txn));
    std::vector<AuditEntry> out;
    while (true) {
      ONCE_ASSIGN_OR_RETURN(bool row, query.Step());
      if (!row) break;
      out.push_back(AuditEntry{query.ColumnInt64(0), query.ColumnInt64(1),
                               std::string(query.ColumnText(2)), std::string(query.ColumnText(3)),
                               std::string(query.ColumnText(4)), std::string(query.ColumnText(5))});
    }
    return out;
  };
  absl::StatusOr<std::vector<AuditEntry>> out = read();
  if (!out.ok()) return Prefixed(out.status(), "reading the audit log");
  return out;
}

absl::StatusOr<size_t> TxnStore::RemoveDone() {
  absl::MutexLock lock(&write_mu_);
  return RemoveDoneLocked();
}

absl::StatusOr<size_t> TxnStore::RemoveDoneLocked() {
  auto remove = [&]() -> absl::StatusOr<size_t> {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(write_db_.get()));
    // txn_runs and txn_messages rows go with them (ON DELETE CASCADE).
    ONCE_RETURN_IF_ERROR(write_db_->ExecCached("DELETE FROM txns WHERE state = 4"));
    const size_t removed = static_cast<size_t>(write_db_->Changes());
    ONCE_RETURN_IF_ERROR(txn.Commit());
    return removed;
  };
  absl::StatusOr<size_t> removed = remove();
  if (!removed.ok()) return Prefixed(removed.status(), "removing done txns");
  done_unremoved_ = 0;
  absl::MutexLock stats_lock(&queue_mu_);
  stats_.removed += *removed;
  return removed;
}

TxnStore::Stats TxnStore::stats() const {
  absl::MutexLock lock(&queue_mu_);
  return stats_;
}

}  // namespace once::coordinator
