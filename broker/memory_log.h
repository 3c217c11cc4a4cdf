// The memory backend of Log: records in RAM, bounded by a shared byte budget.
//
// A memory log keeps each record's fields encoded in large arena blocks
// (one memcpy per record on append, not one allocation per string; whole
// blocks are freed as the oldest records go) with a 24-byte index entry per
// record, offsets continuing from 0 at creation. Nothing survives the process: a memory topic comes
// back empty after a restart (its metadata does survive, see broker/topic_metadata.md).
//
// Bytes: each record costs MemoryCharge(record) = PayloadBytes() plus a fixed
// kMemoryRecordOverheadBytes for its bookkeeping (the index entry, the
// encoding's lengths, a share of the blocks' slack), so that a flood of tiny
// records is bounded too. That
// charge is what the budget counts, what LogStats::size_bytes reports and
// what retention_bytes limits.
#ifndef ONCE_BROKER_MEMORY_LOG_H_
#define ONCE_BROKER_MEMORY_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "broker/log.h"
#include "broker/record.h"

namespace once::broker {

// A byte budget shared by many memory logs (one per Broker). Thread-safe.
class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t limit_bytes) : limit_(limit_bytes) {}

  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Takes `bytes` (>= 0) when used() + bytes <= limit(); false, taking
  // nothing, otherwise. Lock-free.
  bool TryAcquire(int64_t bytes);
  // Gives back bytes taken by TryAcquire.
  void Release(int64_t bytes);
  int64_t used() const { return used_.load(std::memory_order_relaxed); }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  std::atomic<int64_t> used_{0};
};

// The fixed per-record part of MemoryCharge().
inline constexpr int64_t kMemoryRecordOverheadBytes = 64;

// What `record` costs against a MemoryBudget; see the file comment.
inline int64_t MemoryCharge(const Record& record) {
  return static_cast<int64_t>(record.PayloadBytes()) + kMemoryRecordOverheadBytes;
}

// A new, empty memory log whose first offset is 0. `budget` is not owned
// and must outlive the log; the log gives back everything it holds when it
// is destroyed.
//
// Behaviour beyond the Log contract:
//  - Append charges the whole batch before storing anything: when it does not
//    fit, it fails kResourceExhausted and appends nothing (backpressure; the
//    log never drops records to make room).
//  - TrimBefore and EnforceRetention free records and release their charge.
//  - TrimBefore(offset) with offset > NextOffset() is kInvalidArgument.
//  - OffsetForTime binary-searches the timestamps, which the topic stamps
//    from its clock and so are non-decreasing up to the jitter between
//    concurrent publishers to one partition.
//  - Sync() does nothing (there is nothing to make durable); syncs stays 0.
//  - A record whose MemoryCharge exceeds 2^32-1 bytes is kInvalidArgument.
//  - Besides what the budget counts, a log keeps up to 2 MiB of emptied
//    arena blocks for reuse, so that steady append-and-trim does not make the
//    allocator return memory to the kernel and fault it back in.
// Reads take a shared lock, so they run concurrently with each other (they
// decode records into new Record objects); an append holds the exclusive
// lock while it copies its records' bytes into the arena.
std::unique_ptr<Log> NewMemoryLog(MemoryBudget* budget);

}  // namespace once::broker

#endif  // ONCE_BROKER_MEMORY_LOG_H_
