#include "participant/src/journal.h"

#include <sqlite3.h>

#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "participant/src/effect_codec.h"
#include "participant/src/staged_codec.h"
#include "schema/participant_sql.h"
#include "schema/status_macros.h"

namespace once::participant {

absl::Status MigrateJournal(sqlite::Database* db) {
  ONCE_ASSIGN_OR_RETURN(
      const std::vector<sqlite::Migration> migrations,
      sqlite::ParseMigrations(schema::ParticipantSql(), "schema/participant.sql"));
  return sqlite::Migrate(db, migrations).status();
}

absl::StatusOr<TxnStatus> ReadTxnStatus(sqlite::Database* db, absl::string_view txn) {
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement s,
                        db->PrepareCached("SELECT state FROM once_txns WHERE txn = ?1"));
  ONCE_RETURN_IF_ERROR(s.BindText(1, txn));
  ONCE_ASSIGN_OR_RETURN(const bool row, s.Step());
  if (!row) return TxnStatus::kAbsent;
  const int64_t state = s.ColumnInt64(0);
  if (state == kJournalPrepared) return TxnStatus::kPrepared;
  if (state == kJournalCommitted) return TxnStatus::kCommitted;
  return absl::DataLossError(
      absl::StrCat("journal ", db->path(), ": txn ", txn, " has unknown state ", state));
}

absl::StatusOr<std::vector<std::string>> ListPrepared(sqlite::Database* db) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement s,
      db->PrepareCached("SELECT txn FROM once_txns WHERE state = 1 ORDER BY created_ms, txn"));
  std::vector<std::string> out;
  while (true) {
    ONCE_ASSIGN_OR_RETURN(const bool row, s.Step());
    if (!row) break;
    out.emplace_back(s.ColumnText(0));
  }
  return out;
}

absl::StatusOr<bool> IsIdCommitted(sqlite::Database* db, absl::string_view message_id) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement s,
      db->PrepareCached("SELECT 1 FROM once_committed_messages WHERE message_id = ?1"));
  ONCE_RETURN_IF_ERROR(s.BindText(1, message_id));
  return s.Step();
}

absl::Status InsertPrepared(sqlite::Database* db, const PreparedTxn& txn, int64_t now_ms) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement t,
      db->PrepareCached("INSERT INTO once_txns (txn, state, topic, group_name, epoch, generation, "
                        "created_ms) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6)"));
  ONCE_RETURN_IF_ERROR(t.BindText(1, txn.txn));
  ONCE_RETURN_IF_ERROR(t.BindText(2, txn.topic));
  ONCE_RETURN_IF_ERROR(t.BindText(3, txn.group));
  ONCE_RETURN_IF_ERROR(t.BindInt64(4, static_cast<int64_t>(txn.epoch)));
  ONCE_RETURN_IF_ERROR(t.BindInt64(5, static_cast<int64_t>(txn.generation)));
  ONCE_RETURN_IF_ERROR(t.BindInt64(6, now_ms));
  ONCE_RETURN_IF_ERROR(t.Run());
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement m,
      db->PrepareCached("INSERT INTO once_txn_staged (txn, staged) VALUES (?1, ?2)"));
  ONCE_RETURN_IF_ERROR(m.BindText(1, txn.txn));
  ONCE_RETURN_IF_ERROR(m.BindBlob(2, EncodeStaged(txn.messages)));
  return m.Run();
}

namespace {

// The messages a version-1 journal staged, one once_txn_messages row each.
absl::StatusOr<std::vector<StagedMessage>> LoadStagedRows(sqlite::Database* db,
                                                          absl::string_view txn) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement s,
      db->PrepareCached("SELECT message_id, skipped, effects FROM once_txn_messages "
                        "WHERE txn = ?1 ORDER BY seq"));
  ONCE_RETURN_IF_ERROR(s.BindText(1, txn));
  std::vector<StagedMessage> out;
  while (true) {
    ONCE_ASSIGN_OR_RETURN(const bool row, s.Step());
    if (!row) break;
    StagedMessage m;
    m.message_id = std::string(s.ColumnText(0));
    m.skipped = s.ColumnInt64(1) != 0;
    absl::StatusOr<std::vector<Effect>> effects = DecodeEffects(s.ColumnBlob(2));
    if (!effects.ok()) {
      return absl::DataLossError(absl::StrCat("journal ", db->path(), ": txn ", txn, " message ",
                                              m.message_id, ": ", effects.status().message()));
    }
    m.effects = std::move(effects).value();
    out.push_back(std::move(m));
  }
  return out;
}

// Deletes what the transaction staged, in either form.
absl::Status DeleteStaged(sqlite::Database* db, absl::string_view txn) {
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement blob,
                        db->PrepareCached("DELETE FROM once_txn_staged WHERE txn = ?1"));
  ONCE_RETURN_IF_ERROR(blob.BindText(1, txn));
  ONCE_RETURN_IF_ERROR(blob.Run());
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement rows,
                        db->PrepareCached("DELETE FROM once_txn_messages WHERE txn = ?1"));
  ONCE_RETURN_IF_ERROR(rows.BindText(1, txn));
  return rows.Run();
}

}  // namespace

absl::StatusOr<std::vector<StagedMessage>> LoadStaged(sqlite::Database* db, absl::string_view txn) {
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement s,
                        db->PrepareCached("SELECT staged FROM once_txn_staged WHERE txn = ?1"));
  ONCE_RETURN_IF_ERROR(s.BindText(1, txn));
  ONCE_ASSIGN_OR_RETURN(const bool row, s.Step());
  if (!row) return LoadStagedRows(db, txn);
  absl::StatusOr<std::vector<StagedMessage>> staged = DecodeStaged(s.ColumnBlob(0));
  if (!staged.ok()) {
    return absl::DataLossError(
        absl::StrCat("journal ", db->path(), ": txn ", txn, ": ", staged.status().message()));
  }
  return staged;
}

namespace {

absl::Status Bind(sqlite::Statement& s, int index, const Value& value) {
  return std::visit(
      [&](const auto& x) -> absl::Status {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return s.BindNull(index);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return s.BindInt64(index, x);
        } else if constexpr (std::is_same_v<T, double>) {
          return s.BindDouble(index, x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return s.BindText(index, x);
        } else {
          return s.BindBlob(index, x.bytes);
        }
      },
      value);
}

}  // namespace

absl::Status RunEffects(sqlite::Database* db, const std::vector<Effect>& effects) {
  for (size_t i = 0; i < effects.size(); ++i) {
    const Effect& e = effects[i];
    absl::StatusOr<sqlite::Statement> s = db->PrepareCached(e.command);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("effect ", i, " does not compile: ", s.status().message()));
    }
    const int expected = sqlite3_bind_parameter_count(s->handle());
    if (static_cast<size_t>(expected) != e.params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("effect ", i, " (", e.command, ") takes ",
                                                     expected, " parameters, ", e.params.size(),
                                                     " given"));
    }
    for (size_t p = 0; p < e.params.size(); ++p) {
      ONCE_RETURN_IF_ERROR(Bind(*s, static_cast<int>(p + 1), e.params[p]));
    }
    absl::Status run = s->Run();
    if (!run.ok()) {
      return absl::Status(run.code(), absl::StrCat("effect ", i, ": ", run.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ClaimMessageId(sqlite::Database* db, absl::string_view message_id,
                                    absl::string_view txn, int64_t now_ms) {
  // ON CONFLICT on the key only: any other constraint still fails loudly.
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement s,
                        db->PrepareCached("INSERT INTO once_committed_messages (message_id, txn, "
                                          "committed_ms) VALUES (?1, ?2, ?3) "
                                          "ON CONFLICT (message_id) DO NOTHING"));
  ONCE_RETURN_IF_ERROR(s.BindText(1, message_id));
  ONCE_RETURN_IF_ERROR(s.BindText(2, txn));
  ONCE_RETURN_IF_ERROR(s.BindInt64(3, now_ms));
  ONCE_RETURN_IF_ERROR(s.Run());
  return db->Changes() == 1;
}

absl::Status MarkCommitted(sqlite::Database* db, absl::string_view txn, int64_t now_ms) {
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement u,
                        db->PrepareCached("UPDATE once_txns SET state = 2, decided_ms = ?2 "
                                          "WHERE txn = ?1 AND state = 1"));
  ONCE_RETURN_IF_ERROR(u.BindText(1, txn));
  ONCE_RETURN_IF_ERROR(u.BindInt64(2, now_ms));
  ONCE_RETURN_IF_ERROR(u.Run());
  if (db->Changes() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal ", db->path(), ": txn ", txn, " is not prepared"));
  }
  return DeleteStaged(db, txn);
}

absl::Status DeleteTxn(sqlite::Database* db, absl::string_view txn) {
  ONCE_RETURN_IF_ERROR(DeleteStaged(db, txn));
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement t,
                        db->PrepareCached("DELETE FROM once_txns WHERE txn = ?1"));
  ONCE_RETURN_IF_ERROR(t.BindText(1, txn));
  return t.Run();
}

absl::Status PruneCommitted(sqlite::Database* db, int64_t before_ms, int64_t keep_min) {
  ONCE_ASSIGN_OR_RETURN(
      sqlite::Statement s,
      // The newest keep_min are found by walking the (state, created_ms)
      // index from its end (no sort of every committed row); with fewer
      // rows the subquery is NULL and nothing goes.
      db->PrepareCached("DELETE FROM once_txns WHERE state = 2 AND decided_ms < ?1 AND "
                        "created_ms < (SELECT created_ms FROM once_txns WHERE state = 2 "
                        "ORDER BY created_ms DESC LIMIT 1 OFFSET ?2 - 1)"));
  ONCE_RETURN_IF_ERROR(s.BindInt64(1, before_ms));
  ONCE_RETURN_IF_ERROR(s.BindInt64(2, keep_min));
  return s.Run();
}

}  // namespace once::participant
