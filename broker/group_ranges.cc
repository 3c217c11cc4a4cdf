#include "broker/group_ranges.h"

#include <algorithm>

namespace once::broker {

bool OffsetRangeSet::Contains(int64_t offset) const {
  if (offset < floor_) return true;
  auto it = ranges_.upper_bound(offset);  // first range beginning after offset
  if (it == ranges_.begin()) return false;
  --it;
  return offset < it->second;
}

int64_t OffsetRangeSet::NextAbsent(int64_t offset) const {
  if (offset < floor_) offset = floor_;
  auto it = ranges_.upper_bound(offset);
  if (it == ranges_.begin()) return offset;
  --it;
  // Ranges are maximal (never adjacent), so the end of this one is absent.
  return offset < it->second ? it->second : offset;
}

std::vector<OffsetRange> OffsetRangeSet::Ranges() const {
  std::vector<OffsetRange> out;
  out.reserve(ranges_.size());
  for (const auto& [begin, end] : ranges_) out.push_back({begin, end});
  return out;
}

bool OffsetRangeSet::Insert(int64_t offset) {
  if (Contains(offset)) return false;
  InsertRange(offset, offset + 1);
  return true;
}

void OffsetRangeSet::InsertRange(int64_t begin, int64_t end) {
  begin = std::max(begin, floor_);
  if (begin >= end) return;
  // Merge with every range that overlaps or touches [begin, end).
  auto it = ranges_.upper_bound(begin);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= begin) it = prev;
  }
  while (it != ranges_.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    above_floor_ -= it->second - it->first;
    it = ranges_.erase(it);
  }
  ranges_.emplace(begin, end);
  above_floor_ += end - begin;
  AbsorbIntoFloor();
}

void OffsetRangeSet::RaiseFloor(int64_t floor) {
  if (floor <= floor_) return;
  floor_ = floor;
  while (!ranges_.empty() && ranges_.begin()->first < floor_) {
    auto first = ranges_.begin();
    int64_t end = first->second;
    above_floor_ -= end - first->first;
    ranges_.erase(first);
    if (end > floor_) {
      // The tail above the new floor stays in the set; re-add it so that
      // it merges into the floor.
      ranges_.emplace(floor_, end);
      above_floor_ += end - floor_;
    }
  }
  AbsorbIntoFloor();
}

void OffsetRangeSet::Reset(int64_t floor) {
  floor_ = floor;
  ranges_.clear();
  above_floor_ = 0;
}

void OffsetRangeSet::AbsorbIntoFloor() {
  while (!ranges_.empty() && ranges_.begin()->first <= floor_) {
    auto first = ranges_.begin();
    above_floor_ -= first->second - first->first;
    floor_ = std::max(floor_, first->second);
    ranges_.erase(first);
  }
}

int64_t OffsetRangeSet::FloorWith(absl::Span<const int64_t> sorted_offsets) const {
  int64_t floor = floor_;
  auto it = ranges_.begin();
  size_t i = 0;
  while (true) {
    while (i < sorted_offsets.size() && sorted_offsets[i] < floor) ++i;
    if (i < sorted_offsets.size() && sorted_offsets[i] == floor) {
      ++floor;
      ++i;
      continue;
    }
    if (it != ranges_.end() && it->first <= floor) {
      floor = std::max(floor, it->second);
      ++it;
      continue;
    }
    return floor;
  }
}

std::vector<OffsetRange> OffsetRangeSet::Runs(absl::Span<const int64_t> sorted_offsets) {
  std::vector<OffsetRange> runs;
  for (int64_t o : sorted_offsets) {
    if (!runs.empty() && runs.back().end == o) {
      ++runs.back().end;
    } else {
      runs.push_back({o, o + 1});
    }
  }
  return runs;
}

}  // namespace once::broker
