// Records written but not yet durable: Log::WrittenOffset, ReadWritten and
// WhenDurable (the exactly-once path reads them before their fdatasync).
// DiskLogOptions::on_written runs between a group's write and its sync,
// which is where these tests look.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/disk_log.h"
#include "broker/memory_log.h"
#include "broker/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/disk_log_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::broker::disk_log_testing::AtOffset;
using ::once::broker::disk_log_testing::DiskLogTest;
using ::once::broker::disk_log_testing::IsOkAndHolds;
using ::once::broker::disk_log_testing::MakeRecord;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::SizeIs;

// What a WhenDurable callback was called with, if it was.
struct Answer {
  std::optional<absl::Status> status;
  Log::DurableCallback Callback() {
    return [this](absl::Status s) { status = std::move(s); };
  }
};

// What the log looked like from on_written, between the write and the sync.
struct SeenBeforeSync {
  int calls = 0;
  int64_t written = -1;
  int64_t next = -1;
  size_t read_written = 0;
  size_t read = 0;
  Answer durable;  // WhenDurable(written), asked from there
};

class DiskLogWrittenTest : public DiskLogTest {
 protected:
  std::unique_ptr<DiskLog> OpenAlways(SeenBeforeSync* seen) {
    DiskLogOptions o = Options();
    o.fsync = FsyncPolicy::kAlways;
    DiskLog** self = &log_for_hook_;
    o.on_written = [seen, self] {
      DiskLog* log = *self;
      ++seen->calls;
      seen->durable.status.reset();  // the last group's answer
      seen->written = log->WrittenOffset();
      seen->next = log->NextOffset();
      absl::StatusOr<std::vector<Record>> w = log->ReadWritten(0, ReadLimits{});
      EXPECT_THAT(w, IsOk());
      if (w.ok()) seen->read_written = w->size();
      absl::StatusOr<std::vector<Record>> r = log->Read(0, ReadLimits{});
      EXPECT_THAT(r, IsOk());
      if (r.ok()) seen->read = r->size();
      log->WhenDurable(seen->written, seen->durable.Callback());
      // Asked before the sync: not answered yet.
      EXPECT_EQ(seen->durable.status, std::nullopt);
    };
    absl::StatusOr<std::unique_ptr<DiskLog>> log = DiskLog::Open(std::move(o));
    EXPECT_THAT(log, IsOk());
    if (!log.ok()) return nullptr;
    log_for_hook_ = log->get();
    return *std::move(log);
  }

  DiskLog* log_for_hook_ = nullptr;
};

TEST_F(DiskLogWrittenTest, AWrittenGroupIsReadableWrittenBeforeItsSyncAndDurableAfter) {
  SeenBeforeSync seen;
  std::unique_ptr<DiskLog> log = OpenAlways(&seen);
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Append({MakeRecord(0), MakeRecord(1), MakeRecord(2)}), IsOkAndHolds(0));

  EXPECT_EQ(seen.calls, 1);
  // Between the write and the fdatasync: ReadWritten sees the three
  // records, Read and NextOffset nothing yet.
  EXPECT_EQ(seen.written, 3);
  EXPECT_EQ(seen.next, 0);
  EXPECT_EQ(seen.read_written, 3u);
  EXPECT_EQ(seen.read, 0u);
  // The sync answered the WhenDurable asked before it.
  EXPECT_THAT(seen.durable.status, Optional(IsOk()));
  // After Append: both views agree.
  EXPECT_EQ(log->NextOffset(), 3);
  EXPECT_EQ(log->WrittenOffset(), 3);
  EXPECT_THAT(log->ReadWritten(1, ReadLimits{}),
              IsOkAndHolds(ElementsAre(AtOffset(MakeRecord(1), 1), AtOffset(MakeRecord(2), 2))));
}

TEST_F(DiskLogWrittenTest, WhenDurableAnswersAtOnceForDurableRecordsAndLaterForTheRest) {
  SeenBeforeSync seen;
  std::unique_ptr<DiskLog> log = OpenAlways(&seen);
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Append({MakeRecord(0)}), IsOk());

  Answer now;
  log->WhenDurable(1, now.Callback());
  EXPECT_THAT(now.status, Optional(IsOk()));

  // Offset 3 is not written yet: the answer waits for the append that
  // makes it durable, not for the next one.
  Answer later;
  log->WhenDurable(3, later.Callback());
  EXPECT_EQ(later.status, std::nullopt);
  ASSERT_THAT(log->Append({MakeRecord(1)}), IsOk());
  EXPECT_EQ(later.status, std::nullopt);
  ASSERT_THAT(log->Append({MakeRecord(2)}), IsOk());
  EXPECT_THAT(later.status, Optional(IsOk()));
}

TEST_F(DiskLogWrittenTest, ClosingAnswersWhatNeverBecameDurable) {
  Answer never;
  {
    SeenBeforeSync seen;
    std::unique_ptr<DiskLog> log = OpenAlways(&seen);
    ASSERT_NE(log, nullptr);
    log->WhenDurable(5, never.Callback());
    EXPECT_EQ(never.status, std::nullopt);
  }
  EXPECT_THAT(never.status, Optional(StatusIs(absl::StatusCode::kUnavailable)));
}

TEST_F(DiskLogWrittenTest, OtherPoliciesAndMemoryLogsShowWhatIsReadableAndAnswerAtOnce) {
  for (FsyncPolicy policy : {FsyncPolicy::kInterval, FsyncPolicy::kNever}) {
    DiskLogOptions o = Options();
    o.fsync = policy;
    o.fsync_interval_ms = 60'000;
    int hook_calls = 0;
    o.on_written = [&hook_calls] { ++hook_calls; };
    ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DiskLog> log, DiskLog::Open(std::move(o)));
    ASSERT_THAT(log->Append({MakeRecord(0), MakeRecord(1)}), IsOk());
    EXPECT_EQ(log->WrittenOffset(), 2);
    EXPECT_EQ(log->NextOffset(), 2);
    EXPECT_THAT(log->ReadWritten(0, ReadLimits{}), IsOkAndHolds(SizeIs(2)));
    Answer a;
    log->WhenDurable(2, a.Callback());
    EXPECT_THAT(a.status, Optional(IsOk()));
    // Only group commits (fsync=always) call it.
    EXPECT_EQ(hook_calls, 0);
    log.reset();
    std::filesystem::remove_all(dir_);
  }
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> memory = NewMemoryLog(&budget);
  ASSERT_THAT(memory->Append({MakeRecord(0)}), IsOk());
  EXPECT_EQ(memory->WrittenOffset(), 1);
  EXPECT_THAT(memory->ReadWritten(0, ReadLimits{}), IsOkAndHolds(SizeIs(1)));
  Answer a;
  memory->WhenDurable(1, a.Callback());
  EXPECT_THAT(a.status, Optional(IsOk()));
}

TEST_F(DiskLogWrittenTest, ReadWrittenRefusesOffsetsPastWhatIsWritten) {
  SeenBeforeSync seen;
  std::unique_ptr<DiskLog> log = OpenAlways(&seen);
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Append({MakeRecord(0)}), IsOk());
  EXPECT_THAT(log->ReadWritten(1, ReadLimits{}), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(log->ReadWritten(2, ReadLimits{}), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(log->ReadWritten(-1, ReadLimits{}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(log->ReadWritten(0, ReadLimits{0, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace once::broker
