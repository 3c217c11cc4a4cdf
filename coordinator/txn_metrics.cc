#include "coordinator/txn_metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace once::coordinator {
namespace {

void Header(std::string* out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

void TxnMetrics::ObservePrepare(double seconds) {
  absl::MutexLock lock(&mu_);
  prepare_.Observe(seconds);
}

void TxnMetrics::ObserveCommit(double seconds) {
  absl::MutexLock lock(&mu_);
  commit_.Observe(seconds);
}

void TxnMetrics::CountAbort(absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  ++aborts_[std::string(reason)];
}

void TxnMetrics::CountDone() {
  absl::MutexLock lock(&mu_);
  ++done_;
}

void TxnMetrics::CountCommitted() {
  absl::MutexLock lock(&mu_);
  ++committed_;
}

int64_t TxnMetrics::aborts(absl::string_view reason) const {
  absl::MutexLock lock(&mu_);
  auto it = aborts_.find(std::string(reason));
  return it == aborts_.end() ? 0 : it->second;
}

void TxnMetrics::Render(const TxnGauges& gauges, const TxnStoreCounters& store,
                        std::string* out) const {
  Header(out, "once_txn_state", "gauge",
         "Open exactly-once transactions per state (aborted and done ones are not kept).");
  absl::StrAppend(out, "once_txn_state{state=\"preparing\"} ", gauges.preparing, "\n");
  absl::StrAppend(out, "once_txn_state{state=\"voted_yes\"} ", gauges.voted_yes, "\n");
  absl::StrAppend(out, "once_txn_state{state=\"committed\"} ", gauges.committed, "\n");
  Header(out, "once_txn_in_doubt", "gauge",
         "Transactions whose participant voted yes and has not acknowledged an outcome.");
  absl::StrAppend(out, "once_txn_in_doubt ", gauges.in_doubt, "\n");
  Header(out, "once_txn_decisions_per_commit", "gauge",
         "COMMIT records per SQLite transaction of the coordinator's group commit.");
  const double ratio =
      store.commits == 0 ? 0.0 : static_cast<double>(store.decisions) / store.commits;
  absl::StrAppend(out, "once_txn_decisions_per_commit ", absl::StrFormat("%.6g", ratio), "\n");
  Header(out, "once_txn_group_commits_total", "counter",
         "SQLite transactions written by the coordinator's store.");
  absl::StrAppend(out, "once_txn_group_commits_total ", store.commits, "\n");
  Header(out, "once_txn_decisions_total", "counter", "COMMIT records written.");
  absl::StrAppend(out, "once_txn_decisions_total ", store.decisions, "\n");

  absl::MutexLock lock(&mu_);
  Header(out, "once_txn_commits_total", "counter",
         "Transactions that reached the commit point in this process.");
  absl::StrAppend(out, "once_txn_commits_total ", committed_, "\n");
  Header(out, "once_txn_done_total", "counter",
         "Committed transactions acknowledged by their participant (DONE) and deleted.");
  absl::StrAppend(out, "once_txn_done_total ", done_, "\n");
  Header(out, "once_txn_aborts_total", "counter", "Aborted transactions, by reason.");
  for (const auto& [reason, n] : aborts_) {
    absl::StrAppend(out, "once_txn_aborts_total{reason=\"", EscapeLabelValue(reason), "\"} ", n,
                    "\n");
  }
  Header(out, "once_txn_prepare_seconds", "histogram", "From PREPARE sent to the vote received.");
  prepare_.Render("once_txn_prepare_seconds", "", out);
  Header(out, "once_txn_commit_seconds", "histogram",
         "From the YES vote to the durable COMMIT record (pin and group commit).");
  commit_.Render("once_txn_commit_seconds", "", out);
}

}  // namespace once::coordinator
