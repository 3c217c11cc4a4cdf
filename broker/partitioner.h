// Chooses a message's partition: by key hash, or round-robin without a key.
//
// The key rule is part of the on-disk contract (a topic's data is laid out
// by it, and consumers may rely on "same key, same partition" across
// restarts and versions), so it must never change:
//
//   partition = XXH64(key bytes, seed 0) % partitions
//
// using xxHash 0.8's XXH64 over the raw key bytes, unsigned 64-bit modulo.
// tests/broker/partitioner_test.cc pins fixed values so that a change cannot
// pass silently. broker/topic_metadata.md repeats the rule.
#ifndef ONCE_BROKER_PARTITIONER_H_
#define ONCE_BROKER_PARTITIONER_H_

#include <atomic>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "broker/record.h"

namespace once::broker {

// The partition of a message with key `key` in a topic of `partitions`
// partitions (>= 1). Pure and stable; see the file comment.
int PartitionForKey(absl::string_view key, int partitions);

// One per topic. Thread-safe: the round-robin counter is atomic.
class Partitioner {
 public:
  explicit Partitioner(int partitions) : partitions_(partitions) {}

  Partitioner(const Partitioner&) = delete;
  Partitioner& operator=(const Partitioner&) = delete;

  // The partition for `record`: PartitionForKey when it has a key (the
  // kRecordHasKey flag, or a non-empty key), else the next in round-robin.
  int Choose(const Record& record);

  // The next round-robin partition: 0, 1, ..., partitions-1, 0, ...
  // (interleaved among concurrent callers).
  int NextRoundRobin();

  int partitions() const { return partitions_; }

 private:
  const int partitions_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace once::broker

#endif  // ONCE_BROKER_PARTITIONER_H_
