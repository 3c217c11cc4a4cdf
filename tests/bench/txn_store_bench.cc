// The coordinator store's cost per transaction, without the disk: one
// COMMIT record (6 messages, one run) and its done marking, each through
// the store's writer thread, with synchronous=NORMAL (WAL: no fsync at a
// commit) so that the figure is the CPU and the hand-offs an exactly-once
// transaction spends in SQLite, which sit on its latency path next to the
// fsync.
//
//   build/tests/bench/txn_store_bench
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "coordinator/txn_store.h"

namespace once::coordinator {
namespace {

void BM_TxnStoreCommitAndDone(benchmark::State& state) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "once_txn_store_bench_XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) abort();
  const std::filesystem::path dir = tmpl;
  {
    TxnStoreOptions options;
    options.synchronous_full = false;
    absl::StatusOr<std::unique_ptr<TxnStore>> store =
        TxnStore::Open((dir / "coordinator.db").string(), options);
    if (!store.ok()) state.SkipWithError(store.status().ToString().c_str());
    int64_t sequence = 0;
    for (auto _ : state) {
      TxnRecord r;
      r.txn = absl::StrCat("1.", ++sequence);
      r.topic = "payments";
      r.group = "ledger";
      r.participant = "ledger-1";
      r.epoch = 1;
      r.generation = 1;
      r.created_ms = 1;
      for (uint64_t i = 0; i < 6; ++i) r.messages.push_back({0, 6 * sequence + i});
      if (absl::Status s = (*store)->RecordCommit(std::move(r)); !s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        break;
      }
      if (absl::Status s = (*store)->RecordDone(absl::StrCat("1.", sequence)); !s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        break;
      }
    }
    state.SetItemsProcessed(state.iterations());  // transactions
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_TxnStoreCommitAndDone)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace once::coordinator

BENCHMARK_MAIN();
