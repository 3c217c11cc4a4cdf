// The participant SDK's journal (SqliteResource) per exactly-once
// transaction, as the SDK drives it under load: a group with the id
// checks of a PREPARE of `batch` messages (one INSERT effect each) and its
// journal write, EndGroup; then a group with its COMMIT, EndGroup. Each
// group ends with one fsync (synchronous=FULL, on TMPDIR's file system):
// the CPU time per message is what bounds a consumer that reads a
// backlog, the real time adds the two fsyncs.
#include <benchmark/benchmark.h>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "once/sqlite_resource.h"

namespace once {
namespace {

constexpr char kInsert[] = "INSERT INTO effects (message_id, value) VALUES (?1, ?2)";

class Journal {
 public:
  Journal() {
    std::string tmpl = std::filesystem::temp_directory_path() / "once_participant_bench_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir_ = tmpl;
    auto r = SqliteResource::Open(dir_ + "/consumer.db", SqliteResourceOptions{});
    if (!r.ok()) std::abort();
    resource_ = std::move(*r);
    absl::Status s = resource_->WithDatabase([](sqlite::Database* db) {
      return db->Exec("CREATE TABLE effects (message_id TEXT NOT NULL, value INTEGER NOT NULL)");
    });
    if (!s.ok()) std::abort();
  }
  ~Journal() {
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  // One transaction of `batch` fresh messages through both groups.
  void PrepareCommit(int batch) {
    PreparedTxn txn{.txn = absl::StrCat("1.", ++txns_),
                    .topic = "bench",
                    .group = "g",
                    .epoch = 1,
                    .generation = 1,
                    .messages = {}};
    txn.messages.reserve(static_cast<size_t>(batch));
    if (!resource_->BeginGroup().ok()) std::abort();
    for (int i = 0; i < batch; ++i) {
      StagedMessage m;
      m.message_id = absl::StrCat("bench/0/", next_offset_++);
      absl::StatusOr<bool> committed = resource_->IsCommitted(m.message_id);
      if (!committed.ok() || *committed) std::abort();
      m.effects.push_back(Effect{kInsert, {m.message_id, int64_t{i}}});
      txn.messages.push_back(std::move(m));
    }
    if (!resource_->Prepare(txn).ok() || !resource_->EndGroup().ok()) std::abort();
    if (!resource_->BeginGroup().ok()) std::abort();
    absl::StatusOr<CommitResult> r = resource_->Commit(txn.txn);
    if (!r.ok() || r->applied != batch || !resource_->EndGroup().ok()) std::abort();
  }

 private:
  std::string dir_;
  std::unique_ptr<SqliteResource> resource_;
  int64_t txns_ = 0;
  int64_t next_offset_ = 0;
};

void BM_PrepareCommit(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Journal journal;
  for (auto _ : state) journal.PrepareCommit(batch);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_PrepareCommit)->Arg(1)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace once

BENCHMARK_MAIN();
