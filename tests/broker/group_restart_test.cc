// Durability of group state across restarts and crashes (disk topics).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::StatusIs;

class GroupRestartTest : public testing::GroupTest {
 protected:
  static GroupConfig Config(GroupMode mode) {
    GroupConfig c;
    c.mode = mode;
    c.ack_timeout_ms = 10'000;
    c.prefetch = 10'000;
    c.backoff_base_ms = 0;
    return c;
  }

  // Fetches and acks everything left; returns the values.
  std::vector<std::string> Drain(const std::string& group, const std::string& consumer) {
    std::vector<std::string> values;
    auto g = registry_->GetGroup("t", group);
    EXPECT_THAT(g, ::once::testing::IsOk());
    if (!g.ok()) return values;
    for (int round = 0; round < 1000; ++round) {
      auto ds = (*g)->Fetch(consumer, 100);
      EXPECT_THAT(ds, ::once::testing::IsOk());
      if (!ds.ok() || ds->empty()) break;
      for (const Delivery& d : *ds) values.push_back(d.record.value);
      auto r = (*g)->Ack(Tokens(*ds));
      EXPECT_THAT(r, ::once::testing::IsOk());
      if (r.ok()) {
        EXPECT_EQ(r->applied, static_cast<int64_t>(ds->size()));
      }
    }
    return values;
  }
};

TEST_F(GroupRestartTest, SharedAckedNeverReturnsUnackedIsNotLost) {
  MakeTopic("t", 2, Backend::kDisk);
  Publish("t", 40);
  auto g = MakeGroup("t", "g", Config(GroupMode::kShared));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 30));
  ASSERT_EQ(ds.size(), 30u);
  std::set<std::string> acked;
  std::vector<std::string> tokens;
  for (size_t i = 0; i < ds.size(); ++i) {
    if (i % 3 == 1) continue;  // leave every third one leased, unacked
    acked.insert(ds[i].record.value);
    tokens.push_back(ds[i].token);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack(tokens));
  ASSERT_EQ(r.applied, static_cast<int64_t>(tokens.size()));
  g.reset();
  OpenAll();

  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  // Tokens from before the restart are stale, not forged.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult old, reopened->Ack({ds[1].token}));
  ASSERT_EQ(old.refused.size(), 1u);
  EXPECT_THAT(old.refused[0].status, StatusIs(absl::StatusCode::kFailedPrecondition));
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, reopened->Fetch("c", 100));
  std::set<std::string> redelivered;
  for (const Delivery& d : again) {
    EXPECT_FALSE(acked.contains(d.record.value)) << d.record.value << " was acked";
    redelivered.insert(d.record.value);
    // Leased before the restart: this is at least its second delivery.
    EXPECT_LE(d.delivery_count, 2);
  }
  EXPECT_EQ(redelivered.size() + acked.size(), 40u);
  GroupDescription d = reopened->Describe();
  EXPECT_EQ(d.acked, static_cast<int64_t>(acked.size()));
}

TEST_F(GroupRestartTest, OrderedResumesFromCommittedOffset) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 10);
  auto g = MakeGroup("t", "g", Config(GroupMode::kOrdered));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 6));
  ONCE_ASSERT_OK(g->Ack({ds[3].token}).status());
  g.reset();
  OpenAll();
  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  EXPECT_EQ(reopened->Describe().partitions[0].done_floor, 4);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, reopened->Fetch("c", 100));
  ASSERT_EQ(again.size(), 6u);
  EXPECT_EQ(again[0].record.offset, 4);
  EXPECT_EQ(again[0].delivery_count, 2);  // 4 and 5 were delivered before
  EXPECT_EQ(again[2].delivery_count, 1);  // 6 was not
}

TEST_F(GroupRestartTest, ResetAndStartPositionSurviveRestart) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 5);
  GroupConfig c = Config(GroupMode::kShared);
  c.start = Position::Latest();
  MakeGroup("t", "late", c);
  auto g = MakeGroup("t", "g", Config(GroupMode::kShared));
  ONCE_ASSERT_OK(g->Reset(Position::Offset(3), -1));
  g.reset();
  Publish("t", 2, "after");
  OpenAll();
  EXPECT_EQ(Drain("late", "c"), (std::vector<std::string>{"after0", "after1"}));
  EXPECT_EQ(Drain("g", "c").size(), 4u);  // 3, 4 and the two new ones
}

TEST_F(GroupRestartTest, MemoryTopicGroupsComeBackEmpty) {
  MakeTopic("t", 1, Backend::kMemory);
  Publish("t", 5);
  auto g = MakeGroup("t", "g", Config(GroupMode::kShared));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 2));
  ONCE_ASSERT_OK(g->Ack(Tokens(ds)).status());
  g.reset();
  OpenAll();
  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  EXPECT_EQ(reopened->config().mode, GroupMode::kShared);
  EXPECT_EQ(reopened->Describe().lag, 0);  // the topic came back empty
  Publish("t", 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto fresh, reopened->Fetch("c", 10));
  EXPECT_EQ(fresh.size(), 1u);
}

TEST_F(GroupRestartTest, DeletedTopicsGroupsAreDroppedAtOpen) {
  MakeTopic("t", 1, Backend::kDisk);
  MakeGroup("t", "g", Config(GroupMode::kShared));
  registry_.reset();
  ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
  OpenAll();
  EXPECT_THAT(registry_->GetGroup("t", "g"), StatusIs(absl::StatusCode::kNotFound));
  MakeTopic("t", 1, Backend::kDisk);
  EXPECT_TRUE(registry_->ListGroups("t").empty());
}

// A child process acks in a loop and reports every ack that returned; the
// parent SIGKILLs it at a random point, reopens, and checks that no
// confirmed ack is undone and that no message is lost.
class GroupCrashTest : public GroupRestartTest, public ::testing::WithParamInterface<GroupMode> {};

TEST_P(GroupCrashTest, KillDuringAckBatchLeavesConsistentState) {
  constexpr int kMessages = 3000;
  MakeTopic("t", 3, Backend::kDisk);
  Publish("t", kMessages);
  MakeGroup("t", "g", Config(GetParam()));
  registry_.reset();
  broker_.reset();

  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  const int kill_after = std::uniform_int_distribution<int>(1, 80)(rng);

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    OpenAll();
    auto g = registry_->GetGroup("t", "g");
    if (!g.ok()) _exit(2);
    for (int round = 0; round < 10'000; ++round) {
      auto ds = (*g)->Fetch("child", 10 + round % 50);
      if (!ds.ok()) _exit(3);
      if (ds->empty()) break;
      // "P <values>" before the ack, "C" once it returned: a batch the
      // child was killed in the middle of is in doubt (its commit may or
      // may not have landed), never half applied.
      std::string line = "P ";
      for (const Delivery& d : *ds) absl::StrAppend(&line, d.record.value, ",");
      line += "\n";
      if (write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
      auto r = (*g)->Ack(Tokens(*ds));
      if (!r.ok() || r->applied != static_cast<int64_t>(ds->size())) _exit(4);
      if (write(fds[1], "C\n", 2) != 2) _exit(5);
    }
    _exit(0);
  }
  close(fds[1]);
  // Read the child's lines; after `kill_after` of them, kill the child while
  // it is in the middle of its next fetch/ack.
  std::string buffer;
  int batches = 0;
  char chunk[4096];
  bool killed = false;
  while (true) {
    ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    batches = static_cast<int>(std::count(buffer.begin(), buffer.end(), '\n'));
    if (!killed && batches >= kill_after) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (!killed) {
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child failed: " << status;
  }
  std::set<std::string> confirmed;
  std::set<std::string> in_doubt;
  for (absl::string_view line : absl::StrSplit(buffer, '\n')) {
    if (line == "C") {
      confirmed.insert(in_doubt.begin(), in_doubt.end());
      in_doubt.clear();
    } else if (absl::ConsumePrefix(&line, "P ") && !line.empty() && line.back() == ',') {
      for (absl::string_view v : absl::StrSplit(line, ',', absl::SkipEmpty())) {
        in_doubt.insert(std::string(v));
      }
    }
  }
  // A torn last "P" line names a batch whose ack never started: its
  // messages must come back, and they are not in in_doubt.

  OpenAll();
  std::vector<std::string> rest = Drain("g", "parent");
  std::set<std::string> rest_set(rest.begin(), rest.end());
  EXPECT_EQ(rest_set.size(), rest.size()) << "a message was delivered twice after reopening";
  for (const std::string& v : rest) {
    EXPECT_FALSE(confirmed.contains(v)) << v << " was acked before the crash, delivered again";
  }
  std::set<std::string> all = confirmed;
  all.insert(rest.begin(), rest.end());
  for (int i = 0; i < kMessages; ++i) {
    const std::string v = absl::StrCat("m", i);
    EXPECT_TRUE(all.contains(v) || in_doubt.contains(v)) << v << " was lost";
  }
  // The in-doubt batch was applied whole or not at all.
  size_t redelivered_in_doubt = 0;
  for (const std::string& v : in_doubt) redelivered_in_doubt += rest_set.contains(v) ? 1 : 0;
  EXPECT_TRUE(redelivered_in_doubt == 0 || redelivered_in_doubt == in_doubt.size())
      << redelivered_in_doubt << " of " << in_doubt.size() << " in-doubt messages came back";
  ONCE_ASSERT_OK_AND_ASSIGN(auto g, registry_->GetGroup("t", "g"));
  EXPECT_EQ(g->Describe().lag, 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, GroupCrashTest,
                         ::testing::Values(GroupMode::kShared, GroupMode::kOrdered),
                         [](const ::testing::TestParamInfo<GroupMode>& info) {
                           return std::string(GroupModeName(info.param));
                         });

}  // namespace
}  // namespace once::broker
