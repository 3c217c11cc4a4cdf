// once-recover verify: the invariants between coordinator.db and the
// broker's store, checked offline.
//
//  1. coordinator.db's schema version is one this program knows, and
//     PRAGMA integrity_check is ok; every record is whole (all messages).
//  2. Every committed txn's topic and group exist, and each of its
//     messages is in the log (0 <= offset < the partition's next offset)
//     or was trimmed (offset < first offset). Memory topics come back
//     empty after a restart: their messages are not checked (noted).
//  3. No message is in two unfinished (committed, not done) txns.
//  4. No txn has an epoch above the store's current epoch.
//  5. A committed txn with broker_deleted=1 has each message done in its
//     group. "Done" is read from the group store (broker/group_store.h,
//     what AckPositions writes): offset < the partition's done_floor, or
//     inside one of its acked ranges. ConsumerGroup::DoneFloors alone
//     would miss the ranges above the floor of a shared group. Memory
//     topics keep group state in RAM only: not checked (noted).
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/group_store.h"
#include "schema/sqlite.h"
#include "schema/status_macros.h"
#include "tools/recover_commands.h"

namespace once::recover {
namespace {

using coordinator::TxnRecord;
using coordinator::TxnState;

constexpr size_t kProgressEvery = 1000;

// The done state of one stored group, per partition, loaded on demand.
class DoneIndex {
 public:
  explicit DoneIndex(broker::GroupStore* store) : store_(store) {}

  absl::Status Load() {
    ONCE_ASSIGN_OR_RETURN(std::vector<broker::StoredGroup> groups, store_->LoadGroups());
    for (const auto& g : groups) ids_[{g.topic, g.name}] = g.group_id;
    return absl::OkStatus();
  }

  // nullopt when the group has no stored state (a memory topic's group).
  absl::StatusOr<std::optional<bool>> IsDone(const std::string& topic, const std::string& group,
                                             int partition, int64_t offset) {
    auto id = ids_.find({topic, group});
    if (id == ids_.end()) return std::optional<bool>();
    auto loaded = partitions_.find(id->second);
    if (loaded == partitions_.end()) {
      ONCE_ASSIGN_OR_RETURN(std::vector<broker::StoredPartition> parts,
                            store_->LoadPartitions(id->second));
      loaded = partitions_.emplace(id->second, std::move(parts)).first;
    }
    for (const broker::StoredPartition& p : loaded->second) {
      if (p.partition != partition) continue;
      if (offset < p.done_floor) return std::optional<bool>(true);
      for (const broker::OffsetRange& r : p.ranges) {
        if (offset >= r.begin && offset < r.end) return std::optional<bool>(true);
      }
      return std::optional<bool>(false);
    }
    return std::optional<bool>(false);  // no row: nothing done there yet
  }

 private:
  broker::GroupStore* store_;
  std::map<std::pair<std::string, std::string>, int64_t> ids_;
  std::map<int64_t, std::vector<broker::StoredPartition>> partitions_;
};

struct Report {
  std::vector<std::string> failures;
  std::vector<std::string> notes;
  void Fail(std::string s) { failures.push_back(std::move(s)); }
};

absl::Status CheckIntegrity(const std::string& path, Report& report) {
  sqlite::DatabaseOptions options;
  options.read_only = true;
  ONCE_ASSIGN_OR_RETURN(auto db, sqlite::Database::Open(path, options));
  ONCE_ASSIGN_OR_RETURN(sqlite::Statement check, db->Prepare("PRAGMA integrity_check"));
  while (true) {
    ONCE_ASSIGN_OR_RETURN(bool row, check.Step());
    if (!row) break;
    std::string line(check.ColumnText(0));
    if (line != "ok") report.Fail(absl::StrCat(path, ": integrity_check: ", line));
  }
  return absl::OkStatus();
}

// Checks 2 and 5 for one record.
absl::Status CheckAgainstBroker(Session& session, DoneIndex& done, const TxnRecord& r,
                                Report& report, int64_t& trimmed) {
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = session.broker()->GetTopic(r.topic);
  if (!topic.ok()) {
    report.Fail(absl::StrCat("txn ", r.txn, ": its topic ", r.topic, " does not exist"));
    return absl::OkStatus();
  }
  if (!session.groups()->GetGroup(r.topic, r.group).ok()) {
    report.Fail(
        absl::StrCat("txn ", r.txn, ": its group ", r.topic, "/", r.group, " does not exist"));
    return absl::OkStatus();
  }
  if ((*topic)->config().backend == broker::Backend::kMemory) {
    report.notes.push_back(absl::StrCat("txn ", r.txn, ": topic ", r.topic,
                                        " is a memory topic: its messages and group state do "
                                        "not survive a restart; not checked"));
    return absl::OkStatus();
  }
  for (const auto& m : r.messages) {
    const int p = static_cast<int>(m.partition);
    const int64_t offset = static_cast<int64_t>(m.offset);
    broker::Log* log = (*topic)->partition(p);
    if (log == nullptr) {
      report.Fail(
          absl::StrCat("txn ", r.txn, ": partition ", p, " is out of range for topic ", r.topic));
      continue;
    }
    if (offset < 0 || offset >= log->NextOffset()) {
      report.Fail(absl::StrCat("txn ", r.txn, ": message ", r.topic, "/", p, "/", offset,
                               " is not in the log (next offset ", log->NextOffset(), ")"));
      continue;
    }
    if (offset < log->FirstOffset()) ++trimmed;
    if (r.broker_deleted) {
      ONCE_ASSIGN_OR_RETURN(std::optional<bool> is_done, done.IsDone(r.topic, r.group, p, offset));
      if (is_done.has_value() && !*is_done) {
        report.Fail(absl::StrCat("txn ", r.txn, ": marked deleted in the broker, but message ",
                                 r.topic, "/", p, "/", offset, " is not done in group ", r.group));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Output> RunVerify(Session& session, const Command& command, int64_t now_ms) {
  (void)command;
  (void)now_ms;
  Output out;
  Report report;
  size_t checked = 0;
  int64_t trimmed = 0;
  out.json["command"] = "verify";
  out.json["data_dir"] = session.data_dir();
  out.json["schema_version"] = session.schema_version();
  if (session.schema_too_new()) {
    report.Fail(std::string(session.SchemaError().message()));
  } else if (session.store() == nullptr) {
    report.notes.push_back("no coordinator.db: no exactly-once transaction was ever decided here");
  } else {
    ONCE_RETURN_IF_ERROR(CheckIntegrity(session.db_path(), report));
    ONCE_RETURN_IF_ERROR(session.OpenBroker());
    DoneIndex done(session.groups()->store());
    ONCE_RETURN_IF_ERROR(done.Load());
    absl::StatusOr<std::vector<TxnRecord>> records = session.store()->List(std::nullopt, 0);
    if (records.status().code() == absl::StatusCode::kDataLoss) {
      report.Fail(std::string(records.status().message()));
      records = std::vector<TxnRecord>();
    }
    if (!records.ok()) return records.status();
    const uint64_t epoch = session.store()->epoch();
    // (topic, group, partition, offset) -> the unfinished txn holding it.
    std::map<std::tuple<std::string, std::string, uint32_t, uint64_t>, std::string> owners;
    for (const TxnRecord& r : *records) {
      if (++checked % kProgressEvery == 0) {
        std::fprintf(stderr, "verify: %zu/%zu transactions checked\n", checked, records->size());
      }
      if (r.epoch > epoch) {
        report.Fail(absl::StrCat("txn ", r.txn, ": epoch ", r.epoch,
                                 " is above the store's current epoch ", epoch));
      }
      if (r.state != TxnState::kCommitted) continue;  // done: awaiting removal
      for (const auto& m : r.messages) {
        auto [it, inserted] =
            owners.emplace(std::make_tuple(r.topic, r.group, m.partition, m.offset), r.txn);
        if (!inserted) {
          report.Fail(absl::StrCat("message ", r.topic, "/", m.partition, "/", m.offset,
                                   " of group ", r.group,
                                   " is in two unfinished txns: ", it->second, " and ", r.txn));
        }
      }
      ONCE_RETURN_IF_ERROR(CheckAgainstBroker(session, done, r, report, trimmed));
    }
  }

  boost::json::array failures;
  boost::json::array notes;
  for (const std::string& f : report.failures) {
    Appendf(&out, "FAIL: %s\n", f.c_str());
    failures.push_back(boost::json::string(f));
  }
  for (const std::string& n : report.notes) {
    Appendf(&out, "note: %s\n", n.c_str());
    notes.push_back(boost::json::string(n));
  }
  Appendf(&out, "verify: %zu transaction%s checked, %zu trimmed message(s), %zu failure%s: %s\n",
          checked, checked == 1 ? "" : "s", static_cast<size_t>(trimmed), report.failures.size(),
          report.failures.size() == 1 ? "" : "s",
          report.failures.empty() ? "all invariants hold" : "INVARIANTS VIOLATED");
  out.exit_code = report.failures.empty() ? kExitOk : kExitInvariant;
  out.json["ok"] = report.failures.empty();
  out.json["checked"] = checked;
  out.json["trimmed_messages"] = trimmed;
  out.json["failures"] = std::move(failures);
  out.json["notes"] = std::move(notes);
  return out;
}

}  // namespace once::recover
