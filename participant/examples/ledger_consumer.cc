// ledger_consumer: applies payment messages {"id", "account", "amount"} to
// account balances in a SQLite ledger, exactly once, through the
// participant SDK. Kill it at any instant (SIGKILL included) and start it
// again: every payment is applied once.
//
//   ledger_consumer --url ws://127.0.0.1:8080/v1/ws --topic payments
//       --group ledger --id ledger-1 --db ledger.db [--mode exactly-once]
//
// The ledger's tables live in the same SQLite file as the SDK's journal:
//   accounts (account PRIMARY KEY, balance)
//   payments (message_id PRIMARY KEY, payment_id, account, amount)
// so sum(payments.amount) per account always equals its balance.
// SIGINT/SIGTERM stop it cleanly (in-doubt transactions stay journaled and
// are resolved at the next start).
#include <csignal>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "once/participant.h"
#include "once/sqlite_resource.h"

ABSL_FLAG(std::string, url, "ws://127.0.0.1:8080/v1/ws", "the service's WebSocket URL");
ABSL_FLAG(std::string, topic, "payments", "topic to consume");
ABSL_FLAG(std::string, group, "ledger", "consumer group (its guarantee must match --mode)");
ABSL_FLAG(std::string, id, "ledger-1", "participant id: keep it across restarts");
ABSL_FLAG(std::string, db, "ledger.db", "the ledger's SQLite file (also holds the journal)");
ABSL_FLAG(std::string, mode, "exactly-once", "exactly-once | idempotent | at-least-once");
ABSL_FLAG(int, window, 16, "transactions (or messages) in flight");
ABSL_FLAG(bool, read_ahead, false,
          "read and decode the next frames on a network thread of the SDK's own "
          "(ParticipantOptions::read_ahead)");

namespace {

constexpr char kLedgerDdl[] =
    "CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS payments (message_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL,"
    " account TEXT NOT NULL, amount INTEGER NOT NULL);";

// Parses {"id": "...", "account": "...", "amount": <integer>} and stages
// the payment row and the balance update.
absl::Status ApplyPayment(const once::Message& message, once::Staging& staging) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(message.value, ec);
  if (ec || !v.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("payment ", message.id, ": not a JSON object"));
  }
  const boost::json::object& o = v.get_object();
  const boost::json::value* id = o.if_contains("id");
  const boost::json::value* account = o.if_contains("account");
  const boost::json::value* amount = o.if_contains("amount");
  if (id == nullptr || !id->is_string() || account == nullptr || !account->is_string() ||
      amount == nullptr || !amount->is_int64()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payment ", message.id, ": need string \"id\", string \"account\", integer \"amount\""));
  }
  const std::string account_name(account->get_string());
  staging.Add(
      "INSERT INTO payments (message_id, payment_id, account, amount) "
      "VALUES (?1, ?2, ?3, ?4)",
      {message.id, std::string(id->get_string()), account_name, amount->get_int64()});
  staging.Add(
      "INSERT INTO accounts (account, balance) VALUES (?1, ?2) "
      "ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
      {account_name, amount->get_int64()});
  return absl::OkStatus();
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "ledger_consumer: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("applies payment messages to a SQLite ledger exactly once");
  absl::ParseCommandLine(argc, argv);

  once::ParticipantOptions options;
  options.url = absl::GetFlag(FLAGS_url);
  options.topic = absl::GetFlag(FLAGS_topic);
  options.group = absl::GetFlag(FLAGS_group);
  options.participant_id = absl::GetFlag(FLAGS_id);
  options.window = static_cast<uint32_t>(absl::GetFlag(FLAGS_window));
  options.read_ahead = absl::GetFlag(FLAGS_read_ahead);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "exactly-once") {
    options.mode = once::Mode::kExactlyOnce;
  } else if (mode == "idempotent") {
    options.mode = once::Mode::kIdempotent;
  } else if (mode == "at-least-once") {
    options.mode = once::Mode::kAtLeastOnce;
  } else {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--mode: unknown mode \"", mode, "\"")));
  }

  // Block the stop signals before any thread starts, then wait for one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto resource = once::SqliteResource::Open(absl::GetFlag(FLAGS_db));
  if (!resource.ok()) return Fail(resource.status());
  absl::Status ddl =
      (*resource)->WithDatabase([](once::sqlite::Database* db) { return db->Exec(kLedgerDdl); });
  if (!ddl.ok()) return Fail(ddl);

  auto participant = once::Participant::Create(options, resource->get(), ApplyPayment);
  if (!participant.ok()) return Fail(participant.status());
  if (absl::Status s = (*participant)->Start(); !s.ok()) return Fail(s);
  std::fprintf(stderr, "ledger_consumer: %s consuming %s/%s (%s)\n", options.participant_id.c_str(),
               options.topic.c_str(), options.group.c_str(), mode.c_str());

  int signal = 0;
  sigwait(&signals, &signal);
  (*participant)->Stop();
  const once::ParticipantStats s = (*participant)->stats();
  std::fprintf(
      stderr,
      "ledger_consumer: stopped; commits %llu, aborts %llu, applied %llu, skipped "
      "%llu, acks %llu, session failures %llu\n",
      static_cast<unsigned long long>(s.commits), static_cast<unsigned long long>(s.aborts),
      static_cast<unsigned long long>(s.messages_applied),
      static_cast<unsigned long long>(s.messages_skipped), static_cast<unsigned long long>(s.acks),
      static_cast<unsigned long long>(s.session_failures));
  return 0;
}
