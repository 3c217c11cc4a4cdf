// Crash test of TxnStore: a child process writes decisions (and done
// markings) in a loop and is killed with SIGKILL at a random instant; the
// reopened store must hold every record whose callback ran, each record
// complete (all its messages, never half), and an intact schema.
//
// The child reports each callback that ran through a pipe ("C id" for a
// durable COMMIT record, "D id" for a durable done marking, "S id" before
// a done marking is submitted): a write(2) to a pipe is in the kernel once
// it returns, so SIGKILL cannot lose it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/sqlite.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

// The messages of txn number i: a count of 1..17 and offsets derived from
// i, so the parent can check every record is whole and exact.
std::vector<TxnMessageRef> MessagesOf(uint64_t i) {
  std::vector<TxnMessageRef> out;
  const uint64_t count = 1 + (i * 7919) % 17;
  for (uint64_t k = 0; k < count; ++k) {
    out.push_back(TxnMessageRef{static_cast<uint32_t>(k % 4), i * 100 + k});
  }
  return out;
}

void Report(int fd, const std::string& line) {
  // Small writes to a pipe are atomic (< PIPE_BUF); EINTR cannot happen
  // without handlers.
  ssize_t n = ::write(fd, line.data(), line.size());
  (void)n;
}

// The child: never returns. Writes as fast as it can from 4 threads until
// killed; a bounded count keeps it from running forever if the parent dies.
[[noreturn]] void RunChild(const std::string& path, int fd) {
  TxnStoreOptions options;
  options.remove_batch = 16;
  absl::StatusOr<std::unique_ptr<TxnStore>> opened = TxnStore::Open(path, options);
  if (!opened.ok()) _exit(3);
  TxnStore* store = opened->get();
  absl::StatusOr<uint64_t> epoch = store->BumpEpoch();
  if (!epoch.ok()) _exit(4);
  Report(fd, "R\n");  // ready
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([store, fd, t, epoch = *epoch] {
      for (uint64_t n = 0; n < 200'000; ++n) {
        const uint64_t i = n * 4 + static_cast<uint64_t>(t) + 1;
        TxnRecord r;
        r.txn = absl::StrCat(epoch, ".", i);  // unique across the crashes
        r.topic = "t";
        r.group = "g";
        r.participant = absl::StrCat("p", t);
        r.epoch = epoch;
        r.messages = MessagesOf(i);
        const std::string id = r.txn;
        absl::Status s = store->RecordCommit(std::move(r));
        if (!s.ok()) {
          Report(fd, absl::StrCat("E ", s.ToString(), "\n"));
          _exit(5);
        }
        Report(fd, absl::StrCat("C ", id, "\n"));
        if (i % 3 == 0) {
          // Reported before the submission: from here the record may be
          // done (and removed) durably before the callback could report.
          Report(fd, absl::StrCat("S ", id, "\n"));
          store->SubmitDone(id, [fd, id](absl::Status done) {
            if (done.ok()) Report(fd, absl::StrCat("D ", id, "\n"));
          });
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  _exit(0);
}

class TxnStoreCrashTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/txn_store_crash_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_P(TxnStoreCrashTest, KilledWriterLosesNothingAcknowledged) {
  std::mt19937 rng(static_cast<uint32_t>(GetParam()));
  const std::string path = dir_ + "/coordinator.db";
  std::set<std::string> committed;
  std::set<std::string> done_submitted;
  std::set<std::string> done;
  // Two crashes in a row on the same file: recovery of a recovered store.
  for (int round = 0; round < 2; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      RunChild(path, fds[1]);
    }
    ::close(fds[1]);
    const int kill_after_ms = std::uniform_int_distribution<int>(20, 300)(rng);
    std::string buffer;
    bool ready = false;
    bool killed = false;
    std::chrono::steady_clock::time_point kill_at;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (true) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= give_up) {
        ::kill(pid, SIGKILL);  // never leave the child behind
        ::waitpid(pid, nullptr, 0);
        ::close(fds[0]);
        FAIL() << "the child neither committed nor died within 30 s";
      }
      if (ready && !killed && now >= kill_at) {
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        killed = true;
      }
      pollfd p{fds[0], POLLIN, 0};
      ::poll(&p, 1, 5);
      if ((p.revents & (POLLIN | POLLHUP)) == 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fds[0], chunk, sizeof(chunk));
      if (n <= 0) break;  // EOF: the child is gone
      buffer.append(chunk, static_cast<size_t>(n));
      // Kill at a random instant after the first durable commit, so that
      // every round has something to lose, however slow the machine.
      if (!ready && buffer.find("C ") != std::string::npos) {
        ready = true;
        kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms);
      }
    }
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended by itself, status " << status << "; its report ends with: "
        << buffer.substr(buffer.size() > 300 ? buffer.size() - 300 : 0);
    for (absl::string_view line : absl::StrSplit(buffer, '\n', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&line, "C ")) committed.insert(std::string(line));
      if (absl::ConsumePrefix(&line, "S ")) done_submitted.insert(std::string(line));
      if (absl::ConsumePrefix(&line, "D ")) done.insert(std::string(line));
    }
  }
  ASSERT_FALSE(committed.empty()) << "the child never committed: the test proves nothing";

  // The schema is intact.
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path));
    ONCE_ASSERT_OK_AND_ASSIGN(auto check, db->Prepare("PRAGMA integrity_check"));
    ONCE_ASSERT_OK_AND_ASSIGN(bool row, check.Step());
    ASSERT_TRUE(row);
    EXPECT_EQ(std::string(check.ColumnText(0)), "ok");
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t fk,
                              db->QueryInt64("SELECT COUNT(*) FROM pragma_foreign_key_check"));
    EXPECT_EQ(fk, 0);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, TxnStore::Open(path, {}));
  EXPECT_EQ(store->epoch(), 2u);  // both children bumped it durably
  for (const std::string& id : committed) {
    SCOPED_TRACE(id);
    ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find(id));
    if (done.count(id) > 0) {
      // Done and acknowledged: done, or already removed.
      if (found.has_value()) {
        EXPECT_EQ(found->state, TxnState::kDone);
      }
      continue;
    }
    if (done_submitted.count(id) > 0) continue;  // committed, done or removed: all fine
    ASSERT_TRUE(found.has_value()) << "an acknowledged COMMIT record was lost";
    EXPECT_EQ(found->state, TxnState::kCommitted);
  }
  // Every record there (acknowledged or not) is whole and exact.
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> all, store->List(std::nullopt, 0));
  for (const TxnRecord& r : all) {
    uint64_t i = 0;
    const size_t dot = r.txn.find('.');
    ASSERT_NE(dot, std::string::npos) << r.txn;
    ASSERT_TRUE(absl::SimpleAtoi(absl::string_view(r.txn).substr(dot + 1), &i)) << r.txn;
    EXPECT_EQ(r.messages, MessagesOf(i)) << r.txn;
  }
  ONCE_ASSERT_OK(store->LoadUnfinished().status());
  std::printf("seed %d: %zu commits and %zu done acknowledged, %zu records after 2 crashes\n",
              GetParam(), committed.size(), done.size(), all.size());
}

INSTANTIATE_TEST_SUITE_P(Seeds, TxnStoreCrashTest, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace once::coordinator
