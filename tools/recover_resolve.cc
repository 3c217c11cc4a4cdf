// once-recover resolve: what can be re-driven offline.
//
// Plain resolve: for every committed, not done txn, delete its batch in
// the broker (ConsumerGroup::AckPositions: idempotent and durable; the
// delivery tokens died with onced) and MarkBrokerDeleted. The COMMIT is
// not sent from here (there is no participant connection): onced re-sends
// it when the participant reconnects, and marks the txn done on DONE.
//
// --commit TXN --reason R: the same delete, then the txn is marked done
// for good (its participant will never return), audited.
// --abort TXN --reason R: refused when TXN has a record (after the commit
// point the outcome can only be commit); otherwise the abort is recorded
// in the audit log (presumed abort holds anyway: nothing to undo).
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "tools/recover_commands.h"

namespace once::recover {
namespace {

using coordinator::TxnRecord;
using coordinator::TxnState;

// Deletes the batches of `records` (all of one topic and group) in their
// group with one AckPositions. Returns a note when it could not delete
// everything (the topic or group is gone: nothing left to delete; a
// message past the log's end: verify reports it).
absl::StatusOr<std::string> DeleteInBroker(Session& session,
                                           const std::vector<const TxnRecord*>& records) {
  if (records.empty()) return std::string();
  ONCE_RETURN_IF_ERROR(session.OpenBroker());
  const std::string& topic = records[0]->topic;
  const std::string& name = records[0]->group;
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group =
      session.groups()->GetGroup(topic, name);
  if (group.status().code() == absl::StatusCode::kNotFound) {
    return absl::StrCat("group ", topic, "/", name, " no longer exists: nothing to delete (",
                        group.status().message(), ")");
  }
  if (!group.ok()) return group.status();
  std::vector<broker::MessagePosition> positions;
  size_t missing = 0;
  for (const TxnRecord* r : records) {
    for (const auto& m : r->messages) {
      broker::Log* log = (*group)->topic()->partition(static_cast<int>(m.partition));
      // A memory topic's messages are gone after a restart.
      if (log == nullptr || static_cast<int64_t>(m.offset) >= log->NextOffset()) {
        ++missing;
        continue;
      }
      positions.push_back(
          broker::MessagePosition{static_cast<int>(m.partition), static_cast<int64_t>(m.offset)});
    }
  }
  for (size_t begin = 0; begin < positions.size(); begin += broker::kMaxTokensPerCall) {
    const size_t n = std::min(broker::kMaxTokensPerCall, positions.size() - begin);
    absl::Status acked = (*group)->AckPositions(absl::MakeConstSpan(positions.data() + begin, n));
    if (!acked.ok()) {
      return absl::Status(acked.code(),
                          absl::StrCat("deleting ", records.size(), " batch(es) in group ", topic,
                                       "/", name, ": ", acked.message()));
    }
  }
  if (missing > 0) {
    return absl::StrCat(missing, " message(s) of ", topic, "/", name,
                        " not in the log (memory topic or damaged log)");
  }
  return std::string();
}

absl::StatusOr<Output> ForceCommit(Session& session, const Command& command) {
  Output out;
  out.json["command"] = "resolve";
  out.json["action"] = "commit";
  out.json["txn"] = command.txn;
  coordinator::TxnStore* store = session.store();
  std::optional<TxnRecord> record;
  if (store != nullptr) {
    ONCE_ASSIGN_OR_RETURN(record, store->Find(command.txn));
  }
  if (!record.has_value()) {
    out.exit_code = kExitRefused;
    Appendf(&out,
            "refused: txn %s has no COMMIT record, so it cannot be committed offline (it is "
            "aborted: presumed abort; its leases died with onced)\n",
            command.txn.c_str());
    out.json["result"] = "refused";
    return out;
  }
  if (record->state == TxnState::kDone) {
    Appendf(&out, "txn %s is already done; nothing to do\n", command.txn.c_str());
    out.json["result"] = "already_done";
    return out;
  }
  ONCE_ASSIGN_OR_RETURN(std::string note, DeleteInBroker(session, {&*record}));
  ONCE_RETURN_IF_ERROR(store->MarkBrokerDeleted(record->txn));
  // Audit before done: an interruption leaves an audited, still committed
  // txn (run it again), never a finished one without its audit entry.
  ONCE_RETURN_IF_ERROR(store->Audit(record->txn, "force_commit", command.reason, kActor));
  ONCE_RETURN_IF_ERROR(store->RecordDone(record->txn));
  Appendf(&out, "txn %s: batch of %zu message(s) deleted in %s/%s, marked done (audited)%s%s\n",
          record->txn.c_str(), record->messages.size(), record->topic.c_str(),
          record->group.c_str(), note.empty() ? "" : "; note: ", note.c_str());
  out.json["result"] = "committed";
  out.json["note"] = note;
  return out;
}

absl::StatusOr<Output> ForceAbort(Session& session, const Command& command) {
  Output out;
  out.json["command"] = "resolve";
  out.json["action"] = "abort";
  out.json["txn"] = command.txn;
  coordinator::TxnStore* store = session.store();
  if (store == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("no coordinator.db in ", session.data_dir(),
                     ": no txn was ever decided here, and there is no audit log to record in"));
  }
  ONCE_ASSIGN_OR_RETURN(std::optional<TxnRecord> record, store->Find(command.txn));
  if (record.has_value()) {
    out.exit_code = kExitRefused;
    Appendf(&out,
            "refused: txn %s has a COMMIT record (state %s); after the commit point the outcome "
            "can only be commit. Use 'resolve --commit %s --reason ...' to finish it.\n",
            command.txn.c_str(), std::string(TxnStateName(record->state)).c_str(),
            command.txn.c_str());
    out.json["result"] = "refused";
    return out;
  }
  ONCE_RETURN_IF_ERROR(store->Audit(command.txn, "force_abort", command.reason, kActor));
  Appendf(&out,
          "txn %s has no COMMIT record: it is aborted (presumed abort holds anyway); the abort "
          "is recorded in the audit log\n",
          command.txn.c_str());
  out.json["result"] = "aborted";
  return out;
}

}  // namespace

absl::StatusOr<Output> RunResolve(Session& session, const Command& command, int64_t now_ms) {
  ONCE_RETURN_IF_ERROR(session.SchemaError());
  if (command.force_commit) return ForceCommit(session, command);
  if (command.force_abort) return ForceAbort(session, command);

  Output out;
  out.json["command"] = "resolve";
  out.json["action"] = "redrive";
  std::vector<TxnRecord> unfinished;
  if (session.store() != nullptr) {
    ONCE_ASSIGN_OR_RETURN(unfinished, session.store()->LoadUnfinished());
  }
  boost::json::array txns;
  size_t deleted = 0;
  // In chunks: per chunk one AckPositions per group, then one durable
  // transaction marking them deleted and one for their audit entries. The
  // ack comes first, so an interruption only leaves txns to redo (both
  // steps are idempotent).
  constexpr size_t kChunk = 500;
  for (size_t begin = 0; begin < unfinished.size(); begin += kChunk) {
    const size_t end = std::min(unfinished.size(), begin + kChunk);
    std::map<std::pair<std::string, std::string>, std::vector<const TxnRecord*>> by_group;
    for (size_t i = begin; i < end; ++i) {
      by_group[{unfinished[i].topic, unfinished[i].group}].push_back(&unfinished[i]);
    }
    std::map<std::pair<std::string, std::string>, std::string> notes;
    for (const auto& [key, records] : by_group) {
      ONCE_ASSIGN_OR_RETURN(notes[key], DeleteInBroker(session, records));
    }
    std::vector<std::string> ids;
    std::vector<coordinator::AuditEntry> entries;
    for (size_t i = begin; i < end; ++i) {
      ids.push_back(unfinished[i].txn);
      coordinator::AuditEntry e;
      e.txn = unfinished[i].txn;
      e.action = "resolve";
      e.reason = command.reason.empty() ? "offline re-drive" : command.reason;
      e.actor = kActor;
      entries.push_back(std::move(e));
    }
    ONCE_RETURN_IF_ERROR(session.store()->MarkBrokerDeletedBatch(ids));
    ONCE_RETURN_IF_ERROR(session.store()->AuditBatch(entries));
    for (size_t i = begin; i < end; ++i) {
      const TxnRecord& r = unfinished[i];
      const std::string& note = notes[{r.topic, r.group}];
      Appendf(&out,
              "txn %s: batch of %zu message(s) deleted in %s/%s%s%s; COMMIT is re-sent to %s "
              "when it reconnects to onced\n",
              r.txn.c_str(), r.messages.size(), r.topic.c_str(), r.group.c_str(),
              note.empty() ? "" : "; note: ", note.c_str(), r.participant.c_str());
      boost::json::object o;
      o["txn"] = r.txn;
      o["participant"] = r.participant;
      o["age_ms"] = now_ms - r.decided_ms;
      o["note"] = note;
      txns.push_back(std::move(o));
      ++deleted;
    }
    if (unfinished.size() > kChunk) {
      std::fprintf(stderr, "resolve: %zu/%zu transactions re-driven\n", deleted, unfinished.size());
    }
  }
  Appendf(&out, "%zu unfinished transaction%s re-driven\n", deleted, deleted == 1 ? "" : "s");
  out.json["redriven"] = deleted;
  out.json["transactions"] = std::move(txns);
  return out;
}

}  // namespace once::recover
