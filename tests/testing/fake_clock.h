// A Clock that moves only when the test says so.
#ifndef ONCE_TESTS_TESTING_FAKE_CLOCK_H_
#define ONCE_TESTS_TESTING_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "schema/clock.h"

namespace once::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Advance(int64_t ms) { now_ms_ += ms; }
  void Set(int64_t ms) { now_ms_ = ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace once::testing

#endif  // ONCE_TESTS_TESTING_FAKE_CLOCK_H_
