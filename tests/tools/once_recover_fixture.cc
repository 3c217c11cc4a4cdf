// Test helper for once_recover_cli_test.sh: makes a data directory as a
// crashed onced would leave it, through the real APIs: a disk topic
// "orders" (2 partitions, 10 messages) with an exactly-once group
// "billing", and coordinator.db (epoch 1) holding committed, not done txns.
//
//   once_recover_fixture DIR good   1.1 (p1, orders/0 offsets 0,1; decided
//                                   5m12s ago), 1.2 (p2, orders/1 offset 0),
//                                   1.3 done (removed at close)
//   once_recover_fixture DIR bad    good, plus the invariant breakers:
//                                   1.4 (a message past the log's end and one
//                                   already in 1.1), 1.5 (a missing topic),
//                                   1.6 (epoch 7 > 1), 1.7 (broker_deleted=1
//                                   but its message is not done in the group)
//   once_recover_fixture DIR future good, then coordinator.db's schema
//                                   version set past this program's
//   once_recover_fixture DIR many   good, plus topic "bulk" (1 partition,
//                                   2500 messages), group "g" and 2500
//                                   committed txns "2.<i>" of one message
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/txn_store.h"
#include "schema/clock.h"
#include "schema/sqlite.h"
#include "schema/status_macros.h"

namespace once {
namespace {

using coordinator::TxnMessageRef;
using coordinator::TxnRecord;

TxnRecord Record(const std::string& txn, const std::string& participant,
                 std::vector<TxnMessageRef> messages, int64_t decided_ms) {
  TxnRecord r;
  r.txn = txn;
  r.topic = "orders";
  r.group = "billing";
  r.participant = participant;
  r.epoch = 1;
  r.generation = 1;
  r.messages = std::move(messages);
  r.created_ms = decided_ms - 20;
  r.decided_ms = decided_ms;
  return r;
}

absl::Status MakeFuture(const std::string& path) {
  ONCE_ASSIGN_OR_RETURN(auto db, sqlite::Database::Open(path));
  return db->Exec(
      absl::StrCat("PRAGMA user_version=", coordinator::TxnStore::LatestSchemaVersion() + 1));
}

// Topic "bulk", group "g" and one committed txn per message, submitted
// without waiting (the group commit batches them).
absl::Status MakeMany(const std::string& dir) {
  constexpr int kCount = 2500;
  {
    broker::BrokerOptions options;
    options.data_dir = dir;
    ONCE_ASSIGN_OR_RETURN(auto b, broker::Broker::Open(options));
    ONCE_RETURN_IF_ERROR(b->CreateTopic("bulk", broker::TopicConfig()).status());
    ONCE_ASSIGN_OR_RETURN(auto t, b->GetTopic("bulk"));
    std::vector<broker::Record> records(kCount);
    for (int i = 0; i < kCount; ++i) records[i].value = absl::StrCat("m", i);
    ONCE_RETURN_IF_ERROR(t->Publish(std::move(records)).status());
    ONCE_ASSIGN_OR_RETURN(auto groups,
                          broker::GroupRegistry::Open(b.get(), broker::GroupRegistryOptions()));
    ONCE_RETURN_IF_ERROR(groups->CreateGroup("bulk", "g", broker::GroupConfig()).status());
  }
  ONCE_ASSIGN_OR_RETURN(auto store, coordinator::TxnStore::Open(dir + "/coordinator.db", {}));
  absl::BlockingCounter pending(kCount);
  std::atomic<int> failed{0};
  const int64_t now = SystemClock()->NowMs();
  for (int i = 0; i < kCount; ++i) {
    TxnRecord r = Record(absl::StrCat("2.", i), "bulk-p", {{0, static_cast<uint64_t>(i)}}, now);
    r.topic = "bulk";
    r.group = "g";
    store->SubmitCommit(std::move(r), [&](absl::Status s) {
      if (!s.ok()) failed++;
      pending.DecrementCount();
    });
  }
  pending.Wait();
  ONCE_RETURN_IF_ERROR(store->BumpEpoch().status());  // now epoch 2, as the ids say
  if (failed.load() > 0) return absl::InternalError("some bulk commits failed");
  return absl::OkStatus();
}

absl::Status Make(const std::string& dir, bool bad) {
  {
    broker::BrokerOptions options;
    options.data_dir = dir;
    ONCE_ASSIGN_OR_RETURN(auto b, broker::Broker::Open(options));
    broker::TopicConfig topic;
    topic.partitions = 2;
    ONCE_RETURN_IF_ERROR(b->CreateTopic("orders", topic).status());
    ONCE_ASSIGN_OR_RETURN(auto t, b->GetTopic("orders"));
    std::vector<broker::Record> records(10);
    for (size_t i = 0; i < records.size(); ++i) {
      records[i].value = absl::StrCat("order ", i);  // no key: round-robin
    }
    ONCE_RETURN_IF_ERROR(t->Publish(std::move(records)).status());
    ONCE_ASSIGN_OR_RETURN(auto groups,
                          broker::GroupRegistry::Open(b.get(), broker::GroupRegistryOptions()));
    broker::GroupConfig group;
    group.guarantee = broker::Guarantee::kExactlyOnce;
    ONCE_RETURN_IF_ERROR(groups->CreateGroup("orders", "billing", group).status());
  }
  coordinator::TxnStoreOptions options;
  ONCE_ASSIGN_OR_RETURN(auto store, coordinator::TxnStore::Open(dir + "/coordinator.db", options));
  ONCE_RETURN_IF_ERROR(store->BumpEpoch().status());
  const int64_t now = SystemClock()->NowMs();
  ONCE_RETURN_IF_ERROR(store->RecordCommit(Record("1.1", "p1", {{0, 0}, {0, 1}}, now - 312'000)));
  ONCE_RETURN_IF_ERROR(store->RecordCommit(Record("1.2", "p2", {{1, 0}}, now - 3'000)));
  ONCE_RETURN_IF_ERROR(store->RecordCommit(Record("1.3", "p1", {{1, 1}}, now - 2'000)));
  ONCE_RETURN_IF_ERROR(store->RecordDone("1.3"));
  ONCE_RETURN_IF_ERROR(store->RecordAttempt("1.1"));
  ONCE_RETURN_IF_ERROR(store->Audit("1.1", "note", "made by once_recover_fixture", "test"));
  if (bad) {
    ONCE_RETURN_IF_ERROR(store->RecordCommit(Record("1.4", "p3", {{0, 99}, {0, 1}}, now - 1'000)));
    TxnRecord missing = Record("1.5", "p3", {{0, 2}}, now - 900);
    missing.topic = "vanished";
    ONCE_RETURN_IF_ERROR(store->RecordCommit(missing));
    TxnRecord future = Record("1.6", "p3", {{0, 3}}, now - 800);
    future.epoch = 7;
    ONCE_RETURN_IF_ERROR(store->RecordCommit(future));
    TxnRecord lie = Record("1.7", "p3", {{1, 4}}, now - 700);
    lie.broker_deleted = true;
    ONCE_RETURN_IF_ERROR(store->RecordCommit(lie));
  }
  store->Close();
  return absl::OkStatus();
}

}  // namespace
}  // namespace once

int main(int argc, char** argv) {
  const std::string mode = argc == 3 ? argv[2] : "";
  if (mode != "good" && mode != "bad" && mode != "future" && mode != "many") {
    std::fprintf(stderr, "usage: once_recover_fixture DIR good|bad|future|many\n");
    return 2;
  }
  absl::Status s = once::Make(argv[1], mode == "bad");
  if (s.ok() && mode == "many") s = once::MakeMany(argv[1]);
  if (s.ok() && mode == "future") s = once::MakeFuture(std::string(argv[1]) + "/coordinator.db");
  if (!s.ok()) {
    std::fprintf(stderr, "once_recover_fixture: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
