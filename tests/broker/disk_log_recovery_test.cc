// Recovery of the disk log at open: torn tails are cut and reported,
// damage in the middle of a segment is kDataLoss naming file and byte.
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

// --- Torn tails ---

// Writes 6 records (the last one alone in its Append), then, for every byte
// position inside the last record, cuts a copy of the segment there and
// reopens it.
TEST_F(DiskLogTest, TornTailAtEveryByteOfTheLastRecordIsCut) {
  {
    DiskLogOptions o = Options();
    o.fsync = FsyncPolicy::kAlways;
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    AppendRange(log.get(), 0, 6);
  }
  const std::string original = ReadFile(SegmentPath(0));
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  ASSERT_THAT(frames, SizeIs(6));
  const int64_t start = frames.back();
  const int64_t end = static_cast<int64_t>(original.size());
  for (int64_t cut = start; cut < end; ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at byte ", cut));
    const std::string dir = absl::StrCat(root_, "/cut", cut);
    fs::create_directories(dir);
    WriteFile(SegmentPath(0, dir), original.substr(0, cut));
    DiskLogOptions o = Options();
    o.dir = dir;
    {
      ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
      const RecoveryReport& report = log->recovery_report();
      EXPECT_EQ(report.truncated_bytes, cut - start);
      EXPECT_EQ(report.truncated_file, cut > start ? SegmentPath(0, dir) : "");
      EXPECT_EQ(report.dropped_corrupt_bytes, 0);
      EXPECT_EQ(log->NextOffset(), 5);
      EXPECT_EQ(fs::file_size(SegmentPath(0, dir)), static_cast<uintmax_t>(start));
      ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({MakeRecord(5)}));
      EXPECT_EQ(offset, 5);
    }
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    EXPECT_EQ(log->recovery_report().truncated_bytes, 0);
    std::vector<Record> all = ReadAll(*log);
    ASSERT_THAT(all, SizeIs(6));
    for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(all[i], AtOffset(MakeRecord(i), i));
    log.reset();
    fs::remove_all(dir);
  }
}

TEST_F(DiskLogTest, TornBatchKeepsItsCompleteRecordsAndSealedSegmentsStay) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 30);
    std::vector<Record> batch;
    for (int i = 30; i < 34; ++i) batch.push_back(MakeRecord(i));
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t first, log->Append(batch));
    ASSERT_EQ(first, 30);
  }
  const int64_t last = SegmentBases().back();
  const std::string path = SegmentPath(last);
  const std::vector<int64_t> frames = FramePositions(path);
  ASSERT_GE(frames.size(), 4u);
  // The batch's third record is torn: two of the batch survive.
  const int64_t torn_at = frames[frames.size() - 2];
  const int64_t size = static_cast<int64_t>(fs::file_size(path));
  fs::resize_file(path, static_cast<uintmax_t>(torn_at + 10));
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  EXPECT_EQ(log->recovery_report().truncated_bytes, 10);
  EXPECT_EQ(log->recovery_report().truncated_file, path);
  EXPECT_LT(torn_at, size);
  EXPECT_EQ(log->NextOffset(), 32);
  ExpectRecords(*log, 0, 32);
}

TEST_F(DiskLogTest, ZeroFilledTailIsCutAsReservedSpace) {
  // A crash can leave the file longer than its records, the rest reading as
  // zeros: the reserve an fsync=always log writes ahead, or blocks whose
  // data never reached the disk. Either way nothing was lost: the zeros are
  // cut quietly, and are not reported as a torn write.
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 4);
  }
  const int64_t size = static_cast<int64_t>(fs::file_size(SegmentPath(0)));
  fs::resize_file(SegmentPath(0), static_cast<uintmax_t>(size + 4096));
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  EXPECT_EQ(log->recovery_report().truncated_bytes, 0);
  EXPECT_EQ(log->recovery_report().truncated_file, "");
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(SegmentPath(0))), size);
  ExpectRecords(*log, 0, 4);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({MakeRecord(4)}));
  EXPECT_EQ(offset, 4);
}

TEST_F(DiskLogTest, SyncedLogReservesZerosThatACrashLeavesAndRecoveryCuts) {
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  const std::string crashed = root_ + "/crashed";
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    AppendRange(log.get(), 0, 20);
    // What a crash now leaves on disk: the records, then the reserve.
    fs::create_directories(crashed);
    fs::copy_file(SegmentPath(0), SegmentPath(0, crashed));
  }
  // Closed cleanly: the file ends at its records.
  const uintmax_t records_end = fs::file_size(SegmentPath(0));
  EXPECT_EQ(FramePositions(SegmentPath(0)).size(), 20u);
  EXPECT_LT(records_end, fs::file_size(SegmentPath(0, crashed)));

  o.dir = crashed;
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  EXPECT_EQ(log->recovery_report().truncated_bytes, 0);
  EXPECT_EQ(fs::file_size(SegmentPath(0, crashed)), records_end);
  ExpectRecords(*log, 0, 20);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({MakeRecord(20)}));
  EXPECT_EQ(offset, 20);
}

TEST_F(DiskLogTest, DamagedLastRecordWithNothingAfterItIsATornTail) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 4);
  }
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  const int64_t size = static_cast<int64_t>(fs::file_size(SegmentPath(0)));
  FlipBit(SegmentPath(0), frames[3] + 40);
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  EXPECT_EQ(log->recovery_report().truncated_bytes, size - frames[3]);
  ExpectRecords(*log, 0, 3);
}

// --- Corruption in the middle ---

TEST_F(DiskLogTest, BitFlipInAMiddleRecordIsDataLossNamingFileAndByte) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 8);
  }
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  const std::string pristine = ReadFile(SegmentPath(0));
  // In the CRC, the magic, the offset, the timestamp and the payload.
  for (int64_t delta : {0, 4, 14, 22, 50}) {
    SCOPED_TRACE(absl::StrCat("byte ", delta, " of record 3"));
    WriteFile(SegmentPath(0), pristine);
    FlipBit(SegmentPath(0), frames[3] + delta, 2);
    EXPECT_THAT(
        DiskLog::Open(Options()),
        StatusIs(absl::StatusCode::kDataLoss,
                 AllOf(HasSubstr(SegmentPath(0)), HasSubstr(absl::StrCat("at byte ", frames[3])),
                       HasSubstr("an intact record (offset 4) follows"))));
  }
  // The refused log was not changed.
  EXPECT_EQ(fs::file_size(SegmentPath(0)), pristine.size());
}

TEST_F(DiskLogTest, BitFlipInAMiddleRecordWithTruncatePolicyKeepsWhatCameBefore) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 8);
  }
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  const int64_t size = static_cast<int64_t>(fs::file_size(SegmentPath(0)));
  FlipBit(SegmentPath(0), frames[3] + 50);
  DiskLogOptions o = Options();
  o.on_corruption = CorruptionPolicy::kTruncate;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    const RecoveryReport& report = log->recovery_report();
    EXPECT_EQ(report.dropped_corrupt_bytes, size - frames[3]);
    EXPECT_EQ(report.truncated_bytes, 0);
    EXPECT_THAT(report.corruption, HasSubstr(absl::StrCat("at byte ", frames[3])));
    EXPECT_EQ(log->NextOffset(), 3);
    ExpectRecords(*log, 0, 3);
    AppendRange(log.get(), 3, 5);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
  ExpectRecords(*log, 0, 5);
}

TEST_F(DiskLogTest, ImpossibleLengthInTheMiddleIsDataLoss) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 8);
  }
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  const std::string pristine = ReadFile(SegmentPath(0));
  // Out of the valid range; in range but past the end of the file; in range
  // and inside the file but not where the next record starts.
  for (uint32_t length : {0xfffffff0u, 100u << 20, 64u}) {
    SCOPED_TRACE(absl::StrCat("length ", length));
    std::string data = pristine;
    EncodeFixed32(data.data() + frames[2] + 8, length);
    WriteFile(SegmentPath(0), data);
    EXPECT_THAT(
        DiskLog::Open(Options()),
        StatusIs(absl::StatusCode::kDataLoss,
                 AllOf(HasSubstr(SegmentPath(0)), HasSubstr(absl::StrCat("at byte ", frames[2])))));
  }
}

TEST_F(DiskLogTest, RecordWithTheWrongOffsetIsDataLoss) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(Options()));
    AppendRange(log.get(), 0, 3);
  }
  // A record of another log (offset 0 again) pasted at the end: intact, but
  // not the next offset. Not a torn write: refused.
  const std::vector<int64_t> frames = FramePositions(SegmentPath(0));
  std::string data = ReadFile(SegmentPath(0));
  data += data.substr(0, frames[1]);
  WriteFile(SegmentPath(0), data);
  EXPECT_THAT(DiskLog::Open(Options()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("has offset 0, expected 3")));
}

TEST_F(DiskLogTest, CorruptionInASealedSegmentIsFoundByReadsOrAFullCheck) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 60);
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  const std::string sealed = SegmentPath(bases[1]);
  const std::vector<int64_t> frames = FramePositions(sealed);
  ASSERT_GE(frames.size(), 3u);
  FlipBit(sealed, frames[1] + 40);

  // The cheap check (index, first and last record) does not read record 1;
  // the read that reaches it reports it.
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    EXPECT_THAT(log->Read(bases[1], ReadLimits{}),
                StatusIs(absl::StatusCode::kDataLoss,
                         AllOf(HasSubstr(sealed), HasSubstr(absl::StrCat("at byte ", frames[1])))));
    ONCE_ASSERT_OK_AND_ASSIGN(auto before,
                              log->Read(0, ReadLimits{static_cast<size_t>(bases[1]), 1 << 20}));
    EXPECT_THAT(before, SizeIs(bases[1]));
  }
  DiskLogOptions o = SmallSegments();
  o.verify_sealed_segments = true;
  EXPECT_THAT(DiskLog::Open(o),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(sealed), HasSubstr(absl::StrCat("at byte ", frames[1])),
                             HasSubstr("sealed segment"))));

  o.on_corruption = CorruptionPolicy::kTruncate;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    EXPECT_GT(log->recovery_report().dropped_corrupt_bytes, 0);
    EXPECT_EQ(log->NextOffset(), bases[1] + 1);
    EXPECT_EQ(log->Stats().segments, 2);
    ExpectRecords(*log, 0, bases[1] + 1);
    AppendRange(log.get(), bases[1] + 1, bases[1] + 4);
  }
  EXPECT_THAT(SegmentBases(), ElementsAre(bases[0], bases[1]));
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
  ExpectRecords(*log, 0, bases[1] + 4);
}

TEST_F(DiskLogTest, DamagedEndOfASealedSegmentIsCaughtAtOpen) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 60);
  }
  const std::vector<int64_t> bases = SegmentBases();
  const std::string sealed = SegmentPath(bases[1]);
  const std::vector<int64_t> frames = FramePositions(sealed);
  // A sealed segment was synced before the next one was created: a damaged
  // last record there is corruption, not a torn tail.
  FlipBit(sealed, frames.back() + 40);
  EXPECT_THAT(DiskLog::Open(SmallSegments()),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(sealed), HasSubstr(absl::StrCat("at byte ", frames.back())),
                             HasSubstr("sealed segment"))));
  // Also when the sealed segment was cut short.
  FlipBit(sealed, frames.back() + 40);
  fs::resize_file(sealed, static_cast<uintmax_t>(frames.back() + 5));
  EXPECT_THAT(DiskLog::Open(SmallSegments()), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(DiskLogTest, MissingSegmentIsDataLoss) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(SmallSegments()));
    AppendRange(log.get(), 0, 60);
  }
  const std::vector<int64_t> bases = SegmentBases();
  ASSERT_GE(bases.size(), 4u);
  fs::remove(SegmentPath(bases[2]));
  fs::remove(IndexPath(bases[2]));
  EXPECT_THAT(DiskLog::Open(SmallSegments()),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(SegmentPath(bases[3])), HasSubstr("records are missing"))));
  DiskLogOptions o = SmallSegments();
  o.on_corruption = CorruptionPolicy::kTruncate;
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  EXPECT_EQ(log->NextOffset(), bases[2]);
  EXPECT_GT(log->recovery_report().dropped_corrupt_bytes, 0);
  EXPECT_THAT(SegmentBases(), ElementsAre(bases[0], bases[1]));
}

}  // namespace
}  // namespace once::broker
