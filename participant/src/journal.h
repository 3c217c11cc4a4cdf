// The participant journal's SQL (schema/participant.sql) over one open
// connection. These functions neither lock nor begin transactions: the
// caller (SqliteResource) holds its lock and wraps each phase in one SQLite
// transaction (or, inside a group, one savepoint of the group's
// transaction: participant/src/local_txn.h), which is what makes every
// phase atomic across a crash.
//
// Every statement, the consumer's effects included, is compiled once per
// connection and then taken from its statement cache
// (sqlite::Database::PrepareCached): a transaction of N messages runs the
// same few statements N times, and compiling one costs more than running
// it. A cached statement goes back to the cache reset, with its bindings
// cleared, when the Statement object dies (RAII), so no statement here
// outlives the call that took it.
#ifndef ONCE_PARTICIPANT_SRC_JOURNAL_H_
#define ONCE_PARTICIPANT_SRC_JOURNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "once/resource.h"
#include "once/staging.h"
#include "schema/sqlite.h"

namespace once::participant {

// Journal row states (once_txns.state); stored, so never renumbered.
inline constexpr int64_t kJournalPrepared = 1;
inline constexpr int64_t kJournalCommitted = 2;

// Creates or migrates the journal tables.
absl::Status MigrateJournal(sqlite::Database* db);

absl::StatusOr<TxnStatus> ReadTxnStatus(sqlite::Database* db, absl::string_view txn);
absl::StatusOr<std::vector<std::string>> ListPrepared(sqlite::Database* db);
absl::StatusOr<bool> IsIdCommitted(sqlite::Database* db, absl::string_view message_id);

// Inserts the prepared row and its staged messages (one blob,
// participant/src/staged_codec.h). kAlreadyExists when
// the transaction is already journaled.
absl::Status InsertPrepared(sqlite::Database* db, const PreparedTxn& txn, int64_t now_ms);

// The staged messages of a prepared transaction, in PREPARE order, with
// their effects decoded (kDataLoss for a damaged blob): its once_txn_staged
// blob, or the once_txn_messages rows of a transaction that a version-1
// journal prepared.
absl::StatusOr<std::vector<StagedMessage>> LoadStaged(sqlite::Database* db, absl::string_view txn);

// Runs each effect: takes its compiled command from the cache (compiling
// it on first use), binds its parameters in order
// as ?1, ?2, ..., and steps it to completion. kInvalidArgument naming the
// effect when a command does not compile, or has fewer parameters than
// bound values; the statement's own error otherwise.
absl::Status RunEffects(sqlite::Database* db, const std::vector<Effect>& effects);

// Records `message_id` as committed (by `txn`, "" for a streamed
// delivery) unless it is already: true when recorded now, false when it
// was there. One statement for the guard and the record (model rule 3):
// the caller applies the effects only on true, in the same transaction.
absl::StatusOr<bool> ClaimMessageId(sqlite::Database* db, absl::string_view message_id,
                                    absl::string_view txn, int64_t now_ms);
// Marks the transaction committed and drops its staged messages (either
// form).
absl::Status MarkCommitted(sqlite::Database* db, absl::string_view txn, int64_t now_ms);
// Deletes the transaction's row and staged messages.
absl::Status DeleteTxn(sqlite::Database* db, absl::string_view txn);
// Deletes committed transactions decided before `before_ms`, keeping at
// least the `keep_min` (>= 1) most recently prepared ones.
absl::Status PruneCommitted(sqlite::Database* db, int64_t before_ms, int64_t keep_min);

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_JOURNAL_H_
