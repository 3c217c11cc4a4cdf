// OffsetRangeSet: the offsets of one partition that a group is done with
// (acked, dead-lettered, committed past, or before the group's start),
// kept as a floor (every offset below it is done) plus disjoint half-open
// ranges above it. Acks arrive mostly in order, so the floor absorbs them
// and the ranges stay few: one per gap left by a message still in flight.
//
// Not thread-safe: its owner's mutex guards it.
#ifndef ONCE_BROKER_GROUP_RANGES_H_
#define ONCE_BROKER_GROUP_RANGES_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/types/span.h"

namespace once::broker {

struct OffsetRange {
  int64_t begin = 0;  // inclusive
  int64_t end = 0;    // exclusive

  friend bool operator==(const OffsetRange&, const OffsetRange&) = default;
};

class OffsetRangeSet {
 public:
  explicit OffsetRangeSet(int64_t floor = 0) : floor_(floor) {}

  // Every offset below floor() is in the set; floor() itself is not.
  int64_t floor() const { return floor_; }
  bool Contains(int64_t offset) const;
  // The smallest offset >= `offset` that is not in the set.
  int64_t NextAbsent(int64_t offset) const;
  // Offsets in the set at or above floor().
  int64_t CountAboveFloor() const { return above_floor_; }
  // The ranges above floor(), in order.
  std::vector<OffsetRange> Ranges() const;

  // Adds one offset; true when it was absent.
  bool Insert(int64_t offset);
  // Adds [begin, end); overlaps with what is there are fine.
  void InsertRange(int64_t begin, int64_t end);
  // Raises the floor to `floor` (no-op when it is lower).
  void RaiseFloor(int64_t floor);
  // Forgets everything: the set becomes [0, floor).
  void Reset(int64_t floor);

  // What floor() would be after inserting `sorted_offsets` (ascending),
  // without changing the set.
  int64_t FloorWith(absl::Span<const int64_t> sorted_offsets) const;

  // Splits ascending, distinct offsets into maximal runs of consecutive ones.
  static std::vector<OffsetRange> Runs(absl::Span<const int64_t> sorted_offsets);

 private:
  void AbsorbIntoFloor();

  int64_t floor_;
  absl::btree_map<int64_t, int64_t> ranges_;  // begin -> end; every begin > floor_
  int64_t above_floor_ = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_RANGES_H_
