// Consumer-group throughput: lease+ack in shared mode and read+commit in
// ordered mode, on memory and disk topics (disk: fsync=always, one durable
// group-store commit per ack batch), against the disk append rate of the
// same messages as the baseline.
//
//   build/tests/bench/group_bench --benchmark_counters_tabular=true
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "broker/broker.h"
#include "broker/consumer_group.h"
#include "broker/group_registry.h"

namespace once::broker {
namespace {

constexpr int kBatch = 100;
constexpr size_t kValueBytes = 100;

// A broker and registry in a fresh temp directory, removed at the end.
class Fixture {
 public:
  Fixture() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "once_group_bench_XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    dir_ = tmpl;
    BrokerOptions options;
    options.data_dir = dir_;
    broker_ = *Broker::Open(options);
    registry_ = *GroupRegistry::Open(broker_.get(), GroupRegistryOptions());
  }
  ~Fixture() {
    registry_.reset();
    broker_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::shared_ptr<Topic> MakeTopic(Backend backend) {
    TopicConfig c;
    c.backend = backend;
    c.fsync = FsyncPolicy::kAlways;
    c.dedup_window_ms = 0;
    if (!broker_->CreateTopic("t", c).ok()) abort();
    return *broker_->GetTopic("t");
  }

  std::shared_ptr<ConsumerGroup> MakeGroup(GroupMode mode) {
    GroupConfig c;
    c.mode = mode;
    c.prefetch = kBatch;
    if (!registry_->CreateGroup("t", "g", c).ok()) abort();
    return *registry_->GetGroup("t", "g");
  }

  std::string dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<GroupRegistry> registry_;
};

std::vector<Record> Batch(int n) {
  std::vector<Record> records(n);
  for (Record& r : records) r.value.assign(kValueBytes, 'v');
  return records;
}

void Publish(Topic& topic, int n) {
  for (int i = 0; i < n; i += kBatch) {
    if (!topic.Publish(Batch(kBatch)).ok()) abort();
  }
}

// Fetches kBatch and acks them in one call, per iteration.
void RunConsume(benchmark::State& state, Backend backend, GroupMode mode) {
  Fixture f;
  std::shared_ptr<Topic> topic = f.MakeTopic(backend);
  std::shared_ptr<ConsumerGroup> group = f.MakeGroup(mode);
  const int refill = backend == Backend::kMemory ? 200'000 : 20'000;
  Publish(*topic, refill);
  int64_t messages = 0;
  std::vector<std::string> tokens;
  tokens.reserve(kBatch);
  for (auto _ : state) {
    auto ds = group->Fetch("bench", kBatch);
    if (!ds.ok()) {
      state.SkipWithError(ds.status().ToString().c_str());
      break;
    }
    if (ds->empty()) {
      state.PauseTiming();
      f.registry_->ReclaimSpace().IgnoreError();
      Publish(*topic, refill);
      state.ResumeTiming();
      continue;
    }
    tokens.clear();
    for (const Delivery& d : *ds) tokens.push_back(d.token);
    auto r = group->Ack(tokens);
    if (!r.ok() || r->applied != static_cast<int64_t>(tokens.size())) {
      state.SkipWithError("ack failed");
      break;
    }
    messages += static_cast<int64_t>(tokens.size());
  }
  state.SetItemsProcessed(messages);
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
  state.counters["store_commits"] = static_cast<double>(f.registry_->store()->stats().commits);
}

void BM_SharedLeaseAck_Memory(benchmark::State& state) {
  RunConsume(state, Backend::kMemory, GroupMode::kShared);
}
void BM_SharedLeaseAck_Disk(benchmark::State& state) {
  RunConsume(state, Backend::kDisk, GroupMode::kShared);
}
void BM_OrderedReadCommit_Memory(benchmark::State& state) {
  RunConsume(state, Backend::kMemory, GroupMode::kOrdered);
}
void BM_OrderedReadCommit_Disk(benchmark::State& state) {
  RunConsume(state, Backend::kDisk, GroupMode::kOrdered);
}

// The baseline: appending batches of kBatch messages of the same size to a
// disk topic with fsync=always.
void BM_DiskAppend(benchmark::State& state) {
  Fixture f;
  std::shared_ptr<Topic> topic = f.MakeTopic(Backend::kDisk);
  int64_t messages = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Record> batch = Batch(kBatch);
    state.ResumeTiming();
    if (!topic->Publish(std::move(batch)).ok()) {
      state.SkipWithError("publish failed");
      break;
    }
    messages += kBatch;
  }
  state.SetItemsProcessed(messages);
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
}

// Several consumers acking concurrently on a disk topic: the group store
// commits their batches together (see store_commits vs iterations).
void BM_SharedLeaseAck_DiskConcurrent(benchmark::State& state) {
  static Fixture* f = nullptr;
  static std::shared_ptr<ConsumerGroup> group;
  static std::shared_ptr<Topic> topic;
  if (state.thread_index() == 0) {
    f = new Fixture();
    topic = f->MakeTopic(Backend::kDisk);
    group = f->MakeGroup(GroupMode::kShared);
    Publish(*topic, 200'000);
  }
  const std::string consumer = absl::StrCat("c", state.thread_index());
  int64_t messages = 0;
  std::vector<std::string> tokens;
  for (auto _ : state) {
    auto ds = group->Fetch(consumer, kBatch);
    if (!ds.ok() || ds->empty()) {
      state.SkipWithError("ran out of messages or fetch failed");
      break;
    }
    tokens.clear();
    for (const Delivery& d : *ds) tokens.push_back(d.token);
    if (!group->Ack(tokens).ok()) {
      state.SkipWithError("ack failed");
      break;
    }
    messages += static_cast<int64_t>(tokens.size());
  }
  state.SetItemsProcessed(messages);
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
  if (state.thread_index() == 0) {
    state.counters["store_commits"] = static_cast<double>(f->registry_->store()->stats().commits);
    state.counters["store_batches"] = static_cast<double>(f->registry_->store()->stats().batches);
    group.reset();
    topic.reset();
    delete f;
    f = nullptr;
  }
}

BENCHMARK(BM_SharedLeaseAck_Memory)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OrderedReadCommit_Memory)->Unit(benchmark::kMicrosecond);
// Disk runs wait on fsync: rates are per wall-clock second.
BENCHMARK(BM_DiskAppend)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SharedLeaseAck_Disk)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OrderedReadCommit_Disk)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SharedLeaseAck_DiskConcurrent)
    ->Threads(4)
    ->Iterations(400)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace once::broker

BENCHMARK_MAIN();
