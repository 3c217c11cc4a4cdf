// Time comes through this interface so that tests control it.
#ifndef ONCE_SCHEMA_CLOCK_H_
#define ONCE_SCHEMA_CLOCK_H_

#include <cstdint>

namespace once {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch: stored in records and used
  // for retention and time-based lookups. Thread-safe.
  virtual int64_t NowMs() const = 0;
};

// The real wall clock. A process-wide instance; never deleted.
Clock* SystemClock();

}  // namespace once

#endif  // ONCE_SCHEMA_CLOCK_H_
