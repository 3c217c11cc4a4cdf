// A small ledger for participant tests: the handler of the ledger_consumer
// example in miniature. A message's value is "account:amount"; the handler
// stages a payments row (keyed by the message id) and a balance update.
// CheckLedger() verifies the crash invariant: the journal's committed ids
// are exactly the payments applied, and every balance is the sum of its
// payments (nothing half-applied, nothing applied twice).
#ifndef ONCE_TESTS_PARTICIPANT_LEDGER_TESTING_H_
#define ONCE_TESTS_PARTICIPANT_LEDGER_TESTING_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "once/sqlite_resource.h"
#include "schema/status_macros.h"

namespace once::testing {

inline constexpr char kLedgerDdl[] =
    "CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS payments (message_id TEXT PRIMARY KEY, account TEXT NOT NULL,"
    " amount INTEGER NOT NULL);";

inline absl::StatusOr<std::unique_ptr<SqliteResource>> OpenLedger(
    const std::string& path, SqliteResourceOptions options = {}) {
  ONCE_ASSIGN_OR_RETURN(std::unique_ptr<SqliteResource> r,
                        SqliteResource::Open(path, std::move(options)));
  ONCE_RETURN_IF_ERROR(r->WithDatabase([](sqlite::Database* db) { return db->Exec(kLedgerDdl); }));
  return r;
}

// "account:amount"; "fail" makes the handler fail, "throw" throw.
inline absl::Status LedgerHandler(const Message& m, Staging& staging) {
  if (m.value == "fail") return absl::InvalidArgumentError("payment refused");
  if (m.value == "throw") throw std::runtime_error("handler exploded");
  std::vector<std::string> parts = absl::StrSplit(m.value, ':');
  int64_t amount = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &amount)) {
    return absl::InvalidArgumentError(absl::StrCat("bad payment \"", m.value, "\""));
  }
  staging.Add("INSERT INTO payments (message_id, account, amount) VALUES (?1, ?2, ?3)",
              {m.id, parts[0], amount});
  staging.Add(
      "INSERT INTO accounts (account, balance) VALUES (?1, ?2) "
      "ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
      {parts[0], amount});
  return absl::OkStatus();
}

// A ledger payment as the SDK stages it: LedgerHandler run on a message
// `id` with value "account:amount".
inline StagedMessage Pay(const std::string& id, const std::string& account, int64_t amount) {
  Staging s;
  Message m;
  m.id = id;
  m.value = account + ":" + std::to_string(amount);
  EXPECT_TRUE(LedgerHandler(m, s).ok()) << m.value;
  return StagedMessage{id, false, s.Release()};
}

// A transaction of payments/ledger, epoch and generation 1.
inline PreparedTxn Txn(const std::string& txn, std::vector<StagedMessage> messages) {
  return PreparedTxn{txn, "payments", "ledger", 1, 1, std::move(messages)};
}

inline absl::StatusOr<std::map<std::string, int64_t>> Balances(SqliteResource* r) {
  std::map<std::string, int64_t> out;
  ONCE_RETURN_IF_ERROR(r->WithDatabase([&out](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement s,
                          db->Prepare("SELECT account, balance FROM accounts"));
    while (true) {
      ONCE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out[std::string(s.ColumnText(0))] = s.ColumnInt64(1);
    }
    return absl::OkStatus();
  }));
  return out;
}

inline absl::StatusOr<int64_t> QueryInt(SqliteResource* r, const std::string& sql) {
  int64_t v = 0;
  ONCE_RETURN_IF_ERROR(r->WithDatabase([&](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(v, db->QueryInt64(sql));
    return absl::OkStatus();
  }));
  return v;
}

// OK when committed ids == applied payments and balances == sums.
inline absl::Status CheckLedger(SqliteResource* r) {
  return r->WithDatabase([](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(int64_t orphan_payments,
                          db->QueryInt64("SELECT COUNT(*) FROM payments WHERE message_id NOT IN "
                                         "(SELECT message_id FROM once_committed_messages)"));
    ONCE_ASSIGN_OR_RETURN(
        int64_t orphan_ids,
        db->QueryInt64("SELECT COUNT(*) FROM once_committed_messages WHERE message_id NOT IN "
                       "(SELECT message_id FROM payments)"));
    ONCE_ASSIGN_OR_RETURN(
        int64_t bad_balances,
        db->QueryInt64("SELECT COUNT(*) FROM accounts a WHERE balance != (SELECT "
                       "COALESCE(SUM(amount), 0) FROM payments p WHERE p.account = a.account)"));
    ONCE_ASSIGN_OR_RETURN(
        int64_t missing_accounts,
        db->QueryInt64("SELECT COUNT(DISTINCT account) FROM payments WHERE account NOT IN "
                       "(SELECT account FROM accounts)"));
    ONCE_ASSIGN_OR_RETURN(
        int64_t prepared_without_messages,
        db->QueryInt64("SELECT COUNT(*) FROM once_txns t WHERE state = 1 AND NOT EXISTS "
                       "(SELECT 1 FROM once_txn_staged s WHERE s.txn = t.txn) AND NOT EXISTS "
                       "(SELECT 1 FROM once_txn_messages m WHERE m.txn = t.txn)"));
    if (orphan_payments || orphan_ids || bad_balances || missing_accounts ||
        prepared_without_messages) {
      return absl::InternalError(
          absl::StrCat("ledger inconsistent: ", orphan_payments, " payments without committed id, ",
                       orphan_ids, " committed ids without payment, ", bad_balances,
                       " wrong balances, ", missing_accounts, " missing accounts, ",
                       prepared_without_messages, " prepared txns without staged messages"));
    }
    return absl::OkStatus();
  });
}

}  // namespace once::testing

#endif  // ONCE_TESTS_PARTICIPANT_LEDGER_TESTING_H_
