// Throughput of the two Log backends: disk appends under fsync=never (bytes
// per second against the disk's sequential bandwidth) and fsync=always from
// concurrent appenders (group commit), sequential reads, and the memory log.
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "broker/disk_log.h"
#include "broker/fsync_histogram.h"
#include "broker/log.h"
#include "broker/memory_log.h"
#include "broker/record.h"
#include "broker/task_pool.h"
#include "broker/wake_word.h"

namespace once::broker {
namespace {

// A fresh directory under /tmp, removed when destroyed.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/once_log_bench.XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A record whose PayloadBytes() is `size`, shaped like a producer's.
Record MakeRecord(size_t size, int64_t i) {
  Record r;
  r.timestamp_ms = 1'700'000'000'000 + i;
  r.flags = kRecordHasKey;
  r.key = absl::StrCat("key-", i % 1000);
  r.key.resize(8, '_');
  r.value.assign(size - r.key.size(), static_cast<char>('a' + i % 26));
  return r;
}

std::vector<Record> MakeBatch(size_t record_size, int64_t count) {
  std::vector<Record> batch;
  for (int64_t i = 0; i < count; ++i) batch.push_back(MakeRecord(record_size, i));
  return batch;
}

std::unique_ptr<DiskLog> OpenDiskLog(const std::string& dir, FsyncPolicy fsync,
                                     benchmark::State& state, TaskPool* executor = nullptr) {
  DiskLogOptions options;
  options.dir = dir + "/p0";
  options.fsync = fsync;
  if (executor != nullptr) options.executor = executor->AsExecutor();
  absl::StatusOr<std::unique_ptr<DiskLog>> log = DiskLog::Open(options);
  if (!log.ok()) {
    state.SkipWithError(std::string(log.status().message()).c_str());
    return nullptr;
  }
  return std::move(log).value();
}

// Args: record size, records per Append. Old segments are trimmed as the
// run goes so that a long run does not fill the disk (the trim's unlinks are
// part of the cost, as they would be in a broker applying retention).
void BM_DiskAppendNever(benchmark::State& state) {
  const size_t record_size = static_cast<size_t>(state.range(0));
  const int64_t batch_size = state.range(1);
  TempDir dir;
  std::unique_ptr<DiskLog> log = OpenDiskLog(dir.path(), FsyncPolicy::kNever, state);
  if (log == nullptr) return;
  const std::vector<Record> batch = MakeBatch(record_size, batch_size);
  int64_t appended = 0;
  for (auto _ : state) {
    absl::StatusOr<int64_t> offset = log->Append(batch);
    if (!offset.ok()) {
      state.SkipWithError(std::string(offset.status().message()).c_str());
      break;
    }
    appended += batch_size;
    if ((appended & 0x3fff) < batch_size && log->Stats().segments > 8) {
      (void)log->TrimBefore(log->NextOffset());
    }
  }
  state.SetItemsProcessed(appended);
  state.SetBytesProcessed(appended * static_cast<int64_t>(record_size));
}
BENCHMARK(BM_DiskAppendNever)
    ->ArgNames({"bytes", "batch"})
    ->Args({256, 1})
    ->Args({256, 64})
    ->Args({4096, 1})
    ->Args({4096, 64})
    ->UseRealTime();

// fsync=always, one record per Append from each of N threads sharing one
// log: the msg/s ratio between 16 threads and 1 is what group commit buys.
std::unique_ptr<TempDir> always_dir;
std::unique_ptr<DiskLog> always_log;

void BM_DiskAppendAlways(benchmark::State& state) {
  if (state.thread_index() == 0) {
    always_dir = std::make_unique<TempDir>();
    always_log = OpenDiskLog(always_dir->path(), FsyncPolicy::kAlways, state);
  }
  const std::vector<Record> one = MakeBatch(256, 1);
  const FsyncHistogram::Snapshot syncs_before = FsyncHistogram::Global().Read();
  int64_t appended = 0;
  for (auto _ : state) {
    if (always_log == nullptr) break;
    absl::StatusOr<int64_t> offset = always_log->Append(one);
    if (!offset.ok()) {
      state.SkipWithError(std::string(offset.status().message()).c_str());
      break;
    }
    ++appended;
  }
  state.SetItemsProcessed(appended);
  state.SetBytesProcessed(appended * 256);
  if (state.thread_index() == 0) {
    if (always_log != nullptr) {
      const LogStats stats = always_log->Stats();
      state.counters["appends_per_sync"] =
          stats.syncs > 0 ? static_cast<double>(stats.appends) / static_cast<double>(stats.syncs)
                          : 0;
      // The mean fdatasync, to tell a slower disk from a worse grouping.
      const FsyncHistogram::Snapshot syncs_after = FsyncHistogram::Global().Read();
      const uint64_t count = syncs_after.count - syncs_before.count;
      state.counters["sync_us"] = count > 0
                                      ? 1e6 * (syncs_after.sum_seconds - syncs_before.sum_seconds) /
                                            static_cast<double>(count)
                                      : 0;
    }
    always_log.reset();
    always_dir.reset();
  }
}
BENCHMARK(BM_DiskAppendAlways)->Threads(1)->Threads(4)->Threads(16)->UseRealTime();

// fsync=always through AppendAsync: `in_flight` appends (one record each)
// outstanding at all times, each callback queuing the next, the way a
// request handler that answers from the callback appends. Its ratio
// between 16 in flight and 1 is group commit without a thread to wake per
// append (the group commits and callbacks run on one TaskPool thread).
void BM_DiskAppendAlwaysAsync(benchmark::State& state) {
  const int in_flight = static_cast<int>(state.range(0));
  TempDir dir;
  TaskPool flusher;  // outlives the log, whose destructor waits for it
  std::unique_ptr<DiskLog> log = OpenDiskLog(dir.path(), FsyncPolicy::kAlways, state, &flusher);
  if (log == nullptr) return;
  const std::vector<Record> one = MakeBatch(256, 1);
  const FsyncHistogram::Snapshot syncs_before = FsyncHistogram::Global().Read();

  // The callbacks run on the flusher. This thread counts their completions
  // and, when it is ahead of them, sleeps until `wake_at` completions (a
  // group's worth): woken once per group, not once per append, it costs
  // the flusher one futex wake per group at most.
  std::atomic<int64_t> completed{0};
  std::atomic<int64_t> wake_at{0};
  std::atomic<int> outstanding{in_flight};
  std::atomic<bool> stop{false};
  std::atomic<bool> sleeping{false};
  std::atomic<bool> failed{false};
  WakeWord progress;
  std::string error;  // written once, before `failed`
  std::function<void()> submit = [&] {
    log->AppendAsync(one, Log::AsyncStart::kExecutor, [&](absl::StatusOr<int64_t> first) {
      if (!first.ok() && !failed.load()) {
        error = std::string(first.status().message());
        failed.store(true);
      }
      const bool again = !stop.load() && first.ok();
      const bool last = !again && outstanding.fetch_sub(1) == 1;
      const bool woken = completed.fetch_add(1) + 1 >= wake_at.load() || last || !first.ok();
      if (woken && sleeping.exchange(false)) progress.Bump();  // the first to see it
      if (again) submit();
    });
  };
  // Sleeps until `done()`; each callback changes what `done` reads before it
  // checks `sleeping`, so one of the two sides sees the other.
  auto wait_until = [&](int64_t wake_after, auto done) {
    while (!done()) {
      wake_at.store(wake_after);
      const uint32_t seen = progress.Load();
      sleeping.store(true);
      if (!done() && completed.load() < wake_after) progress.Wait(seen);
      sleeping.store(false);
    }
  };
  for (int i = 0; i < in_flight; ++i) submit();
  int64_t iterations = 0;
  for (auto _ : state) {
    ++iterations;
    wait_until(iterations + in_flight - 1,
               [&] { return completed.load() >= iterations || failed.load(); });
    if (failed.load()) {
      state.SkipWithError(error.c_str());
      break;
    }
  }
  stop.store(true);
  wait_until(0, [&] { return outstanding.load() == 0; });
  state.SetItemsProcessed(iterations);
  state.SetBytesProcessed(iterations * 256);
  const LogStats stats = log->Stats();
  state.counters["appends_per_sync"] =
      stats.syncs > 0 ? static_cast<double>(stats.appends) / static_cast<double>(stats.syncs) : 0;
  const FsyncHistogram::Snapshot syncs_after = FsyncHistogram::Global().Read();
  const uint64_t count = syncs_after.count - syncs_before.count;
  state.counters["sync_us"] =
      count > 0
          ? 1e6 * (syncs_after.sum_seconds - syncs_before.sum_seconds) / static_cast<double>(count)
          : 0;
}
BENCHMARK(BM_DiskAppendAlwaysAsync)->ArgName("in_flight")->Arg(1)->Arg(4)->Arg(16)->UseRealTime();

// What group commit cannot save: N threads that each wait for their own
// append must each be woken after a group's fdatasync and run until they
// queue again. This is that cycle alone, with no disk: one futex wake of
// every waiter (as the combiner's), then each thread arrives and sleeps
// until the last one to arrive wakes them all. Its time per iteration at
// 16 threads is the floor under the 16-appender fsync=always group's
// time beyond its fdatasync (scripts/bench prints the bound).
std::atomic<int> cycle_arrived{0};
WakeWord cycle_round;

void BM_GroupWakeCycle(benchmark::State& state) {
  const int threads = state.threads();
  for (auto _ : state) {
    const uint32_t seen = cycle_round.Load();
    if (cycle_arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == threads) {
      cycle_arrived.store(0, std::memory_order_relaxed);
      cycle_round.Bump();
    } else {
      while (cycle_round.Load() == seen) cycle_round.Wait(seen);
    }
  }
  // items_per_second: thread wake-ups a second; a cycle takes
  // threads / items_per_second (scripts/bench_table.py prints it).
  state.SetItemsProcessed(state.iterations());
}
// Every thread runs the same number of iterations, so no one is left
// waiting at the end.
BENCHMARK(BM_GroupWakeCycle)->Threads(4)->Threads(16)->UseRealTime();

// Reads 1000 records (256 B) per call from a log written beforehand,
// wrapping around at the end.
void BM_DiskSequentialRead(benchmark::State& state) {
  constexpr int64_t kRecords = 200'000;
  TempDir dir;
  std::unique_ptr<DiskLog> log = OpenDiskLog(dir.path(), FsyncPolicy::kNever, state);
  if (log == nullptr) return;
  const std::vector<Record> batch = MakeBatch(256, 1000);
  for (int64_t i = 0; i < kRecords; i += 1000) {
    if (!log->Append(batch).ok()) {
      state.SkipWithError("prefill failed");
      return;
    }
  }
  int64_t offset = 0;
  int64_t records = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::vector<Record>> got = log->Read(offset, ReadLimits{1000, 1 << 20});
    if (!got.ok()) {
      state.SkipWithError(std::string(got.status().message()).c_str());
      break;
    }
    records += static_cast<int64_t>(got->size());
    for (const Record& r : *got) bytes += static_cast<int64_t>(r.PayloadBytes());
    offset = got->empty() ? 0 : got->back().offset + 1;
    if (offset >= kRecords) offset = 0;
  }
  state.SetItemsProcessed(records);
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_DiskSequentialRead)->UseRealTime();

// Memory log, 256 B records: Append of `batch` records, then a Read of
// them back. The log is trimmed as it goes to stay within its budget.
void BM_MemoryAppendRead(benchmark::State& state) {
  const int64_t batch_size = state.range(0);
  MemoryBudget budget(int64_t{1} << 30);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  const std::vector<Record> batch = MakeBatch(256, batch_size);
  int64_t appended = 0;
  for (auto _ : state) {
    absl::StatusOr<int64_t> offset = log->Append(batch);
    if (!offset.ok()) {
      state.SkipWithError(std::string(offset.status().message()).c_str());
      break;
    }
    absl::StatusOr<std::vector<Record>> got =
        log->Read(*offset, ReadLimits{static_cast<size_t>(batch_size), 1 << 20});
    benchmark::DoNotOptimize(got);
    appended += batch_size;
    if ((appended & 0xffff) < batch_size) (void)log->TrimBefore(log->NextOffset() - 4096);
  }
  state.SetItemsProcessed(appended);
  state.SetBytesProcessed(appended * 256);
}
BENCHMARK(BM_MemoryAppendRead)->ArgName("batch")->Arg(1)->Arg(64);

// Memory log appends alone, 256 B records.
void BM_MemoryAppend(benchmark::State& state) {
  const int64_t batch_size = state.range(0);
  MemoryBudget budget(int64_t{1} << 30);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  const std::vector<Record> batch = MakeBatch(256, batch_size);
  int64_t appended = 0;
  for (auto _ : state) {
    absl::StatusOr<int64_t> offset = log->Append(batch);
    if (!offset.ok()) {
      state.SkipWithError(std::string(offset.status().message()).c_str());
      break;
    }
    appended += batch_size;
    if ((appended & 0xffff) < batch_size) (void)log->TrimBefore(log->NextOffset() - 4096);
  }
  state.SetItemsProcessed(appended);
  state.SetBytesProcessed(appended * 256);
}
BENCHMARK(BM_MemoryAppend)->ArgName("batch")->Arg(1)->Arg(64);

}  // namespace
}  // namespace once::broker

BENCHMARK_MAIN();
