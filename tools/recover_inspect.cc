// once-recover list and show.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "tools/recover_commands.h"

namespace once::recover {
namespace {

using coordinator::AuditEntry;
using coordinator::TxnRecord;

std::string Deleted(const TxnRecord& r) { return r.broker_deleted ? "deleted" : "pending"; }

}  // namespace

absl::StatusOr<Output> RunList(Session& session, const Command& command, int64_t now_ms) {
  (void)command;
  ONCE_RETURN_IF_ERROR(session.SchemaError());
  std::vector<TxnRecord> unfinished;
  if (session.store() != nullptr) {
    ONCE_ASSIGN_OR_RETURN(unfinished, session.store()->LoadUnfinished());
  }
  Output out;
  boost::json::array txns;
  int64_t oldest_ms = 0;
  if (!unfinished.empty()) {
    Appendf(&out, "%-16s %-8s %-16s %-24s %8s %8s  %s\n", "TXN", "AGE", "PARTICIPANT",
            "TOPIC/GROUP", "MESSAGES", "ATTEMPTS", "BROKER");
  }
  for (const TxnRecord& r : unfinished) {
    const int64_t age = now_ms - r.decided_ms;
    oldest_ms = std::max(oldest_ms, age);
    Appendf(&out, "%-16s %-8s %-16s %-24s %8zu %8u  %s\n", r.txn.c_str(), FormatAge(age).c_str(),
            r.participant.c_str(), absl::StrCat(r.topic, "/", r.group).c_str(), r.messages.size(),
            r.attempts, Deleted(r).c_str());
    txns.push_back(RecordJson(r, now_ms));
  }
  if (unfinished.empty()) {
    Appendf(&out, "0 unfinished transactions%s\n",
            session.store() == nullptr ? " (no coordinator.db: none was ever decided here)" : "");
  } else {
    Appendf(&out, "%zu unfinished transaction%s, oldest %s\n", unfinished.size(),
            unfinished.size() == 1 ? "" : "s", FormatAge(oldest_ms).c_str());
  }
  out.json["command"] = "list";
  out.json["data_dir"] = session.data_dir();
  out.json["epoch"] = session.store() != nullptr ? session.store()->epoch() : 0;
  out.json["unfinished"] = unfinished.size();
  out.json["oldest_age_ms"] = oldest_ms;
  out.json["transactions"] = std::move(txns);
  return out;
}

absl::StatusOr<Output> RunShow(Session& session, const Command& command, int64_t now_ms) {
  ONCE_RETURN_IF_ERROR(session.SchemaError());
  std::optional<TxnRecord> record;
  std::vector<AuditEntry> audit;
  if (session.store() != nullptr) {
    ONCE_ASSIGN_OR_RETURN(record, session.store()->Find(command.txn));
    ONCE_ASSIGN_OR_RETURN(audit, session.store()->AuditLog(command.txn));
  }
  Output out;
  out.json["command"] = "show";
  out.json["txn"] = command.txn;
  if (!record.has_value()) {
    out.exit_code = kExitRefused;
    Appendf(&out,
            "no record of txn %s: it was aborted (presumed abort: nothing is written before the "
            "commit point), never existed, or was done and removed\n",
            command.txn.c_str());
    out.json["found"] = false;
  } else {
    const TxnRecord& r = *record;
    out.json["found"] = true;
    out.json["record"] = RecordJson(r, now_ms);
    const uint64_t epoch = session.store()->epoch();
    Appendf(&out, "txn %s\n", r.txn.c_str());
    Appendf(&out, "  state           %s\n", std::string(TxnStateName(r.state)).c_str());
    Appendf(&out, "  topic/group     %s/%s\n", r.topic.c_str(), r.group.c_str());
    Appendf(&out, "  participant     %s (generation %llu)\n", r.participant.c_str(),
            static_cast<unsigned long long>(r.generation));
    Appendf(&out, "  epoch           %llu (current %llu)\n",
            static_cast<unsigned long long>(r.epoch), static_cast<unsigned long long>(epoch));
    Appendf(&out, "  created         %s\n", FormatTime(r.created_ms).c_str());
    Appendf(&out, "  decided         %s (%s ago)\n", FormatTime(r.decided_ms).c_str(),
            FormatAge(now_ms - r.decided_ms).c_str());
    Appendf(&out, "  done            %s\n", FormatTime(r.done_ms).c_str());
    Appendf(&out, "  commit sent     %u time(s)\n", r.attempts);
    Appendf(&out, "  broker          %s\n",
            r.broker_deleted ? "batch deleted (acked) in the group"
                             : "batch not yet known deleted in the group");
    Appendf(&out, "  reason          %s\n", r.reason.empty() ? "-" : r.reason.c_str());
    Appendf(&out, "  messages        %zu\n", r.messages.size());
    for (const auto& m : r.messages) {
      Appendf(&out, "    partition %u offset %llu\n", m.partition,
              static_cast<unsigned long long>(m.offset));
    }
  }
  boost::json::array entries;
  Appendf(&out, "  audit           %zu entr%s\n", audit.size(), audit.size() == 1 ? "y" : "ies");
  for (const AuditEntry& e : audit) {
    Appendf(&out, "    %s %s by %s: %s\n", FormatTime(e.at_ms).c_str(), e.action.c_str(),
            e.actor.c_str(), e.reason.c_str());
    entries.push_back(AuditJson(e));
  }
  out.json["audit"] = std::move(entries);
  return out;
}

}  // namespace once::recover
