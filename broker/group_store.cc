#include "broker/group_store.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/group_token.h"
#include "schema/groups_sql.h"
#include "schema/status_macros.h"

namespace once::broker {
namespace {

// Binds `values` to parameters 1..n.
template <typename... Ts>
absl::Status BindAll(sqlite::Statement& stmt, Ts... values) {
  int index = 0;
  absl::Status status;
  auto bind = [&](int64_t v) {
    if (status.ok()) status = stmt.BindInt64(++index, v);
  };
  (bind(static_cast<int64_t>(values)), ...);
  return status;
}

// Runs a cached statement with integer parameters, leaving it reset.
template <typename... Ts>
absl::Status RunWith(sqlite::Statement& stmt, Ts... values) {
  ONCE_RETURN_IF_ERROR(stmt.Reset());
  ONCE_RETURN_IF_ERROR(BindAll(stmt, values...));
  absl::Status s = stmt.Run();
  (void)stmt.Reset();
  return s;
}

// Runs a cached query with integer parameters: whether it returns a row.
// Leaves it reset.
template <typename... Ts>
absl::StatusOr<bool> AnyRowWith(sqlite::Statement& stmt, Ts... values) {
  ONCE_RETURN_IF_ERROR(stmt.Reset());
  ONCE_RETURN_IF_ERROR(BindAll(stmt, values...));
  absl::StatusOr<bool> row = stmt.Step();
  (void)stmt.Reset();
  return row;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GroupStore>> GroupStore::Open(
    const std::string& path, const sqlite::DatabaseOptions& options,
    const GroupStoreOptions& store_options) {
  if (store_options.min_commit_interval < absl::ZeroDuration() ||
      store_options.min_commit_interval > absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("group store ", path, ": min_commit_interval ",
                     absl::FormatDuration(store_options.min_commit_interval), " is outside 0..1s"));
  }
  ONCE_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> db,
                        sqlite::Database::Open(path, options));
  std::unique_ptr<GroupStore> store(new GroupStore(path, std::move(db), store_options));
  ONCE_RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status GroupStore::Init() {
  absl::MutexLock lock(&db_mu_);
  ONCE_ASSIGN_OR_RETURN(std::vector<sqlite::Migration> migrations,
                        sqlite::ParseMigrations(schema::GroupsSql(), "schema/groups.sql"));
  ONCE_RETURN_IF_ERROR(sqlite::Migrate(db_.get(), migrations).status());

  ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db_.get()));
  {
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement get,
                          db_->Prepare("SELECT value FROM meta WHERE key = 'token_secret'"));
    ONCE_ASSIGN_OR_RETURN(bool row, get.Step());
    if (row) {
      token_secret_ = std::string(get.ColumnBlob(0));
      if (token_secret_.size() != kDeliveryTokenSecretBytes) {
        return absl::DataLossError(absl::StrCat("group store ", path_, ": token_secret has ",
                                                token_secret_.size(), " bytes, expected ",
                                                kDeliveryTokenSecretBytes));
      }
    } else {
      token_secret_ = DeliveryTokenCodec::NewSecret();
      ONCE_ASSIGN_OR_RETURN(
          sqlite::Statement put,
          db_->Prepare("INSERT INTO meta (key, value) VALUES ('token_secret', ?)"));
      ONCE_RETURN_IF_ERROR(put.BindBlob(1, token_secret_));
      ONCE_RETURN_IF_ERROR(put.Run());
    }
  }
  {
    ONCE_RETURN_IF_ERROR(
        db_->Exec("INSERT INTO meta (key, value) VALUES ('boot_epoch', 1) "
                  "ON CONFLICT (key) DO UPDATE SET value = value + 1"));
    ONCE_ASSIGN_OR_RETURN(int64_t epoch,
                          db_->QueryInt64("SELECT value FROM meta WHERE key = 'boot_epoch'"));
    if (epoch < 1 || epoch > UINT32_MAX) {
      return absl::DataLossError(
          absl::StrCat("group store ", path_, ": boot_epoch ", epoch, " is out of range"));
    }
    boot_epoch_ = static_cast<uint32_t>(epoch);
  }
  ONCE_RETURN_IF_ERROR(txn.Commit());
  return PrepareStatements();
}

absl::Status GroupStore::PrepareStatements() {
  ONCE_ASSIGN_OR_RETURN(
      upsert_partition_,
      db_->Prepare("INSERT INTO partitions (group_id, partition_id, done_floor, dispatched, "
                   "acked, dead_lettered) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                   "ON CONFLICT (group_id, partition_id) DO UPDATE SET "
                   "done_floor = max(done_floor, excluded.done_floor), "
                   "dispatched = max(dispatched, excluded.dispatched), "
                   "acked = acked + excluded.acked, "
                   "dead_lettered = dead_lettered + excluded.dead_lettered"));
  ONCE_ASSIGN_OR_RETURN(
      reset_partition_,
      db_->Prepare("INSERT INTO partitions (group_id, partition_id, done_floor, dispatched) "
                   "VALUES (?1, ?2, ?3, ?3) ON CONFLICT (group_id, partition_id) DO UPDATE SET "
                   "done_floor = excluded.done_floor, dispatched = excluded.dispatched"));
  ONCE_ASSIGN_OR_RETURN(
      delete_ranges_,
      db_->Prepare("DELETE FROM acked_ranges WHERE group_id = ?1 AND partition_id = ?2"));
  ONCE_ASSIGN_OR_RETURN(delete_ranges_below_,
                        db_->Prepare("DELETE FROM acked_ranges WHERE group_id = ?1 AND "
                                     "partition_id = ?2 AND end_offset <= ?3"));
  ONCE_ASSIGN_OR_RETURN(
      delete_counts_,
      db_->Prepare("DELETE FROM delivery_counts WHERE group_id = ?1 AND partition_id = ?2"));
  ONCE_ASSIGN_OR_RETURN(delete_counts_below_,
                        db_->Prepare("DELETE FROM delivery_counts WHERE group_id = ?1 AND "
                                     "partition_id = ?2 AND msg_offset < ?3"));
  // The same conditions as the two deletes above.
  ONCE_ASSIGN_OR_RETURN(any_ranges_below_,
                        db_->Prepare("SELECT 1 FROM acked_ranges WHERE group_id = ?1 AND "
                                     "partition_id = ?2 AND end_offset <= ?3 LIMIT 1"));
  ONCE_ASSIGN_OR_RETURN(any_counts_below_,
                        db_->Prepare("SELECT 1 FROM delivery_counts WHERE group_id = ?1 AND "
                                     "partition_id = ?2 AND msg_offset < ?3 LIMIT 1"));
  ONCE_ASSIGN_OR_RETURN(
      insert_range_,
      db_->Prepare("INSERT INTO acked_ranges (group_id, partition_id, begin_offset, end_offset) "
                   "VALUES (?1, ?2, ?3, ?4) "
                   "ON CONFLICT (group_id, partition_id, begin_offset) DO UPDATE SET "
                   "end_offset = max(end_offset, excluded.end_offset)"));
  ONCE_ASSIGN_OR_RETURN(
      upsert_count_,
      db_->Prepare("INSERT INTO delivery_counts (group_id, partition_id, msg_offset, deliveries) "
                   "VALUES (?1, ?2, ?3, ?4) "
                   "ON CONFLICT (group_id, partition_id, msg_offset) DO UPDATE SET "
                   "deliveries = excluded.deliveries"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredGroup>> GroupStore::LoadGroups() {
  absl::MutexLock lock(&db_mu_);
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement q,
      db_->Prepare("SELECT group_id, topic, name, mode, guarantee, ack_timeout_ms, "
                   "max_deliveries, dead_letter_topic, prefetch, start_kind, start_value, "
                   "session_timeout_ms, backoff_base_ms, backoff_max_ms, created_ms, "
                   "txn_batch_max, txn_linger_ms FROM groups ORDER BY group_id"));
  std::vector<StoredGroup> groups;
  while (true) {
    ONCE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    StoredGroup g;
    g.group_id = q.ColumnInt64(0);
    g.topic = std::string(q.ColumnText(1));
    g.name = std::string(q.ColumnText(2));
    GroupConfig& c = g.config;
    c.mode = static_cast<GroupMode>(q.ColumnInt64(3));
    c.guarantee = static_cast<Guarantee>(q.ColumnInt64(4));
    c.ack_timeout_ms = q.ColumnInt64(5);
    c.max_deliveries = static_cast<int>(q.ColumnInt64(6));
    c.dead_letter_topic = std::string(q.ColumnText(7));
    c.prefetch = static_cast<int>(q.ColumnInt64(8));
    c.start.kind = static_cast<PositionKind>(q.ColumnInt64(9));
    c.start.value = q.ColumnInt64(10);
    c.session_timeout_ms = q.ColumnInt64(11);
    c.backoff_base_ms = q.ColumnInt64(12);
    c.backoff_max_ms = q.ColumnInt64(13);
    g.created_ms = q.ColumnInt64(14);
    // NULL: unset (schema/groups.sql, migration 2). A stored value beyond
    // int is clamped into range so that validation below reports it.
    if (!q.ColumnIsNull(15)) {
      c.txn_batch_max = static_cast<int>(std::clamp<int64_t>(q.ColumnInt64(15), -1, INT32_MAX));
    }
    if (!q.ColumnIsNull(16)) c.txn_linger_ms = q.ColumnInt64(16);
    if (absl::Status s = ValidateGroupConfig(c, g.topic); !s.ok()) {
      return absl::DataLossError(absl::StrCat("group store ", path_, ": group \"", g.name,
                                              "\" of topic \"", g.topic,
                                              "\" has invalid stored settings: ", s.message()));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

absl::StatusOr<std::vector<StoredPartition>> GroupStore::LoadPartitions(int64_t group_id) {
  absl::MutexLock lock(&db_mu_);
  std::vector<StoredPartition> parts;
  {
    ONCE_ASSIGN_OR_RETURN(
        sqlite::Statement q,
        db_->Prepare("SELECT partition_id, done_floor, dispatched, acked, dead_lettered "
                     "FROM partitions WHERE group_id = ? ORDER BY partition_id"));
    ONCE_RETURN_IF_ERROR(q.BindInt64(1, group_id));
    while (true) {
      ONCE_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      StoredPartition p;
      p.partition = static_cast<int>(q.ColumnInt64(0));
      p.done_floor = q.ColumnInt64(1);
      p.dispatched = q.ColumnInt64(2);
      p.acked = q.ColumnInt64(3);
      p.dead_lettered = q.ColumnInt64(4);
      if (p.partition < 0 || p.done_floor < 0 || p.dispatched < 0) {
        return absl::DataLossError(absl::StrCat("group store ", path_, ": group ", group_id,
                                                " has a negative partition, floor or "
                                                "dispatched offset in partition ",
                                                p.partition));
      }
      parts.push_back(std::move(p));
    }
  }
  auto find = [&](int partition) -> StoredPartition* {
    for (StoredPartition& p : parts) {
      if (p.partition == partition) return &p;
    }
    return nullptr;
  };
  {
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement q,
                          db_->Prepare("SELECT partition_id, begin_offset, end_offset FROM "
                                       "acked_ranges WHERE group_id = ? ORDER BY partition_id, "
                                       "begin_offset"));
    ONCE_RETURN_IF_ERROR(q.BindInt64(1, group_id));
    while (true) {
      ONCE_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      StoredPartition* p = find(static_cast<int>(q.ColumnInt64(0)));
      int64_t begin = q.ColumnInt64(1), end = q.ColumnInt64(2);
      if (p == nullptr || begin < 0 || end <= begin) {
        return absl::DataLossError(absl::StrCat(
            "group store ", path_, ": group ", group_id, " has an acked range [", begin, ", ", end,
            ") that is empty or belongs to no partition row (partition ", q.ColumnInt64(0), ")"));
      }
      p->ranges.push_back({begin, end});
    }
  }
  {
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement q,
                          db_->Prepare("SELECT partition_id, msg_offset, deliveries FROM "
                                       "delivery_counts WHERE group_id = ?"));
    ONCE_RETURN_IF_ERROR(q.BindInt64(1, group_id));
    while (true) {
      ONCE_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      StoredPartition* p = find(static_cast<int>(q.ColumnInt64(0)));
      int64_t deliveries = q.ColumnInt64(2);
      if (p == nullptr || deliveries < 0 || deliveries > INT32_MAX) {
        return absl::DataLossError(absl::StrCat("group store ", path_, ": group ", group_id,
                                                " has a bad delivery count row (partition ",
                                                q.ColumnInt64(0), ", deliveries ", deliveries,
                                                ")"));
      }
      p->counts.emplace_back(q.ColumnInt64(1), static_cast<int32_t>(deliveries));
    }
  }
  return parts;
}

absl::StatusOr<int64_t> GroupStore::CreateGroup(const StoredGroup& g,
                                                const std::vector<int64_t>& initial_floors) {
  absl::MutexLock lock(&db_mu_);
  ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db_.get()));
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_->Prepare("INSERT INTO groups (topic, name, mode, guarantee, ack_timeout_ms, "
                   "max_deliveries, dead_letter_topic, prefetch, start_kind, start_value, "
                   "session_timeout_ms, backoff_base_ms, backoff_max_ms, created_ms, "
                   "txn_batch_max, txn_linger_ms) VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"));
  const GroupConfig& c = g.config;
  ONCE_RETURN_IF_ERROR(insert.BindText(1, g.topic));
  ONCE_RETURN_IF_ERROR(insert.BindText(2, g.name));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(3, static_cast<int64_t>(c.mode)));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(4, static_cast<int64_t>(c.guarantee)));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(5, c.ack_timeout_ms));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(6, c.max_deliveries));
  ONCE_RETURN_IF_ERROR(insert.BindText(7, c.dead_letter_topic));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(8, c.prefetch));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(9, static_cast<int64_t>(c.start.kind)));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(10, c.start.value));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(11, c.session_timeout_ms));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(12, c.backoff_base_ms));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(13, c.backoff_max_ms));
  ONCE_RETURN_IF_ERROR(insert.BindInt64(14, g.created_ms));
  ONCE_RETURN_IF_ERROR(c.txn_batch_max.has_value() ? insert.BindInt64(15, *c.txn_batch_max)
                                                   : insert.BindNull(15));
  ONCE_RETURN_IF_ERROR(c.txn_linger_ms.has_value() ? insert.BindInt64(16, *c.txn_linger_ms)
                                                   : insert.BindNull(16));
  absl::Status inserted = insert.Run();
  if (absl::IsAlreadyExists(inserted)) {
    return absl::AlreadyExistsError(absl::StrCat("group \"", g.name, "\" of topic \"", g.topic,
                                                 "\" already exists in the group store"));
  }
  ONCE_RETURN_IF_ERROR(inserted);
  const int64_t group_id = db_->LastInsertRowId();
  for (size_t i = 0; i < initial_floors.size(); ++i) {
    ONCE_RETURN_IF_ERROR(RunWith(reset_partition_, group_id, i, initial_floors[i]));
  }
  ONCE_RETURN_IF_ERROR(txn.Commit());
  return group_id;
}

absl::Status GroupStore::DeleteGroup(int64_t group_id) {
  absl::MutexLock lock(&db_mu_);
  ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db_.get()));
  // ON DELETE CASCADE would do it with foreign_keys on; explicit deletes
  // do not depend on that pragma.
  for (const char* sql :
       {"DELETE FROM delivery_counts WHERE group_id = ?",
        "DELETE FROM acked_ranges WHERE group_id = ?", "DELETE FROM partitions WHERE group_id = ?",
        "DELETE FROM groups WHERE group_id = ?"}) {
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement stmt, db_->Prepare(sql));
    ONCE_RETURN_IF_ERROR(stmt.BindInt64(1, group_id));
    ONCE_RETURN_IF_ERROR(stmt.Run());
  }
  return txn.Commit();
}

absl::Status GroupStore::Apply(const PartitionUpdate& u) {
  if (u.reset) {
    ONCE_RETURN_IF_ERROR(RunWith(reset_partition_, u.group_id, u.partition, u.done_floor));
    ONCE_RETURN_IF_ERROR(RunWith(delete_ranges_, u.group_id, u.partition));
    ONCE_RETURN_IF_ERROR(RunWith(delete_counts_, u.group_id, u.partition));
  }
  ONCE_RETURN_IF_ERROR(RunWith(upsert_partition_, u.group_id, u.partition, u.done_floor,
                               u.dispatched, u.add_acked, u.add_dead_lettered));
  if (!u.reset && u.done_floor > 0) {
    ONCE_ASSIGN_OR_RETURN(const bool ranges,
                          AnyRowWith(any_ranges_below_, u.group_id, u.partition, u.done_floor));
    if (ranges) {
      ONCE_RETURN_IF_ERROR(RunWith(delete_ranges_below_, u.group_id, u.partition, u.done_floor));
    }
    ONCE_ASSIGN_OR_RETURN(const bool counts,
                          AnyRowWith(any_counts_below_, u.group_id, u.partition, u.done_floor));
    if (counts) {
      ONCE_RETURN_IF_ERROR(RunWith(delete_counts_below_, u.group_id, u.partition, u.done_floor));
    }
  }
  for (const OffsetRange& r : u.add_ranges) {
    ONCE_RETURN_IF_ERROR(RunWith(insert_range_, u.group_id, u.partition, r.begin, r.end));
  }
  for (const auto& [offset, deliveries] : u.set_counts) {
    ONCE_RETURN_IF_ERROR(RunWith(upsert_count_, u.group_id, u.partition, offset, deliveries));
  }
  return absl::OkStatus();
}

absl::Status GroupStore::CommitGroup(const std::vector<Writer*>& group) {
  absl::MutexLock lock(&db_mu_);
  ONCE_ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db_.get()));
  for (const Writer* w : group) {
    for (const PartitionUpdate& u : w->batch->updates) ONCE_RETURN_IF_ERROR(Apply(u));
  }
  return txn.Commit();
}

absl::Status GroupStore::Write(const GroupWriteBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  Writer w(&batch);
  absl::MutexLock lock(&queue_mu_);
  writers_.push_back(&w);
  while (!w.done && writers_.front() != &w) w.cv.Wait(&queue_mu_);
  if (w.done) return w.status;

  // This writer leads: commit every batch queued so far in one transaction.
  // Writers arriving meanwhile queue behind and form the next group. Paced:
  // not before min_commit_interval after the last commit (the wait is
  // unlocked, so what arrives meanwhile joins this group).
  const absl::Time due = last_commit_end_ + options_.min_commit_interval;
  if (const absl::Time now = absl::Now(); now < due) {
    queue_mu_.Unlock();
    absl::SleepFor(due - now);
    queue_mu_.Lock();
  }
  std::vector<Writer*> group(writers_.begin(), writers_.end());
  queue_mu_.Unlock();
  absl::Status status = CommitGroup(group);
  queue_mu_.Lock();
  last_commit_end_ = absl::Now();
  if (status.ok()) {
    ++stats_.commits;
    stats_.batches += static_cast<int64_t>(group.size());
  }
  for (Writer* member : group) {
    writers_.pop_front();
    member->status = status;
    member->done = true;
    if (member != &w) member->cv.Signal();
  }
  if (!writers_.empty()) writers_.front()->cv.Signal();
  return status;
}

GroupStoreStats GroupStore::stats() const {
  absl::MutexLock lock(&queue_mu_);
  return stats_;
}

}  // namespace once::broker
