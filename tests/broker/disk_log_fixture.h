// The disk log tests' fixture and helpers (disk_log_test.cc,
// disk_log_recovery_test.cc): a temp partition directory, records that
// exercise every field, and byte-level access to segment files.
#ifndef ONCE_TESTS_BROKER_DISK_LOG_FIXTURE_H_
#define ONCE_TESTS_BROKER_DISK_LOG_FIXTURE_H_

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/disk_log.h"
#include "broker/record.h"
#include "broker/record_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coding.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::broker::disk_log_testing {

namespace fs = std::filesystem;
using ::once::testing::FakeClock;
using ::once::testing::IsOk;
using ::testing::SizeIs;

inline constexpr int64_t kT0 = 1'700'000'000'000;

MATCHER_P(IsOkAndHolds, expected, "is OK and holds " + ::testing::PrintToString(expected)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(expected, *arg, result_listener);
}

inline Record MakeRecord(int64_t i, int64_t timestamp_ms = kT0, size_t pad = 40) {
  Record r;
  r.timestamp_ms = timestamp_ms;
  r.flags = kRecordHasKey;
  r.key = absl::StrCat("key-", i);
  if (i % 3 == 0) r.idempotency_key = absl::StrCat("idem-", i);
  if (i % 2 == 0) r.headers = {{"h", absl::StrCat(i)}, {"trace", "t"}};
  r.value = absl::StrCat("value-", i, "-", std::string(pad, static_cast<char>('a' + i % 26)));
  return r;
}

// `r` as Read returns it after being appended at `offset`.
inline Record AtOffset(Record r, int64_t offset) {
  r.offset = offset;
  return r;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline void FlipBit(const std::string& path, int64_t position, int bit = 0) {
  std::string data = ReadFile(path);
  ASSERT_LT(position, static_cast<int64_t>(data.size()));
  data[position] = static_cast<char>(data[position] ^ (1 << bit));
  WriteFile(path, data);
}

// Byte positions of the frames in a segment file, from its bytes.
inline std::vector<int64_t> FramePositions(const std::string& path) {
  const std::string data = ReadFile(path);
  std::vector<int64_t> positions;
  size_t pos = 0;
  while (pos < data.size()) {
    Record r;
    absl::StatusOr<size_t> n = DecodeFrame(absl::string_view(data).substr(pos), &r);
    EXPECT_THAT(n, IsOk()) << path << " at " << pos;
    if (!n.ok()) break;
    positions.push_back(static_cast<int64_t>(pos));
    pos += *n;
  }
  return positions;
}

class DiskLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = JoinTemp("disk_log_test.XXXXXX");
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/p0";
  }
  void TearDown() override { fs::remove_all(root_); }

  static std::string JoinTemp(const std::string& name) {
    std::string t = ::testing::TempDir();
    if (!t.empty() && t.back() != '/') t += '/';
    return t + name;
  }

  DiskLogOptions Options() const {
    DiskLogOptions o;
    o.dir = dir_;
    o.fsync = FsyncPolicy::kNever;
    o.clock = &clock_;
    return o;
  }

  // Small segments and a dense index, so that tests roll and seek.
  DiskLogOptions SmallSegments() const {
    DiskLogOptions o = Options();
    o.segment_bytes = 1024;
    o.index_interval_bytes = 128;
    return o;
  }

  std::string SegmentPath(int64_t base, const std::string& dir = "") const {
    return absl::StrCat(dir.empty() ? dir_ : dir, "/", absl::StrFormat("%020d", base), ".log");
  }
  std::string IndexPath(int64_t base) const {
    return absl::StrCat(dir_, "/", absl::StrFormat("%020d", base), ".index");
  }

  std::vector<int64_t> SegmentBases() const {
    std::vector<int64_t> bases;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (name.size() == 24 && name.substr(20) == ".log")
        bases.push_back(std::stoll(name.substr(0, 20)));
    }
    std::sort(bases.begin(), bases.end());
    return bases;
  }

  // Appends records [from, to) one per Append.
  void AppendRange(DiskLog* log, int64_t from, int64_t to, int64_t ts_step = 0) {
    for (int64_t i = from; i < to; ++i) {
      ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({MakeRecord(i, kT0 + i * ts_step)}));
      ASSERT_EQ(offset, i);
    }
  }

  // Every record of the log, read in pieces of `chunk` records.
  std::vector<Record> ReadAll(const Log& log, size_t chunk = 7) const {
    std::vector<Record> all;
    int64_t offset = log.FirstOffset();
    while (offset < log.NextOffset()) {
      absl::StatusOr<std::vector<Record>> got = log.Read(offset, ReadLimits{chunk, 1 << 20});
      EXPECT_THAT(got, IsOk());
      if (!got.ok() || got->empty()) break;
      offset = got->back().offset + 1;
      for (Record& r : *got) all.push_back(std::move(r));
    }
    return all;
  }

  void ExpectRecords(const Log& log, int64_t from, int64_t to, int64_t ts_step = 0) const {
    std::vector<Record> all = ReadAll(log);
    ASSERT_THAT(all, SizeIs(to - from));
    for (int64_t i = from; i < to; ++i) {
      EXPECT_EQ(all[i - from], AtOffset(MakeRecord(i, kT0 + i * ts_step), i)) << "offset " << i;
    }
  }

  mutable FakeClock clock_{kT0};
  std::string root_;
  std::string dir_;
};

// --- Basics ---

}  // namespace once::broker::disk_log_testing

#endif  // ONCE_TESTS_BROKER_DISK_LOG_FIXTURE_H_
