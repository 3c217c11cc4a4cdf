#include "broker/memory_log.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "broker/log.h"
#include "broker/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

Record Make(std::string value, int64_t timestamp_ms = 0) {
  Record r;
  r.value = std::move(value);
  r.timestamp_ms = timestamp_ms;
  return r;
}

std::vector<std::string> Values(const std::vector<Record>& records) {
  std::vector<std::string> out;
  for (const Record& r : records) out.push_back(r.value);
  return out;
}

TEST(MemoryLogTest, AppendAssignsConsecutiveOffsetsAndStoresEveryField) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  Record full;
  full.offset = 999;  // ignored
  full.timestamp_ms = 7;
  full.flags = kRecordHasKey | kRecordValueBinary;
  full.key = "k";
  full.idempotency_key = "idem";
  full.headers = {{"h1", "v1"}, {"h2", ""}};
  full.value = std::string("\0bin", 4);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t first, log->Append({full, Make("b")}));
  EXPECT_EQ(first, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(first, log->Append({Make("c")}));
  EXPECT_EQ(first, 2);
  EXPECT_EQ(log->NextOffset(), 3);

  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> got, log->Read(0, ReadLimits{}));
  ASSERT_EQ(got.size(), 3u);
  Record expected = full;
  expected.offset = 0;
  EXPECT_EQ(got[0], expected);
  EXPECT_EQ(got[1].offset, 1);
  EXPECT_EQ(got[2].offset, 2);
  EXPECT_EQ(Values(got), (std::vector<std::string>{std::string("\0bin", 4), "b", "c"}));
}

TEST(MemoryLogTest, EmptyBatchIsInvalidArgument) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  EXPECT_THAT(log->Append({}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(log->NextOffset(), 0);
}

TEST(MemoryLogTest, BudgetFullIsResourceExhaustedAndAppendsNothing) {
  const int64_t charge = MemoryCharge(Make(std::string(100, 'x')));
  MemoryBudget budget(charge * 3);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  for (int i = 0; i < 3; ++i) ONCE_ASSERT_OK(log->Append({Make(std::string(100, 'x'))}));
  EXPECT_EQ(budget.used(), charge * 3);

  EXPECT_THAT(log->Append({Make(std::string(100, 'y'))}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("memory budget full"), HasSubstr("memory_budget_bytes"))));
  EXPECT_EQ(log->NextOffset(), 3);
  EXPECT_EQ(budget.used(), charge * 3);
  EXPECT_EQ(log->Stats().appends, 3);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> got, log->Read(0, ReadLimits{}));
  EXPECT_EQ(got.size(), 3u);
}

TEST(MemoryLogTest, BatchThatOnlyPartlyFitsAppendsNothing) {
  const int64_t charge = MemoryCharge(Make("v"));
  MemoryBudget budget(charge * 3);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  ONCE_ASSERT_OK(log->Append({Make("v")}));
  EXPECT_THAT(log->Append({Make("v"), Make("v"), Make("v")}),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(log->NextOffset(), 1);
  EXPECT_EQ(budget.used(), charge);
  ONCE_EXPECT_OK(log->Append({Make("v"), Make("v")}));  // exactly fits
  EXPECT_EQ(budget.used(), charge * 3);
}

TEST(MemoryLogTest, TrimFreesRecordsAndBudget) {
  const int64_t charge = MemoryCharge(Make("0123456789"));
  MemoryBudget budget(charge * 4);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  for (int i = 0; i < 4; ++i) ONCE_ASSERT_OK(log->Append({Make("0123456789")}));
  ASSERT_THAT(log->Append({Make("0123456789")}), StatusIs(absl::StatusCode::kResourceExhausted));

  ONCE_ASSERT_OK(log->TrimBefore(2));
  EXPECT_EQ(budget.used(), charge * 2);
  EXPECT_EQ(log->FirstOffset(), 2);
  EXPECT_EQ(log->Stats().size_bytes, charge * 2);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({Make("0123456789")}));
  EXPECT_EQ(offset, 4);  // offsets continue after a trim

  ONCE_EXPECT_OK(log->TrimBefore(1));  // already gone: nothing to do
  EXPECT_EQ(log->FirstOffset(), 2);
  EXPECT_THAT(log->TrimBefore(6),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past the next offset 5")));
  ONCE_EXPECT_OK(log->TrimBefore(5));  // everything
  EXPECT_EQ(budget.used(), 0);
  EXPECT_EQ(log->FirstOffset(), 5);
  EXPECT_EQ(log->NextOffset(), 5);
}

TEST(MemoryLogTest, BudgetIsSharedAndGivenBackWhenALogIsDestroyed) {
  const int64_t charge = MemoryCharge(Make("v"));
  MemoryBudget budget(charge * 2);
  std::unique_ptr<Log> a = NewMemoryLog(&budget);
  std::unique_ptr<Log> b = NewMemoryLog(&budget);
  ONCE_ASSERT_OK(a->Append({Make("v"), Make("v")}));
  EXPECT_THAT(b->Append({Make("v")}), StatusIs(absl::StatusCode::kResourceExhausted));
  a.reset();
  EXPECT_EQ(budget.used(), 0);
  ONCE_EXPECT_OK(b->Append({Make("v")}));
}

TEST(MemoryLogTest, ReadOutsideTheRetainedRangeIsOutOfRange) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  ONCE_ASSERT_OK(log->Append({Make("a"), Make("b"), Make("c")}));
  ONCE_ASSERT_OK(log->TrimBefore(2));
  EXPECT_THAT(log->Read(1, ReadLimits{}),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("offset 1 is below the first retained offset 2")));
  EXPECT_THAT(log->Read(-1, ReadLimits{}), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(log->Read(4, ReadLimits{}),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the next offset 3")));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> at_end, log->Read(3, ReadLimits{}));
  EXPECT_TRUE(at_end.empty());
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> rest, log->Read(2, ReadLimits{}));
  EXPECT_EQ(Values(rest), (std::vector<std::string>{"c"}));
}

TEST(MemoryLogTest, ReadLimitsCapRecordsAndBytesButAlwaysReturnOne) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  ONCE_ASSERT_OK(log->Append({Make(std::string(10, 'a')), Make(std::string(10, 'b')),
                              Make(std::string(10, 'c')), Make(std::string(50, 'd'))}));
  ONCE_ASSERT_OK_AND_ASSIGN(auto two, log->Read(0, ReadLimits{.max_records = 2}));
  EXPECT_EQ(two.size(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(auto by_bytes, log->Read(0, ReadLimits{.max_bytes = 25}));
  EXPECT_EQ(by_bytes.size(), 2u);  // 10 + 10; a third would make 30
  ONCE_ASSERT_OK_AND_ASSIGN(auto big, log->Read(3, ReadLimits{.max_bytes = 5}));
  ASSERT_EQ(big.size(), 1u);  // over the limit alone: still returned
  EXPECT_EQ(big[0].offset, 3);
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, log->Read(0, ReadLimits{.max_records = 0}));
  EXPECT_TRUE(none.empty());
}

TEST(MemoryLogTest, RetentionByAgeDropsOnlyOlderRecords) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  for (int64_t t : {1000, 2000, 3000, 4000}) ONCE_ASSERT_OK(log->Append({Make("v", t)}));
  // At 5000 with 2500 ms retention, records stamped before 2500 go.
  ONCE_ASSERT_OK(log->EnforceRetention(5000, 2500, -1));
  EXPECT_EQ(log->FirstOffset(), 2);
  EXPECT_EQ(budget.used(), 2 * MemoryCharge(Make("v")));
  ONCE_ASSERT_OK(log->EnforceRetention(5000, -1, -1));  // no limits: nothing
  EXPECT_EQ(log->FirstOffset(), 2);
  EXPECT_THAT(log->Read(0, ReadLimits{}), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(MemoryLogTest, RetentionByBytesKeepsTheNewestWithinTheLimit) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  for (int i = 0; i < 10; ++i) ONCE_ASSERT_OK(log->Append({Make(std::string(100, 'x'), i)}));
  const int64_t charge = MemoryCharge(Make(std::string(100, 'x')));
  ONCE_ASSERT_OK(log->EnforceRetention(100, -1, charge * 3 + charge / 2));
  EXPECT_EQ(log->FirstOffset(), 7);
  EXPECT_EQ(log->Stats().size_bytes, charge * 3);
  EXPECT_EQ(budget.used(), charge * 3);
}

TEST(MemoryLogTest, OffsetForTimeFindsTheFirstRecordAtOrAfter) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t empty, log->OffsetForTime(5));
  EXPECT_EQ(empty, 0);
  ONCE_ASSERT_OK(log->Append({Make("a", 10), Make("b", 20), Make("c", 20), Make("d", 30)}));
  ONCE_ASSERT_OK(log->TrimBefore(1));
  EXPECT_EQ(log->OffsetForTime(0).value_or(-1), 1);
  EXPECT_EQ(log->OffsetForTime(20).value_or(-1), 1);
  EXPECT_EQ(log->OffsetForTime(21).value_or(-1), 3);
  EXPECT_EQ(log->OffsetForTime(31).value_or(-1), 4);
}

TEST(MemoryLogTest, StatsCountAppendsAndBytes) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  ONCE_ASSERT_OK(log->Append({Make("a"), Make("bb")}));
  ONCE_ASSERT_OK(log->Append({Make("ccc")}));
  ONCE_ASSERT_OK(log->Sync());
  LogStats s = log->Stats();
  EXPECT_EQ(s.first_offset, 0);
  EXPECT_EQ(s.next_offset, 3);
  EXPECT_EQ(s.appends, 2);
  EXPECT_EQ(s.syncs, 0);
  EXPECT_EQ(s.segments, 0);
  EXPECT_EQ(s.size_bytes, 6 + 3 * kMemoryRecordOverheadBytes);
}

// Exercises the arena: records of many sizes (some larger than a block),
// with headers, across block boundaries and trims at arbitrary points.
TEST(MemoryLogTest, RecordsOfEverySizeReadBackExactlyAcrossTrims) {
  MemoryBudget budget(int64_t{1} << 30);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  std::vector<Record> expected;
  for (int i = 0; i < 300; ++i) {
    Record r;
    r.timestamp_ms = i;
    r.flags = static_cast<uint8_t>(i % 4);
    r.key = std::string(static_cast<size_t>(i % 7), 'k');
    if (i % 3 == 0) r.idempotency_key = absl::StrCat("id-", i);
    for (int h = 0; h < i % 4; ++h)
      r.headers.push_back({absl::StrCat("h", h), std::string(h, 'v')});
    const size_t size = (i % 50 == 0) ? 200'000 : static_cast<size_t>((i * 7919) % 3000);
    r.value = std::string(size, static_cast<char>('a' + i % 26));
    expected.push_back(r);
  }
  // Appended in batches of varying length, including a large one.
  size_t at = 0;
  for (size_t len : {1, 2, 40, 3, 100, 1, 153}) {
    ONCE_ASSERT_OK(log->Append(absl::MakeConstSpan(expected).subspan(at, len)));
    at += len;
  }
  ASSERT_EQ(at, expected.size());
  for (size_t i = 0; i < expected.size(); ++i) expected[i].offset = static_cast<int64_t>(i);
  int64_t charged = 0;
  for (const Record& r : expected) charged += MemoryCharge(r);
  EXPECT_EQ(budget.used(), charged);

  for (int64_t trim : {0, 1, 49, 50, 51, 120, 299}) {
    ONCE_ASSERT_OK(log->TrimBefore(trim));
    ONCE_ASSERT_OK_AND_ASSIGN(
        std::vector<Record> got,
        log->Read(trim, ReadLimits{.max_records = 1000, .max_bytes = size_t{1} << 30}));
    ASSERT_EQ(got.size(), expected.size() - static_cast<size_t>(trim));
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], expected[static_cast<size_t>(trim) + i]) << "offset " << trim + i;
    }
  }
  ONCE_ASSERT_OK(log->TrimBefore(300));
  EXPECT_EQ(budget.used(), 0);
  // The emptied log keeps working.
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t offset, log->Append({expected[0]}));
  EXPECT_EQ(offset, 300);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> last, log->Read(300, ReadLimits{}));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].value, expected[0].value);
}

TEST(MemoryLogTest, ConcurrentAppendersAndReadersLoseNothing) {
  MemoryBudget budget(int64_t{1} << 30);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 2000;
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        ASSERT_THAT(log->Append({Make(absl::StrCat(w, ":", i))}), IsOk());
      }
    });
  }
  std::thread reader([&] {
    // Bounded: stops when the writers are done, or after a fixed number of
    // passes, whichever comes first.
    for (int pass = 0; pass < 100'000 && !done.load(); ++pass) {
      absl::StatusOr<std::vector<Record>> got = log->Read(0, ReadLimits{.max_records = 100000});
      ASSERT_THAT(got, IsOk());
      for (size_t i = 0; i < got->size(); ++i) ASSERT_EQ((*got)[i].offset, static_cast<int64_t>(i));
    }
  });
  for (std::thread& t : writers) t.join();
  done = true;
  reader.join();

  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Record> all,
                            log->Read(0, ReadLimits{.max_records = 100000, .max_bytes = 1 << 30}));
  ASSERT_EQ(all.size(), static_cast<size_t>(kWriters * kPerWriter));
  // Each writer's records appear in its own order.
  std::vector<int> next(kWriters, 0);
  for (const Record& r : all) {
    const int w = r.value[0] - '0';
    EXPECT_EQ(r.value, absl::StrCat(w, ":", next[w]));
    ++next[w];
  }
}

}  // namespace
}  // namespace once::broker
