// Segment, its sparse index and the File wrapper under it.
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/file.h"
#include "broker/record.h"
#include "broker/record_format.h"
#include "broker/segment.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

namespace fs = std::filesystem;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

MATCHER_P(IsOkAndHolds, expected, "is OK and holds " + ::testing::PrintToString(expected)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(expected, *arg, result_listener);
}

class SegmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = ::testing::TempDir();
    if (!t.empty() && t.back() != '/') t += '/';
    std::string tmpl = t + "disk_segment_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static Record MakeRecord(int64_t i, int64_t ts) {
    Record r;
    r.timestamp_ms = ts;
    r.key = absl::StrCat("k", i);
    r.value = std::string(static_cast<size_t>(20 + (i * 37) % 90), 'v');
    return r;
  }

  // Appends records [from, to) in batches of `batch`; record i has
  // timestamp ts(i).
  template <typename Ts>
  void Fill(Segment* seg, int64_t from, int64_t to, int64_t batch, Ts ts) {
    FrameBatch frames;
    for (int64_t i = from; i < to; i += batch) {
      frames.Clear();
      for (int64_t k = i; k < std::min(to, i + batch); ++k) {
        ASSERT_THAT(frames.Add(MakeRecord(k, ts(k)), k), IsOk());
      }
      ASSERT_THAT(seg->Append(frames), IsOk());
    }
    seg->Publish(seg->size());
  }

  std::string dir_;
};

TEST_F(SegmentTest, FileNamesAreTwentyDigitBaseOffsets) {
  EXPECT_EQ(Segment::LogFileName(0), "00000000000000000000.log");
  EXPECT_EQ(Segment::LogFileName(42), "00000000000000000042.log");
  EXPECT_EQ(Segment::IndexFileName(42), "00000000000000000042.index");
  int64_t base = -1;
  EXPECT_TRUE(Segment::ParseLogFileName("00000000000000001234.log", &base));
  EXPECT_EQ(base, 1234);
  for (const char* bad :
       {"1234.log", "0000000000000000123x.log", "00000000000000001234.index",
        "00000000000000001234.log.tmp", "-0000000000000001234.log", "99999999999999999999.log"}) {
    EXPECT_FALSE(Segment::ParseLogFileName(bad, &base)) << bad;
  }
}

TEST_F(SegmentTest, IndexIsSparseAndRebuildsIdentically) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 100, 256));
  Fill(seg.get(), 100, 300, 3, [](int64_t i) { return 1000 + i; });
  const std::vector<IndexEntry> written = seg->IndexEntries();
  // Entries every >= 256 bytes, in order, each pointing at its frame.
  ASSERT_GT(written.size(), 10u);
  int64_t prev = 0;
  for (const IndexEntry& e : written) {
    EXPECT_GE(e.position - prev, 256);
    EXPECT_LT(e.position - prev, 256 + 200);  // at most one record past the interval
    prev = e.position;
    EXPECT_EQ(e.max_timestamp_before, 1000 + e.offset - 1);
  }
  EXPECT_EQ(seg->next_offset(), 300);
  EXPECT_EQ(seg->max_timestamp(), 1299);

  ONCE_ASSERT_OK(seg->WriteIndexFile());
  const int64_t size = seg->size();
  seg.reset();

  ONCE_ASSERT_OK_AND_ASSIGN(seg, Segment::Open(dir_, 100, 256));
  std::string why;
  ONCE_ASSERT_OK_AND_ASSIGN(bool loaded, seg->LoadIndex(&why));
  EXPECT_TRUE(loaded) << why;
  EXPECT_EQ(seg->IndexEntries(), written);
  EXPECT_EQ(seg->size(), size);
  EXPECT_EQ(seg->next_offset(), 300);
  EXPECT_EQ(seg->max_timestamp(), 1299);

  ONCE_ASSERT_OK_AND_ASSIGN(SegmentScan scan, seg->Scan());
  EXPECT_FALSE(scan.damaged);
  EXPECT_EQ(scan.records, 200);
  EXPECT_EQ(scan.valid_bytes, size);
  EXPECT_EQ(seg->IndexEntries(), written);
}

TEST_F(SegmentTest, IndexWithAnotherIntervalIsNotTrusted) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 128));
  Fill(seg.get(), 0, 50, 1, [](int64_t) { return 5; });
  ONCE_ASSERT_OK(seg->WriteIndexFile());
  seg.reset();
  // Denser than the 512-byte interval now configured: rebuilt.
  ONCE_ASSERT_OK_AND_ASSIGN(seg, Segment::Open(dir_, 0, 512));
  std::string why;
  ONCE_ASSERT_OK_AND_ASSIGN(bool loaded, seg->LoadIndex(&why));
  EXPECT_FALSE(loaded);
  EXPECT_THAT(why, HasSubstr("index entry 0"));
}

TEST_F(SegmentTest, ReadSeeksThroughTheIndexAndStopsAtTheReadableEnd) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 128));
  Fill(seg.get(), 0, 100, 4, [](int64_t i) { return i; });
  for (int64_t from : {0, 1, 37, 98, 99}) {
    std::vector<Record> out;
    size_t bytes = 0;
    ONCE_ASSERT_OK_AND_ASSIGN(Segment::ReadResult r,
                              seg->Read(from, 100, ReadLimits{10, 1 << 20}, &out, &bytes));
    ASSERT_THAT(out, SizeIs(std::min<int64_t>(10, 100 - from)));
    EXPECT_EQ(out.front().offset, from);
    EXPECT_EQ(r.next_offset, out.back().offset + 1);
    EXPECT_EQ(r.full, 100 - from >= 10);
  }
  // Bytes written but not published are invisible.
  FrameBatch more;
  ONCE_ASSERT_OK(more.Add(MakeRecord(100, 100), 100));
  ONCE_ASSERT_OK(seg->Append(more));
  std::vector<Record> out;
  size_t bytes = 0;
  ONCE_ASSERT_OK_AND_ASSIGN(Segment::ReadResult r, seg->Read(95, 200, ReadLimits{}, &out, &bytes));
  EXPECT_THAT(out, SizeIs(5));
  EXPECT_EQ(r.next_offset, 100);
  seg->Publish(seg->size());
  out.clear();
  ONCE_ASSERT_OK(seg->Read(95, 200, ReadLimits{}, &out, &bytes).status());
  EXPECT_THAT(out, SizeIs(6));
}

TEST_F(SegmentTest, FindTimeHandlesTimestampsThatGoBack) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 128));
  // 0, 10, 20, ... but every 7th record is stamped 0.
  auto ts = [](int64_t i) { return i % 7 == 6 ? 0 : i * 10; };
  Fill(seg.get(), 0, 80, 2, ts);
  for (int64_t t = -1; t <= 800; t += 3) {
    int64_t want = -1;
    for (int64_t i = 0; i < 80; ++i) {
      if (ts(i) >= t) {
        want = i;
        break;
      }
    }
    ONCE_ASSERT_OK_AND_ASSIGN(std::optional<int64_t> got, seg->FindTime(t, 80));
    if (want < 0) {
      EXPECT_FALSE(got.has_value()) << t;
    } else {
      EXPECT_EQ(got, want) << t;
    }
  }
}

TEST_F(SegmentTest, ScanFindsTheIntactFrameAfterDamage) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 4096));
  Fill(seg.get(), 0, 10, 1, [](int64_t) { return 1; });
  const std::string path = seg->log_path();
  seg.reset();
  // Zero out record 4's header: records 5.. are intact after it.
  std::string data;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kReadOnly));
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t size, f.Size());
    data.resize(static_cast<size_t>(size));
    ONCE_ASSERT_OK(f.ReadAt(0, data.size(), data.data()).status());
  }
  std::vector<int64_t> pos;
  for (size_t p = 0; p < data.size();) {
    Record r;
    ONCE_ASSERT_OK_AND_ASSIGN(size_t n, DecodeFrame(absl::string_view(data).substr(p), &r));
    pos.push_back(static_cast<int64_t>(p));
    p += n;
  }
  for (int64_t i = 0; i < 12; ++i) data[pos[4] + i] = 0;
  fs::remove(path);
  {
    ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kCreateNew));
    ONCE_ASSERT_OK(f.Append(data));
  }
  ONCE_ASSERT_OK_AND_ASSIGN(seg, Segment::Open(dir_, 0, 4096));
  ONCE_ASSERT_OK_AND_ASSIGN(SegmentScan scan, seg->Scan());
  EXPECT_TRUE(scan.damaged);
  EXPECT_TRUE(scan.could_be_torn);
  EXPECT_EQ(scan.valid_bytes, pos[4]);
  EXPECT_EQ(scan.next_offset, 4);
  EXPECT_EQ(scan.records, 4);
  EXPECT_EQ(scan.next_valid_position, pos[5]);
  EXPECT_EQ(scan.next_valid_offset, 5);
  EXPECT_THAT(scan.damage, HasSubstr("magic"));
  EXPECT_EQ(seg->size(), pos[4]);
}

// --- Reserved space ---

TEST_F(SegmentTest, ZerosReservedAheadAreNotDamage) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 4096));
  seg->set_reserve(Segment::Reserve::kZeros, 64 << 10);
  Fill(seg.get(), 0, 40, 3, [](int64_t) { return 1; });
  const int64_t size = seg->size();
  const std::string path = seg->log_path();
  // The file runs at least half the reserve past the records, in zeros.
  EXPECT_GE(static_cast<int64_t>(fs::file_size(path)), size + (32 << 10));
  seg.reset();  // as a crash leaves it: the reserve is still there

  ONCE_ASSERT_OK_AND_ASSIGN(seg, Segment::Open(dir_, 0, 4096));
  ONCE_ASSERT_OK_AND_ASSIGN(SegmentScan scan, seg->Scan());
  EXPECT_FALSE(scan.damaged) << scan.damage;
  EXPECT_EQ(scan.valid_bytes, size);
  EXPECT_EQ(scan.records, 40);
  EXPECT_EQ(scan.reserved_bytes, static_cast<int64_t>(fs::file_size(path)) - size);
  EXPECT_EQ(seg->next_offset(), 40);
}

TEST_F(SegmentTest, ATornWriteIntoTheReserveIsDamageThatCouldBeTorn) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 4096));
  seg->set_reserve(Segment::Reserve::kZeros, 64 << 10);
  Fill(seg.get(), 0, 10, 1, [](int64_t) { return 1; });
  const int64_t size = seg->size();
  const std::string path = seg->log_path();
  seg.reset();
  // The last record's second half never reached the disk: zeros there.
  std::string data(static_cast<size_t>(fs::file_size(path)), '\0');
  {
    ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kReadWrite));
    ONCE_ASSERT_OK(f.ReadAt(0, data.size(), data.data()).status());
    std::vector<int64_t> pos;
    for (size_t p = 0; p < static_cast<size_t>(size);) {
      Record r;
      ONCE_ASSERT_OK_AND_ASSIGN(size_t n, DecodeFrame(absl::string_view(data).substr(p), &r));
      pos.push_back(static_cast<int64_t>(p));
      p += n;
    }
    ASSERT_THAT(pos, SizeIs(10));
    const int64_t half = pos[9] + (size - pos[9]) / 2;
    ONCE_ASSERT_OK(f.WriteZerosAt(half, size - half));
  }
  ONCE_ASSERT_OK_AND_ASSIGN(seg, Segment::Open(dir_, 0, 4096));
  ONCE_ASSERT_OK_AND_ASSIGN(SegmentScan scan, seg->Scan());
  EXPECT_TRUE(scan.damaged);
  EXPECT_TRUE(scan.could_be_torn);
  EXPECT_EQ(scan.next_valid_position, -1);
  EXPECT_EQ(scan.records, 9);
  EXPECT_EQ(scan.reserved_bytes, 0);
}

TEST_F(SegmentTest, ReleasingTheReserveCutsTheFileToItsRecords) {
  for (Segment::Reserve how : {Segment::Reserve::kZeros, Segment::Reserve::kAllocate}) {
    SCOPED_TRACE(how == Segment::Reserve::kZeros ? "zeros" : "allocate");
    fs::remove_all(dir_ + "/00000000000000000000.log");
    ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Segment> seg, Segment::Create(dir_, 0, 4096));
    seg->set_reserve(how, 64 << 10);
    Fill(seg.get(), 0, 5, 1, [](int64_t) { return 1; });
    ONCE_ASSERT_OK(seg->ReleaseReserve());
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(seg->log_path())), seg->size());
    // Appending after the release reserves again.
    Fill(seg.get(), 5, 6, 1, [](int64_t) { return 1; });
    ONCE_ASSERT_OK(seg->ReleaseReserve());
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(seg->log_path())), seg->size());
  }
}

// --- File ---

TEST_F(SegmentTest, FileErrorsNameThePathAndTheCause) {
  const std::string missing = dir_ + "/nope/file";
  EXPECT_THAT(
      File::Open(missing, File::Mode::kReadOnly),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(missing), HasSubstr("No such file"))));
  const std::string path = dir_ + "/f";
  ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kCreateNew));
  EXPECT_THAT(File::Open(path, File::Mode::kCreateNew),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(path)));
  EXPECT_THAT(RemoveFile(missing), StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing)));
  ONCE_ASSERT_OK_AND_ASSIGN(File ro, File::Open(path, File::Mode::kReadOnly));
  EXPECT_THAT(ro.Append("x"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       AllOf(HasSubstr("write"), HasSubstr(path))));
}

TEST_F(SegmentTest, FileWritesAtAPositionAndWritesZeros) {
  const std::string path = dir_ + "/f";
  ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kCreateNew));
  ONCE_ASSERT_OK(f.WriteZerosAt(0, 100 << 10));  // more than one chunk of zeros
  EXPECT_THAT(f.Size(), IsOkAndHolds(100 << 10));
  ONCE_ASSERT_OK(f.WriteAt(3, "abc"));  // over the zeros; the size stays
  ONCE_ASSERT_OK(f.StartWriteback(0, 100 << 10));
  EXPECT_THAT(f.Size(), IsOkAndHolds(100 << 10));
  std::string all(100 << 10, 'x');
  ONCE_ASSERT_OK_AND_ASSIGN(size_t n, f.ReadAt(0, all.size(), all.data()));
  ASSERT_EQ(n, all.size());
  EXPECT_EQ(all.substr(0, 8), std::string("\0\0\0abc\0\0", 8));
  EXPECT_EQ(all.find_first_not_of('\0', 6), std::string::npos);
  ONCE_ASSERT_OK(f.Append("!"));  // at the end, past the zeros
  EXPECT_THAT(f.Size(), IsOkAndHolds((100 << 10) + 1));
  ONCE_ASSERT_OK_AND_ASSIGN(File ro, File::Open(path, File::Mode::kReadOnly));
  EXPECT_THAT(ro.WriteAt(0, "x"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                           AllOf(HasSubstr("write"), HasSubstr(path))));
}

TEST_F(SegmentTest, FileAppendsReadsTruncatesAndCloses) {
  const std::string path = dir_ + "/f";
  ONCE_ASSERT_OK_AND_ASSIGN(File f, File::Open(path, File::Mode::kCreateNew));
  ONCE_ASSERT_OK(f.Append("hello "));
  ONCE_ASSERT_OK(f.Append("world"));
  ONCE_ASSERT_OK(f.Sync());
  EXPECT_THAT(f.Size(), IsOkAndHolds(11));
  char buf[16];
  ONCE_ASSERT_OK_AND_ASSIGN(size_t n, f.ReadAt(6, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), "world");
  ONCE_ASSERT_OK(f.Truncate(5));
  ONCE_ASSERT_OK(f.Append("!"));  // lands at the new end
  ONCE_ASSERT_OK_AND_ASSIGN(n, f.ReadAt(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), "hello!");
  File moved = std::move(f);
  EXPECT_FALSE(f.is_open());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(moved.is_open());
  ONCE_ASSERT_OK(moved.Close());
  ONCE_ASSERT_OK(moved.Close());
  EXPECT_FALSE(moved.is_open());

  ONCE_ASSERT_OK(CreateDirs(dir_ + "/a/b/c"));
  ONCE_ASSERT_OK(CreateDirs(dir_ + "/a/b/c"));
  ONCE_ASSERT_OK(SyncDir(dir_ + "/a/b"));
  ONCE_ASSERT_OK(RenameFile(path, dir_ + "/a/g"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, ListDir(dir_ + "/a"));
  EXPECT_THAT(names, ::testing::ElementsAre("b", "g"));
  EXPECT_THAT(PathExists(dir_ + "/a/g"), IsOkAndHolds(true));
  EXPECT_THAT(PathExists(path), IsOkAndHolds(false));
}

}  // namespace
}  // namespace once::broker
