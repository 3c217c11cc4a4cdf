#include "broker/broker.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/memory_log.h"
#include "broker/partitioner.h"
#include "broker/record.h"
#include "broker/topic.h"
#include "broker/topic_config.h"
#include "broker/topic_metadata.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

namespace fs = std::filesystem;
using ::once::testing::FakeClock;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Record Msg(std::string value, std::string idempotency_key = "", std::string key = "") {
  Record r;
  r.value = std::move(value);
  r.idempotency_key = std::move(idempotency_key);
  r.key = std::move(key);
  return r;
}

TopicConfig Disk(int partitions = 1) {
  TopicConfig c;
  c.partitions = partitions;
  c.backend = Backend::kDisk;
  c.fsync = FsyncPolicy::kNever;  // the tests do not need real syncs...
  c.segment_bytes = 4096;         // ...but do want several segments
  return c;
}

TopicConfig Memory(int partitions = 1) {
  TopicConfig c;
  c.partitions = partitions;
  c.backend = Backend::kMemory;
  return c;
}

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/broker_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    broker_.reset();
    fs::remove_all(dir_);
  }

  BrokerOptions Options() {
    BrokerOptions o;
    o.data_dir = dir_ + "/data";
    o.clock = &clock_;
    o.memory_budget_bytes = budget_bytes_;
    return o;
  }

  // (Re)opens the broker over the same data directory, as a restart would.
  absl::Status Reopen() {
    broker_.reset();
    absl::StatusOr<std::unique_ptr<Broker>> b = Broker::Open(Options());
    if (!b.ok()) return b.status();
    broker_ = *std::move(b);
    return absl::OkStatus();
  }

  std::shared_ptr<Topic> Get(const std::string& name) {
    absl::StatusOr<std::shared_ptr<Topic>> t = broker_->GetTopic(name);
    EXPECT_THAT(t, IsOk());
    return t.ok() ? *t : nullptr;
  }

  std::string TopicDir(const std::string& name) { return dir_ + "/data/topics/" + name; }

  std::vector<std::string> Values(Topic& topic, int partition, int64_t from = 0) {
    absl::StatusOr<std::vector<Record>> got =
        topic.Read(partition, from, ReadLimits{.max_records = 100000, .max_bytes = 1 << 30});
    EXPECT_THAT(got, IsOk());
    std::vector<std::string> out;
    if (got.ok()) {
      for (const Record& r : *got) out.push_back(r.value);
    }
    return out;
  }

  std::string dir_;
  FakeClock clock_;
  int64_t budget_bytes_ = int64_t{1} << 30;
  std::unique_ptr<Broker> broker_;
};

TEST_F(BrokerTest, CreateGetAndListTopicsInOrder) {
  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->ListTopics(), IsEmpty());
  ONCE_ASSERT_OK_AND_ASSIGN(CreateOutcome outcome, broker_->CreateTopic("zeta", Memory()));
  EXPECT_EQ(outcome, CreateOutcome::kCreated);
  ONCE_ASSERT_OK(broker_->CreateTopic("alpha", Disk(3)));
  ONCE_ASSERT_OK(broker_->CreateTopic("mid.dle-1", Memory(2)));
  EXPECT_THAT(broker_->ListTopics(), ElementsAre("alpha", "mid.dle-1", "zeta"));
  std::shared_ptr<Topic> alpha = Get("alpha");
  ASSERT_NE(alpha, nullptr);
  EXPECT_EQ(alpha->name(), "alpha");
  EXPECT_EQ(alpha->config(), Disk(3));
  EXPECT_TRUE(fs::exists(TopicDir("alpha") + "/topic.meta"));
  EXPECT_TRUE(fs::is_directory(TopicDir("alpha") + "/2"));
  EXPECT_TRUE(fs::exists(TopicDir("zeta") + "/topic.meta"));
}

TEST_F(BrokerTest, CreateWithTheSameConfigIsAlreadyExistsAndOtherSettingsFail) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK_AND_ASSIGN(CreateOutcome first, broker_->CreateTopic("t", Disk(2)));
  EXPECT_EQ(first, CreateOutcome::kCreated);
  ONCE_ASSERT_OK_AND_ASSIGN(CreateOutcome again, broker_->CreateTopic("t", Disk(2)));
  EXPECT_EQ(again, CreateOutcome::kAlreadyExists);
  TopicConfig other = Disk(4);
  other.retention_ms = 1000;
  EXPECT_THAT(broker_->CreateTopic("t", other),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("topic 't' exists with other settings"),
                             HasSubstr("partitions 2 (asked 4)"),
                             HasSubstr("retention_ms -1 (asked 1000)"))));
  EXPECT_THAT(
      broker_->CreateTopic("t", Memory(2)),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("backend disk (asked memory)")));
}

TEST_F(BrokerTest, BadNamesAndConfigsAreInvalidArgument) {
  ONCE_ASSERT_OK(Reopen());
  for (const char* name : {"", ".", "..", "a/b", "__x", "#creating-x"}) {
    EXPECT_THAT(broker_->CreateTopic(name, Memory()), StatusIs(absl::StatusCode::kInvalidArgument))
        << name;
  }
  EXPECT_THAT(broker_->CreateTopic("t", Memory(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("partitions")));
  EXPECT_THAT(broker_->CreateTopic("t", Memory(1025)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("partitions")));
  EXPECT_THAT(broker_->ListTopics(), IsEmpty());
  EXPECT_THAT(fs::is_empty(dir_ + "/data/topics"), true);
}

TEST_F(BrokerTest, UnknownTopicIsNotFound) {
  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->GetTopic("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("topic 'nope' does not exist")));
  EXPECT_THAT(broker_->DeleteTopic("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(broker_->DeleteTopic("../data"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(BrokerTest, DeleteThenRecreateGivesAnEmptyTopic) {
  ONCE_ASSERT_OK(Reopen());
  for (const TopicConfig& config : {Disk(2), Memory(2)}) {
    ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
    ONCE_ASSERT_OK(Get("t")->Publish({Msg("old", "id-1")}));
    ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
    EXPECT_THAT(broker_->GetTopic("t"), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_FALSE(fs::exists(TopicDir("t")));
    EXPECT_TRUE(fs::is_empty(dir_ + "/data/topics"));  // no tombstone left
    EXPECT_THAT(broker_->DeleteTopic("t"), StatusIs(absl::StatusCode::kNotFound));

    ONCE_ASSERT_OK_AND_ASSIGN(CreateOutcome outcome, broker_->CreateTopic("t", config));
    EXPECT_EQ(outcome, CreateOutcome::kCreated);
    std::shared_ptr<Topic> t = Get("t");
    for (int p = 0; p < 2; ++p) EXPECT_EQ(t->partition(p)->NextOffset(), 0);
    ONCE_ASSERT_OK_AND_ASSIGN(auto r, t->Publish({Msg("new", "id-1")}));
    EXPECT_FALSE(r[0].duplicate);  // the old topic's dedup entries are gone too
    ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
  }
}

TEST_F(BrokerTest, DeletedTopicStaysReadableButRefusesWritesFromItsHolders) {
  ONCE_ASSERT_OK(Reopen());
  for (const TopicConfig& config : {Disk(), Memory()}) {
    ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
    std::shared_ptr<Topic> held = Get("t");
    ONCE_ASSERT_OK(held->Publish({Msg("a")}));
    ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
    EXPECT_THAT(Values(*held, 0), ElementsAre("a"));
    // A topic recreated under the name must never see the old one's writes.
    ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
    EXPECT_THAT(held->Publish({Msg("b")}),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("topic 't' was deleted")));
    EXPECT_THAT(held->partition(0)->Append({Msg("b")}), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(held->partition(0)->TrimBefore(1), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(held->partition(0)->EnforceRetention(clock_.NowMs(), 1, 1),
                StatusIs(absl::StatusCode::kNotFound));
    EXPECT_EQ(Get("t")->partition(0)->NextOffset(), 0);
    ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
  }
}

TEST_F(BrokerTest, TopicOutlivesTheBrokerForItsHolders) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("t", Memory()));
  std::shared_ptr<Topic> held = Get("t");
  ONCE_ASSERT_OK(held->Publish({Msg("a")}));
  broker_.reset();  // and its memory budget, which the topic keeps alive
  ONCE_ASSERT_OK(held->Publish({Msg("b")}));
  EXPECT_THAT(Values(*held, 0), ElementsAre("a", "b"));
}

TEST_F(BrokerTest, RestartKeepsDiskTopicsConfigsOffsetsAndDedupEntries) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk(3);
  config.retention_bytes = 1 << 20;
  config.dedup_window_ms = 60'000;
  ONCE_ASSERT_OK(broker_->CreateTopic("orders", config));
  std::vector<Record> batch;
  for (int i = 0; i < 60; ++i) {
    batch.push_back(Msg(absl::StrCat("v", i), absl::StrCat("id-", i), absl::StrCat("k", i % 6)));
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto before, Get("orders")->Publish(batch));
  std::vector<int64_t> next(3);
  for (int p = 0; p < 3; ++p) next[p] = Get("orders")->partition(p)->NextOffset();

  clock_.Advance(30'000);
  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->ListTopics(), ElementsAre("orders"));
  std::shared_ptr<Topic> t = Get("orders");
  EXPECT_EQ(t->config(), config);
  for (int p = 0; p < 3; ++p) EXPECT_EQ(t->partition(p)->NextOffset(), next[p]) << p;
  // Every message is where the publish said, and its key's partition.
  for (int i = 0; i < 60; ++i) {
    ONCE_ASSERT_OK_AND_ASSIGN(
        auto got, t->Read(before[i].partition, before[i].offset, ReadLimits{.max_records = 1}));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].value, absl::StrCat("v", i));
    EXPECT_EQ(before[i].partition, PartitionForKey(absl::StrCat("k", i % 6), 3));
  }
  // Repeats within the window are still recognised after the restart.
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, t->Publish({Msg("v7", "id-7"), Msg("new", "id-new")}));
  EXPECT_TRUE(again[0].duplicate);
  EXPECT_EQ(again[0].partition, before[7].partition);
  EXPECT_EQ(again[0].offset, before[7].offset);
  EXPECT_FALSE(again[1].duplicate);
  // ...and offsets continue.
  EXPECT_EQ(again[1].offset, next[again[1].partition]);

  // Past the window, a repeat is stored again (also after a restart).
  clock_.Advance(30'001);
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK_AND_ASSIGN(auto late, Get("orders")->Publish({Msg("v7", "id-7")}));
  EXPECT_FALSE(late[0].duplicate);
}

TEST_F(BrokerTest, RestartBringsMemoryTopicsBackEmpty) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Memory(2);
  config.max_message_bytes = 1000;
  ONCE_ASSERT_OK(broker_->CreateTopic("cache", config));
  ONCE_ASSERT_OK(Get("cache")->Publish({Msg("a", "id-a"), Msg("b")}));
  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->ListTopics(), ElementsAre("cache"));
  std::shared_ptr<Topic> t = Get("cache");
  EXPECT_EQ(t->config(), config);
  for (int p = 0; p < 2; ++p) EXPECT_EQ(t->partition(p)->NextOffset(), 0);
  ONCE_ASSERT_OK_AND_ASSIGN(auto r, t->Publish({Msg("a", "id-a")}));
  EXPECT_FALSE(r[0].duplicate);
}

TEST_F(BrokerTest, DamagedTopicMetaFailsOpenWithDataLossNamingTheFile) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("t", Disk()));
  broker_.reset();
  const std::string meta = TopicDir("t") + "/topic.meta";
  {
    std::fstream f(meta, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('!');
  }
  EXPECT_THAT(Reopen(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(meta)));
}

TEST_F(BrokerTest, MissingTopicMetaFailsOpenWithDataLoss) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("t", Disk()));
  broker_.reset();
  fs::remove(TopicDir("t") + "/topic.meta");
  EXPECT_THAT(Reopen(), StatusIs(absl::StatusCode::kDataLoss,
                                 AllOf(HasSubstr(TopicDir("t")), HasSubstr("topic.meta"))));
}

TEST_F(BrokerTest, MetadataOfAnotherTopicIsDataLoss) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("a", Memory()));
  broker_.reset();
  fs::rename(TopicDir("a"), TopicDir("b"));
  EXPECT_THAT(Reopen(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("names topic 'a'")));
}

// What a crash in the middle of CreateTopic or DeleteTopic leaves behind.
TEST_F(BrokerTest, InterruptedCreateAndDeleteLeaveNoTopicBehind) {
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("kept", Memory()));
  broker_.reset();
  const std::string topics = dir_ + "/data/topics";
  // A creation that crashed before its rename: complete, but not committed.
  fs::create_directories(topics + "/#creating-half/0");
  TopicMetadata meta;
  meta.name = "half";
  meta.config = Disk();
  ONCE_ASSERT_OK(WriteTopicMetadata(topics + "/#creating-half", meta));
  // A deletion that crashed while removing its tombstone.
  fs::create_directories(topics + "/#deleted-gone-1-1/0");
  // A metadata write that crashed before its rename.
  { std::ofstream(TopicDir("kept") + "/topic.meta.tmp") << "partial"; }

  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->ListTopics(), ElementsAre("kept"));
  EXPECT_FALSE(fs::exists(topics + "/#creating-half"));
  EXPECT_FALSE(fs::exists(topics + "/#deleted-gone-1-1"));
  EXPECT_FALSE(fs::exists(TopicDir("kept") + "/topic.meta.tmp"));
  // The half-created name is free.
  ONCE_ASSERT_OK_AND_ASSIGN(CreateOutcome outcome, broker_->CreateTopic("half", Memory()));
  EXPECT_EQ(outcome, CreateOutcome::kCreated);
}

TEST_F(BrokerTest, StrayEntriesThatAreNotTopicsAreIgnored) {
  ONCE_ASSERT_OK(Reopen());
  broker_.reset();
  fs::create_directories(dir_ + "/data/topics/lost+found");
  { std::ofstream(dir_ + "/data/topics/README") << "hello"; }
  ONCE_ASSERT_OK(Reopen());
  EXPECT_THAT(broker_->ListTopics(), IsEmpty());
  EXPECT_TRUE(fs::exists(dir_ + "/data/topics/lost+found"));  // not ours to remove
}

TEST_F(BrokerTest, CreateOverAForeignDirectoryIsRefused) {
  ONCE_ASSERT_OK(Reopen());
  fs::create_directories(TopicDir("orders") + "/stuff");
  EXPECT_THAT(broker_->CreateTopic("orders", Memory()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(TopicDir("orders"))));
}

TEST_F(BrokerTest, OversizeMessageIsRejectedWithNothingWritten) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk();
  config.max_message_bytes = 64;
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  std::shared_ptr<Topic> t = Get("t");
  EXPECT_THAT(t->Publish({Msg("ok"), Msg(std::string(65, 'x'))}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("message 1"), HasSubstr("65 bytes"))));
  EXPECT_EQ(t->partition(0)->NextOffset(), 0);
  ONCE_ASSERT_OK(Reopen());
  EXPECT_EQ(Get("t")->partition(0)->NextOffset(), 0);
}

TEST_F(BrokerTest, RetentionRemovesOldDataAndReadsBelowTheFirstOffsetAreOutOfRange) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig disk = Disk();
  disk.retention_ms = 60'000;
  TopicConfig memory = Memory();
  memory.retention_ms = 60'000;
  ONCE_ASSERT_OK(broker_->CreateTopic("disk", disk));
  ONCE_ASSERT_OK(broker_->CreateTopic("memory", memory));
  for (const char* name : {"disk", "memory"}) {
    std::shared_ptr<Topic> t = Get(name);
    // Enough old data to fill several 4 KiB segments on disk.
    for (int i = 0; i < 40; ++i) ONCE_ASSERT_OK(t->Publish({Msg(std::string(500, 'o'))}));
  }
  clock_.Advance(120'000);
  for (const char* name : {"disk", "memory"}) {
    std::shared_ptr<Topic> t = Get(name);
    for (int i = 0; i < 3; ++i) ONCE_ASSERT_OK(t->Publish({Msg(absl::StrCat("new", i))}));
  }
  ONCE_ASSERT_OK(broker_->RunMaintenance());
  for (const char* name : {"disk", "memory"}) {
    std::shared_ptr<Topic> t = Get(name);
    const int64_t first = t->partition(0)->FirstOffset();
    EXPECT_GT(first, 0) << name;
    EXPECT_LE(first, 40) << name;
    EXPECT_THAT(t->Read(0, 0, ReadLimits{}),
                StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("below the first")))
        << name;
    std::vector<std::string> rest = Values(*t, 0, 40);
    EXPECT_THAT(rest, ElementsAre("new0", "new1", "new2")) << name;
  }
  EXPECT_EQ(Get("memory")->partition(0)->FirstOffset(), 40);  // memory drops exactly
}

TEST_F(BrokerTest, MemoryBudgetIsSharedByAllMemoryTopics) {
  const int64_t charge = MemoryCharge(Msg(std::string(100, 'x')));
  budget_bytes_ = charge * 4;
  ONCE_ASSERT_OK(Reopen());
  ONCE_ASSERT_OK(broker_->CreateTopic("a", Memory()));
  ONCE_ASSERT_OK(broker_->CreateTopic("b", Memory()));
  ONCE_ASSERT_OK(broker_->CreateTopic("d", Disk()));
  std::vector<Record> three(3, Msg(std::string(100, 'x')));
  ONCE_ASSERT_OK(Get("a")->Publish(three));
  EXPECT_THAT(Get("b")->Publish({Msg(std::string(100, 'x')), Msg(std::string(100, 'x'))}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("memory budget full")));
  ONCE_EXPECT_OK(Get("d")->Publish(three));   // disk topics are not charged
  ONCE_ASSERT_OK(broker_->DeleteTopic("a"));  // frees its records
  ONCE_EXPECT_OK(Get("b")->Publish(three));
}

TEST_F(BrokerTest, MultiPartitionDurablePublishAnswersInInputOrder) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk(4);
  config.fsync = FsyncPolicy::kAlways;  // the overlapping-append path
  config.segment_bytes = 1 << 20;
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  std::shared_ptr<Topic> t = Get("t");
  std::vector<Record> batch;
  for (int i = 0; i < 40; ++i) batch.push_back(Msg(absl::StrCat("v", i), "", absl::StrCat("k", i)));
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, t->Publish(batch));
  ASSERT_EQ(results.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(results[i].partition, PartitionForKey(absl::StrCat("k", i), 4));
    ONCE_ASSERT_OK_AND_ASSIGN(
        auto got, t->Read(results[i].partition, results[i].offset, ReadLimits{.max_records = 1}));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].value, absl::StrCat("v", i));
  }
}

TEST_F(BrokerTest, MaintenanceSyncsIntervalTopicsWhenTheIntervalElapsed) {
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk();
  config.fsync = FsyncPolicy::kInterval;
  config.fsync_interval_ms = 1000;
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  std::shared_ptr<Topic> t = Get("t");
  ONCE_ASSERT_OK(t->Publish({Msg("a")}));
  const int64_t syncs = t->partition(0)->Stats().syncs;
  clock_.Advance(999);
  ONCE_ASSERT_OK(broker_->RunMaintenance());
  EXPECT_EQ(t->partition(0)->Stats().syncs, syncs);
  clock_.Advance(1);
  ONCE_ASSERT_OK(t->Publish({Msg("b")}));
  ONCE_ASSERT_OK(broker_->RunMaintenance());
  EXPECT_GT(t->partition(0)->Stats().syncs, syncs);
}

TEST_F(BrokerTest, ConcurrentCreatesOfOneNameCreateItOnce) {
  ONCE_ASSERT_OK(Reopen());
  constexpr int kThreads = 6;
  std::atomic<int> created{0};
  std::atomic<int> existed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      absl::StatusOr<CreateOutcome> r = broker_->CreateTopic("t", Disk(2));
      ASSERT_THAT(r, IsOk());
      (*r == CreateOutcome::kCreated ? created : existed)++;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(existed.load(), kThreads - 1);
}

TEST_F(BrokerTest, OpenRejectsBadOptions) {
  BrokerOptions o = Options();
  o.clock = nullptr;
  EXPECT_THAT(Broker::Open(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
  o = Options();
  o.data_dir = "";
  EXPECT_THAT(Broker::Open(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data_dir")));
  o = Options();
  o.memory_budget_bytes = -1;
  EXPECT_THAT(Broker::Open(o), StatusIs(absl::StatusCode::kInvalidArgument));
  for (int threads : {0, 65}) {
    o = Options();
    o.append_threads = threads;
    EXPECT_THAT(Broker::Open(o),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("append_threads")));
  }
}

// The answers of PublishAsync calls, by the label each was given.
class PublishAnswers {
 public:
  Topic::PublishCallback Expect(std::string label) {
    return [this, label = std::move(label)](absl::StatusOr<std::vector<PublishResult>> r) {
      absl::MutexLock lock(&mu_);
      answers_.emplace(label, std::move(r));
    };
  }
  // Waits (at most 30 s) for `n` answers; false on timeout.
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    const auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return answers_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }
  std::map<std::string, absl::StatusOr<std::vector<PublishResult>>> answers() {
    absl::MutexLock lock(&mu_);
    return answers_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, absl::StatusOr<std::vector<PublishResult>>> answers_ ABSL_GUARDED_BY(mu_);
};

TEST_F(BrokerTest, AsyncPublishesToADurableTopicAnswerOnceStoredAndSurviveARestart) {
  constexpr int kPublishes = 40;
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk(3);
  config.fsync = FsyncPolicy::kAlways;
  config.dedup_window_ms = 60'000;
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  std::shared_ptr<Topic> t = Get("t");
  PublishAnswers answers;
  for (int i = 0; i < kPublishes; ++i) {
    // Two messages on (usually) two partitions, the second a repeat of the
    // first's idempotency key every fifth publish.
    std::vector<Record> batch = {
        Msg(absl::StrCat("a", i), absl::StrCat("id-", i), "x"),
        Msg(absl::StrCat("b", i), i % 5 == 0 ? absl::StrCat("id-", i) : "", absl::StrCat(i))};
    t->PublishAsync(std::move(batch), answers.Expect(absl::StrCat(i)));
  }
  t->PublishAsync({}, answers.Expect("empty"));
  ASSERT_TRUE(answers.WaitFor(kPublishes + 1));
  std::map<std::string, absl::StatusOr<std::vector<PublishResult>>> got = answers.answers();
  EXPECT_THAT(got.at("empty"), StatusIs(absl::StatusCode::kInvalidArgument));
  for (int i = 0; i < kPublishes; ++i) {
    const absl::StatusOr<std::vector<PublishResult>>& r = got.at(absl::StrCat(i));
    ASSERT_THAT(r, IsOk());
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[1].duplicate, i % 5 == 0);
    ONCE_ASSERT_OK_AND_ASSIGN(auto first,
                              t->Read((*r)[0].partition, (*r)[0].offset, ReadLimits{1, 1 << 20}));
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].value, absl::StrCat("a", i));
  }
  // A repeat after the answers is answered from the dedup index.
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, t->Publish({Msg("a0 again", "id-0", "x")}));
  EXPECT_TRUE(again[0].duplicate);
  t.reset();
  ONCE_ASSERT_OK(Reopen());
  t = Get("t");
  int64_t stored = 0;
  for (int p = 0; p < 3; ++p) stored += t->partition(p)->NextOffset();
  EXPECT_EQ(stored, kPublishes * 2 - kPublishes / 5);
}

// Deleting a topic waits for its publishes in flight: none of them lands in
// a topic created again under the same name.
TEST_F(BrokerTest, DeleteWaitsForAsyncPublishesInFlight) {
  constexpr int kPublishes = 200;
  ONCE_ASSERT_OK(Reopen());
  TopicConfig config = Disk(2);
  config.fsync = FsyncPolicy::kAlways;
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  std::shared_ptr<Topic> held = Get("t");
  PublishAnswers answers;
  for (int i = 0; i < kPublishes; ++i) {
    held->PublishAsync({Msg(absl::StrCat(i))}, answers.Expect(absl::StrCat(i)));
  }
  ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
  ONCE_ASSERT_OK(broker_->CreateTopic("t", config));
  ASSERT_TRUE(answers.WaitFor(kPublishes));
  for (auto& [label, r] : answers.answers()) {
    EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kNotFound) << label << r.status();
  }
  std::shared_ptr<Topic> fresh = Get("t");
  for (int p = 0; p < 2; ++p) EXPECT_EQ(fresh->partition(p)->NextOffset(), 0);
  held->PublishAsync({Msg("late")}, answers.Expect("late"));
  ASSERT_TRUE(answers.WaitFor(kPublishes + 1));
  EXPECT_THAT(answers.answers().at("late"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace once::broker
