#include "broker/disk_log.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/record.h"
#include "broker/record_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coding.h"
#include "tests/broker/disk_log_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

namespace fs = std::filesystem;
using ::once::broker::disk_log_testing::AtOffset;
using ::once::broker::disk_log_testing::DiskLogTest;
using ::once::broker::disk_log_testing::FlipBit;
using ::once::broker::disk_log_testing::FramePositions;
using ::once::broker::disk_log_testing::IsOkAndHolds;
using ::once::broker::disk_log_testing::kT0;
using ::once::broker::disk_log_testing::MakeRecord;
using ::once::broker::disk_log_testing::ReadFile;
using ::once::broker::disk_log_testing::WriteFile;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST_F(DiskLogTest, EmptyLogOpensAndReopens) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    EXPECT_EQ(log->FirstOffset(), 0);
    EXPECT_EQ(log->NextOffset(), 0);
    ONCE_ASSERT_OK_AND_ASSIGN(auto records, log->Read(0, ReadLimits{}));
    EXPECT_THAT(records, IsEmpty());
    EXPECT_EQ(log->Stats().segments, 1);
  }
  EXPECT_TRUE(fs::exists(SegmentPath(0)));
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  EXPECT_EQ(log->NextOffset(), 0);
  EXPECT_EQ(log->recovery_report().truncated_bytes, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t first, log->Append({MakeRecord(0)}));
  EXPECT_EQ(first, 0);
}

TEST_F(DiskLogTest, AppendAssignsConsecutiveOffsetsAndKeepsEveryField) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  std::vector<Record> batch = {MakeRecord(0), MakeRecord(1), MakeRecord(2)};
  batch[1].offset = 12345;  // ignored
  batch[2].flags = kRecordValueBinary;
  batch[2].key.clear();
  batch[2].value = std::string("\0\xff\x01", 3);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t first, log->Append(batch));
  EXPECT_EQ(first, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t next, log->Append({MakeRecord(3)}));
  EXPECT_EQ(next, 3);
  ONCE_ASSERT_OK_AND_ASSIGN(auto records, log->Read(0, ReadLimits{}));
  ASSERT_THAT(records, SizeIs(4));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(records[i], AtOffset(batch[i], i));
  EXPECT_EQ(records[3], AtOffset(MakeRecord(3), 3));
  LogStats stats = log->Stats();
  EXPECT_EQ(stats.appends, 2);
  EXPECT_EQ(stats.next_offset, 4);
  EXPECT_EQ(stats.size_bytes, static_cast<int64_t>(fs::file_size(SegmentPath(0))));
}

TEST_F(DiskLogTest, OffsetsContinueAfterReopen) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 10);
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    EXPECT_EQ(log->NextOffset(), 10);
    AppendRange(log.get(), 10, 15);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  ExpectRecords(*log, 0, 15);
}

TEST_F(DiskLogTest, ReadLimitsCountRecordsAndBytesButAlwaysReturnOne) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  AppendRange(log.get(), 0, 20);
  ONCE_ASSERT_OK_AND_ASSIGN(auto five, log->Read(3, ReadLimits{5, 1 << 20}));
  ASSERT_THAT(five, SizeIs(5));
  EXPECT_EQ(five.front().offset, 3);
  EXPECT_EQ(five.back().offset, 7);
  const size_t one = MakeRecord(3).PayloadBytes();
  ONCE_ASSERT_OK_AND_ASSIGN(auto by_bytes, log->Read(3, ReadLimits{100, 2 * one + one / 2}));
  EXPECT_THAT(by_bytes, SizeIs(2));
  ONCE_ASSERT_OK_AND_ASSIGN(auto tiny, log->Read(3, ReadLimits{100, 1}));
  ASSERT_THAT(tiny, SizeIs(1));
  EXPECT_EQ(tiny[0].offset, 3);
}

TEST_F(DiskLogTest, ReadsAtAndPastTheEnd) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  AppendRange(log.get(), 0, 3);
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, log->Read(3, ReadLimits{}));
  EXPECT_THAT(none, IsEmpty());
  EXPECT_THAT(log->Read(4, ReadLimits{}),
              StatusIs(absl::StatusCode::kOutOfRange,
                       AllOf(HasSubstr("offset 4 is past the end"), HasSubstr("next offset 3"))));
}

TEST_F(DiskLogTest, BadInputIsRefused) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  EXPECT_THAT(log->Append({}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty batch")));
  EXPECT_EQ(log->NextOffset(), 0);
  AppendRange(log.get(), 0, 2);
  EXPECT_THAT(log->Read(-1, ReadLimits{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offset -1 is negative")));
  EXPECT_THAT(log->Read(0, ReadLimits{0, 100}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_records")));
  EXPECT_EQ(log->Stats().appends, 2);
}

TEST_F(DiskLogTest, BadOptionsAreNamed) {
  DiskLogOptions o = Options();
  o.dir = "";
  EXPECT_THAT(DiskLog::Open(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dir")));
  o = Options();
  o.segment_bytes = 0;
  EXPECT_THAT(DiskLog::Open(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("segment_bytes")));
  o = Options();
  o.index_interval_bytes = -1;
  EXPECT_THAT(DiskLog::Open(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index_interval_bytes")));
  o = Options();
  o.fsync = FsyncPolicy::kInterval;
  o.fsync_interval_ms = 0;
  EXPECT_THAT(DiskLog::Open(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fsync_interval_ms")));
  o = Options();
  o.clock = nullptr;
  EXPECT_THAT(DiskLog::Open(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
}

TEST_F(DiskLogTest, DirectoryThatIsAFileIsAnError) {
  fs::create_directories(root_);
  WriteFile(dir_, "not a directory");
  EXPECT_THAT(DiskLog::Open(Options()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DiskLogTest, StrayFilesAreCleanedOrIgnored) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 3);
  }
  WriteFile(IndexPath(500), "orphan index");
  WriteFile(IndexPath(0) + ".tmp", "half written");
  WriteFile(dir_ + "/README", "someone else's file");
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  ExpectRecords(*log, 0, 3);
  EXPECT_FALSE(fs::exists(IndexPath(500)));
  EXPECT_FALSE(fs::exists(IndexPath(0) + ".tmp"));
  EXPECT_TRUE(fs::exists(dir_ + "/README"));
}

// --- Segments and the index ---

TEST_F(DiskLogTest, RollsSegmentsAndReadsAcrossThem) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 100);
    LogStats stats = log->Stats();
    EXPECT_GT(stats.segments, 5);
    ExpectRecords(*log, 0, 100);
    // A read from any offset returns the right record, across segments.
    for (int64_t at = 0; at < 100; at += 13) {
      ONCE_ASSERT_OK_AND_ASSIGN(auto got, log->Read(at, ReadLimits{30, 1 << 20}));
      ASSERT_THAT(got, SizeIs(std::min<int64_t>(30, 100 - at)));
      for (size_t k = 0; k < got.size(); ++k)
        EXPECT_EQ(got[k].offset, at + static_cast<int64_t>(k));
    }
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GT(bases.size(), 5u);
  EXPECT_EQ(bases.front(), 0);
  for (size_t i = 0; i < bases.size(); ++i) {
    EXPECT_LE(fs::file_size(SegmentPath(bases[i])), 1024u) << bases[i];
    // Sealed segments have an index; the active one keeps it in memory.
    EXPECT_EQ(fs::exists(IndexPath(bases[i])), i + 1 < bases.size()) << bases[i];
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->recovery_report().rebuilt_indexes, 0);
  EXPECT_EQ(log->recovery_report().segments, static_cast<int64_t>(bases.size()));
  EXPECT_EQ(log->NextOffset(), 100);
  ExpectRecords(*log, 0, 100);
  AppendRange(log.get(), 100, 120);
  ExpectRecords(*log, 0, 120);
}

TEST_F(DiskLogTest, ARecordLargerThanASegmentGetsOneOfItsOwn) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  AppendRange(log.get(), 0, 2);
  Record big = MakeRecord(2, kT0, 5000);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({big}));
  EXPECT_EQ(offset, 2);
  AppendRange(log.get(), 3, 4);
  EXPECT_EQ(log->Stats().segments, 3);
  ONCE_ASSERT_OK_AND_ASSIGN(auto got, log->Read(2, ReadLimits{1, 10}));
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0], AtOffset(big, 2));
}

TEST_F(DiskLogTest, LostIndexIsRebuiltAndReadsStayRight) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 60);
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 3u);
  const std::string original = ReadFile(IndexPath(bases[1]));
  fs::remove(IndexPath(bases[0]));
  fs::remove(IndexPath(bases[1]));
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    EXPECT_EQ(log->recovery_report().rebuilt_indexes, 2);
    ExpectRecords(*log, 0, 60);
  }
  // Rebuilt byte for byte as it was written.
  EXPECT_EQ(ReadFile(IndexPath(bases[1])), original);
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->recovery_report().rebuilt_indexes, 0);
}

TEST_F(DiskLogTest, DamagedIndexIsRebuilt) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 60);
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  FlipBit(IndexPath(bases[0]), 60);          // an entry: the CRC catches it
  FlipBit(IndexPath(bases[1]), 20);          // the header's log size
  fs::resize_file(IndexPath(bases[2]), 30);  // torn
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->recovery_report().rebuilt_indexes, 3);
  ExpectRecords(*log, 0, 60);
}

TEST_F(DiskLogTest, StaleIndexIsRebuilt) {
  // An intact index of another log with the same base offset: its sizes
  // and offsets do not match this log.
  const std::string other = root_ + "/other";
  {
    DiskLogOptions o = SmallSegments();
    o.dir = other;
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    for (int i = 0; i < 30; ++i) ASSERT_THAT(log->Append({MakeRecord(i, kT0, 5)}), IsOk());
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 30);
  }
  fs::copy_file(other + "/00000000000000000000.index", IndexPath(0),
                fs::copy_options::overwrite_existing);
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->recovery_report().rebuilt_indexes, 1);
  ExpectRecords(*log, 0, 30);
}

TEST_F(DiskLogTest, EmptyActiveSegmentAfterACrashedRollIsFine) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 5);
  }
  // What a crash right after the roll's file creation leaves (the sealed
  // segment's index may be missing too).
  WriteFile(SegmentPath(5), "");
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  EXPECT_EQ(log->recovery_report().rebuilt_indexes, 1);
  EXPECT_EQ(log->NextOffset(), 5);
  AppendRange(log.get(), 5, 8);
  ExpectRecords(*log, 0, 8);
}

// --- Durability ---

// The active segment reserves blocks ahead of its writes (where the file
// system can); a sealed one gives them back; the sizes recovery reads are
// the written bytes only.
TEST_F(DiskLogTest, ActiveSegmentReservesBlocksAndASealedOneGivesThemBack) {
  DiskLogOptions o = Options();
  o.segment_bytes = 1 << 20;
  std::vector<std::string> logs;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    Record r = MakeRecord(0);
    r.value.assign(64 << 10, 'v');
    // 20 records of 64 KiB: the first segment seals at 1 MiB.
    for (int i = 0; i < 20; ++i) ASSERT_THAT(log->Append({r}), IsOk());
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      if (e.path().extension() == ".log") logs.push_back(e.path().string());
    }
    std::sort(logs.begin(), logs.end());
    ASSERT_EQ(logs.size(), 2u);
    struct stat active;
    ASSERT_EQ(::stat(logs[1].c_str(), &active), 0);
    const int64_t active_size = static_cast<int64_t>(active.st_size);
    const int64_t active_blocks = static_cast<int64_t>(active.st_blocks) * 512;
    // Reserved past the end, unless this file system cannot reserve.
    if (active_blocks > active_size) {
      EXPECT_GE(active_blocks, active_size + (512 << 10));
    }
  }
  struct stat sealed;
  ASSERT_EQ(::stat(logs[0].c_str(), &sealed), 0);
  EXPECT_LT(static_cast<int64_t>(sealed.st_blocks) * 512,
            static_cast<int64_t>(sealed.st_size) + (64 << 10));
  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, DiskLog::Open(o));
  EXPECT_EQ(reopened->NextOffset(), 20);
  EXPECT_EQ(reopened->recovery_report().truncated_bytes, 0);
}

TEST_F(DiskLogTest, GroupCommitSharesSyncsAmongConcurrentAppenders) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  o.segment_bytes = 16 << 10;  // rolls happen under concurrency too
  std::vector<std::vector<int64_t>> offsets(kThreads);
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Record r = MakeRecord(i);
          r.key = absl::StrCat("thread-", t);
          r.value = absl::StrCat(t, "/", i);
          absl::StatusOr<int64_t> offset = log->Append({r});
          ASSERT_THAT(offset, IsOk());
          // Visible once Append returns.
          absl::StatusOr<std::vector<Record>> got = log->Read(*offset, ReadLimits{1, 1 << 20});
          ASSERT_THAT(got, IsOk());
          ASSERT_THAT(*got, SizeIs(1));
          EXPECT_EQ((*got)[0].value, r.value);
          offsets[t].push_back(*offset);
        }
      });
    }
    for (auto& th : threads) th.join();
    const LogStats stats = log->Stats();
    EXPECT_EQ(stats.appends, kThreads * kPerThread);
    EXPECT_LT(stats.syncs, stats.appends);
    EXPECT_GT(stats.syncs, 0);
    EXPECT_EQ(stats.next_offset, kThreads * kPerThread);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  std::vector<Record> all = ReadAll(*log, 100);
  ASSERT_THAT(all, SizeIs(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const Record& r = all[offsets[t][i]];
      EXPECT_EQ(r.key, absl::StrCat("thread-", t));
      EXPECT_EQ(r.value, absl::StrCat(t, "/", i));
    }
  }
}

// Under kAlways concurrent appends are written as one group: a batch that
// cannot be framed is refused alone, and the others keep contiguous offsets.
TEST_F(DiskLogTest, AnUnframableBatchFailsAloneInAGroup) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  constexpr int kOversize = 5;
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    std::vector<Record> oversize(1, MakeRecord(0));
    oversize[0].value.assign(kMaxFrameBodySize + 1, 'x');
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Record r = MakeRecord(i);
          r.value = absl::StrCat(t, "/", i);
          ASSERT_THAT(log->Append({r}), IsOk());
        }
      });
    }
    threads.emplace_back([&] {
      for (int i = 0; i < kOversize; ++i) {
        EXPECT_THAT(log->Append(oversize), StatusIs(absl::StatusCode::kInvalidArgument));
      }
    });
    for (auto& th : threads) th.join();
    EXPECT_EQ(log->Stats().appends, kThreads * kPerThread);
    EXPECT_EQ(log->NextOffset(), kThreads * kPerThread);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  std::vector<Record> all = ReadAll(*log, 100);
  ASSERT_THAT(all, SizeIs(kThreads * kPerThread));
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, static_cast<int64_t>(i));
}

TEST_F(DiskLogTest, IntervalPolicySyncsWhenTheIntervalElapsed) {
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kInterval;
  o.fsync_interval_ms = 100;
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  AppendRange(log.get(), 0, 3);
  EXPECT_EQ(log->Stats().syncs, 0);
  clock_.Advance(99);
  AppendRange(log.get(), 3, 4);
  EXPECT_EQ(log->Stats().syncs, 0);
  clock_.Advance(1);
  AppendRange(log.get(), 4, 5);
  EXPECT_EQ(log->Stats().syncs, 1);
  AppendRange(log.get(), 5, 6);
  EXPECT_EQ(log->Stats().syncs, 1);
  // The broker's periodic Sync() covers the rest; a second one has nothing
  // to do.
  ONCE_ASSERT_OK(log->Sync());
  EXPECT_EQ(log->Stats().syncs, 2);
  ONCE_ASSERT_OK(log->Sync());
  EXPECT_EQ(log->Stats().syncs, 2);
}

TEST_F(DiskLogTest, NeverPolicySyncsOnlyWhenAsked) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  AppendRange(log.get(), 0, 10);
  clock_.Advance(1'000'000);
  AppendRange(log.get(), 10, 11);
  EXPECT_EQ(log->Stats().syncs, 0);
  ONCE_ASSERT_OK(log->Sync());
  EXPECT_EQ(log->Stats().syncs, 1);
}

TEST_F(DiskLogTest, AlwaysPolicySyncsEveryLoneAppend) {
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  AppendRange(log.get(), 0, 5);
  EXPECT_EQ(log->Stats().syncs, 5);
  ONCE_ASSERT_OK(log->Sync());
  EXPECT_EQ(log->Stats().syncs, 5);
}

TEST_F(DiskLogTest, ReadersRunConcurrentlyWithAppendsAndSeeOnlyWholeRecords) {
  for (FsyncPolicy policy : {FsyncPolicy::kNever, FsyncPolicy::kAlways}) {
    SCOPED_TRACE(static_cast<int>(policy));
    fs::remove_all(dir_);
    DiskLogOptions o = SmallSegments();
    o.segment_bytes = 8 << 10;
    o.fsync = policy;
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    constexpr int64_t kTotal = 400;
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (int64_t i = 0; i < kTotal; i += 4) {
        std::vector<Record> batch;
        for (int64_t k = i; k < i + 4; ++k) batch.push_back(MakeRecord(k));
        ASSERT_THAT(log->Append(batch), IsOk());
      }
      done = true;
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&] {
        int64_t next = 0;
        // Bounded (the cap is only a safety net): the reader follows the
        // writer, yielding when it caught up, and stops once the writer is
        // done and nothing is left.
        for (int64_t pass = 0; pass < 100'000'000 && next < kTotal; ++pass) {
          const bool writer_done = done.load();
          absl::StatusOr<std::vector<Record>> got = log->Read(next, ReadLimits{50, 1 << 20});
          ASSERT_THAT(got, IsOk());
          for (const Record& rec : *got) {
            ASSERT_EQ(rec, AtOffset(MakeRecord(next), next));
            ++next;
          }
          if (got->empty()) {
            if (writer_done) break;
            std::this_thread::yield();
          }
        }
        EXPECT_EQ(next, kTotal);
      });
    }
    writer.join();
    for (auto& th : readers) th.join();
  }
}

// --- Retention, trimming, time ---

TEST_F(DiskLogTest, TrimBeforeRemovesWholeSegmentsBelowTheOffset) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  AppendRange(log.get(), 0, 60);
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  // Inside segment 2: segments 0 and 1 go, 2 stays.
  ONCE_ASSERT_OK(log->TrimBefore(bases[2] + 1));
  EXPECT_EQ(log->FirstOffset(), bases[2]);
  EXPECT_EQ(SegmentBases().front(), bases[2]);
  EXPECT_FALSE(fs::exists(IndexPath(bases[0])));
  EXPECT_THAT(log->Read(bases[2] - 1, ReadLimits{}),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr(absl::StrCat("offset ", bases[2] - 1,
                                              " is below the first retained offset ", bases[2]))));
  ONCE_ASSERT_OK_AND_ASSIGN(auto got, log->Read(bases[2], ReadLimits{1, 1 << 20}));
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].offset, bases[2]);
  // Past the end: every sealed segment goes, never the active one.
  ONCE_ASSERT_OK(log->TrimBefore(1'000'000));
  EXPECT_EQ(log->Stats().segments, 1);
  EXPECT_EQ(log->FirstOffset(), bases.back());
  ONCE_ASSERT_OK(log->TrimBefore(-5));
  log.reset();
  ONCE_ASSERT_OK_AND_ASSIGN(log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->FirstOffset(), bases.back());
  ExpectRecords(*log, bases.back(), 60);
}

TEST_F(DiskLogTest, RetentionByAgeRemovesSegmentsWhoseNewestRecordIsOld) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  // Stamped by the (fake) clock as the topic does, one record a second:
  // record i at kT0 + i s.
  for (int64_t i = 0; i < 60; ++i) {
    ASSERT_THAT(log->Append({MakeRecord(i, clock_.NowMs())}), IsOk());
    clock_.Advance(1000);
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  // 40 s later (kT0 + 100 s) with 70 s retention, records before kT0 + 30 s
  // are old: a segment goes when its newest record is.
  clock_.Advance(40'000);
  const int64_t now = clock_.NowMs();
  ASSERT_EQ(now, kT0 + 100'000);
  ONCE_ASSERT_OK(log->EnforceRetention(now, 70'000, -1));
  // Records below 30 are older than 70 s. The segment holding record 30 is
  // kept; the ones before it held only older records and are gone.
  const int64_t first = log->FirstOffset();
  EXPECT_GT(first, 0);
  EXPECT_LE(first, 30);
  EXPECT_TRUE(std::find(bases.begin(), bases.end(), first) != bases.end());
  const std::vector<int64_t> kept = SegmentBases();
  EXPECT_EQ(kept.front(), first);
  EXPECT_EQ(kept.size(),
            static_cast<size_t>(bases.end() - std::find(bases.begin(), bases.end(), first)));
  ExpectRecords(*log, kept.front(), 60, 1000);
  // Everything is old: all sealed segments go, never the active one.
  ONCE_ASSERT_OK(log->EnforceRetention(now + 1'000'000, 1, -1));
  EXPECT_EQ(log->Stats().segments, 1);
  EXPECT_EQ(log->FirstOffset(), bases.back());
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t next, log->Append({MakeRecord(60)}));
  EXPECT_EQ(next, 60);
}

TEST_F(DiskLogTest, RetentionByBytesKeepsTheTotalUnderTheLimit) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  AppendRange(log.get(), 0, 80);
  const int64_t before = log->Stats().size_bytes;
  ONCE_ASSERT_OK(log->EnforceRetention(kT0, -1, 3000));
  const LogStats stats = log->Stats();
  EXPECT_LE(stats.size_bytes, 3000);
  EXPECT_LT(stats.size_bytes, before);
  // It stopped as soon as the total fit: one more segment would not have.
  EXPECT_GT(stats.size_bytes, 3000 - 1024);
  ExpectRecords(*log, stats.first_offset, 80);
  ONCE_ASSERT_OK(log->EnforceRetention(kT0, -1, 0));
  EXPECT_EQ(log->Stats().segments, 1);
  // No limits: nothing happens.
  ONCE_ASSERT_OK(log->EnforceRetention(kT0, -1, -1));
  EXPECT_EQ(log->Stats().segments, 1);
}

TEST_F(DiskLogTest, OffsetForTimeFindsTheFirstRecordAtOrAfter) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  // Timestamps rise by 10 ms, except that record 25 goes back in time.
  auto ts = [](int64_t i) { return i == 25 ? kT0 : kT0 + i * 10; };
  for (int64_t i = 0; i < 50; ++i) ASSERT_THAT(log->Append({MakeRecord(i, ts(i))}), IsOk());
  // The answer by brute force, from `first` on.
  auto expected = [&](int64_t t, int64_t first) {
    for (int64_t i = first; i < 50; ++i) {
      if (ts(i) >= t) return i;
    }
    return int64_t{50};
  };
  EXPECT_THAT(log->OffsetForTime(kT0 + 1), IsOkAndHolds(1));
  EXPECT_THAT(log->OffsetForTime(kT0 + 255), IsOkAndHolds(26));
  EXPECT_THAT(log->OffsetForTime(kT0 + 491), IsOkAndHolds(50));  // none: NextOffset()
  for (int64_t t = kT0 - 5; t <= kT0 + 500; t += 5) {
    EXPECT_THAT(log->OffsetForTime(t), IsOkAndHolds(expected(t, 0))) << t - kT0;
  }
  // After trimming, the answer is never below the first offset.
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  ONCE_ASSERT_OK(log->TrimBefore(bases[2]));
  EXPECT_THAT(log->OffsetForTime(0), IsOkAndHolds(bases[2]));
  // The same answers from indexes rebuilt at open.
  log.reset();
  for (int64_t b : bases) fs::remove(IndexPath(b));
  ONCE_ASSERT_OK_AND_ASSIGN(log, DiskLog::Open(SmallSegments()));
  for (int64_t t = kT0 - 5; t <= kT0 + 500; t += 5) {
    EXPECT_THAT(log->OffsetForTime(t), IsOkAndHolds(expected(t, bases[2]))) << t - kT0;
  }
}

}  // namespace
}  // namespace once::broker
