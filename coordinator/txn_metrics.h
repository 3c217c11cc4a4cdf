// TxnMetrics: the 2PC engine's counters and histograms, and their
// Prometheus text (appended to GET /metrics by coordinator/metrics.cc):
//
//   once_txn_state{state}                    gauge: open txns per state
//   once_txn_in_doubt                        gauge: YES votes without an
//                                            outcome acknowledged (DONE)
//   once_txn_prepare_seconds                 PREPARE sent -> vote received
//   once_txn_commit_seconds                  YES received -> COMMIT durable
//   once_txn_decisions_per_commit            gauge: COMMIT records per
//                                            SQLite commit (group commit)
//   once_txn_group_commits_total, once_txn_decisions_total
//   once_txn_commits_total, once_txn_done_total
//   once_txn_aborts_total{reason}            vote_no, vote_timeout,
//                                            disconnect, hello, pin_refused,
//                                            not_durable, forced
//
// Thread-safe: one mutex around small maps; no I/O under it.
#ifndef ONCE_COORDINATOR_TXN_METRICS_H_
#define ONCE_COORDINATOR_TXN_METRICS_H_

#include <chrono>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/metrics.h"

namespace once::coordinator {

// The engine's state at scrape time.
struct TxnGauges {
  int64_t preparing = 0;
  int64_t voted_yes = 0;
  int64_t committed = 0;
  int64_t in_doubt = 0;
};

// The store's group-commit counters at scrape time.
struct TxnStoreCounters {
  uint64_t commits = 0;
  uint64_t decisions = 0;
};

// Seconds from `start` to now on the monotonic clock: what the histograms
// observe (sub-millisecond waits are most of them).
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class TxnMetrics {
 public:
  void ObservePrepare(double seconds);
  void ObserveCommit(double seconds);
  void CountAbort(absl::string_view reason);
  void CountDone();
  void CountCommitted();

  int64_t aborts(absl::string_view reason) const;

  // Appends the exposition text of the counters above, `gauges` and
  // `store`.
  void Render(const TxnGauges& gauges, const TxnStoreCounters& store, std::string* out) const;

 private:
  mutable absl::Mutex mu_;
  LatencyHistogram prepare_ ABSL_GUARDED_BY(mu_);
  LatencyHistogram commit_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<std::string, int64_t> aborts_ ABSL_GUARDED_BY(mu_);
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t committed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_TXN_METRICS_H_
