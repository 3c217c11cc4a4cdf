#include "broker/group_lease_table.h"

#include <algorithm>

namespace once::broker {

const Lease* LeaseTable::Find(int partition, int64_t offset) const {
  auto it = leases_.find(Key(partition, offset));
  return it == leases_.end() ? nullptr : &it->second;
}

bool LeaseTable::IsCurrent(const DeadlineEntry& e) const {
  auto it = leases_.find(Key(e.partition, e.offset));
  return it != leases_.end() && it->second.state == LeaseState::kActive &&
         it->second.deadline_ms == e.deadline_ms && it->second.sequence == e.sequence;
}

void LeaseTable::PushDeadline(const Lease& lease) {
  const DeadlineEntry e{lease.deadline_ms, lease.partition, lease.offset, lease.sequence};
  if (in_order_.empty() || e.deadline_ms >= in_order_.back().deadline_ms) {
    in_order_.push_back(e);
  } else {
    out_of_order_.push_back(e);
    std::push_heap(out_of_order_.begin(), out_of_order_.end(), Later);
  }
}

const LeaseTable::DeadlineEntry* LeaseTable::PruneTop(bool* from_heap) const {
  while (!in_order_.empty() && !IsCurrent(in_order_.front())) in_order_.pop_front();
  while (!out_of_order_.empty() && !IsCurrent(out_of_order_.front())) {
    std::pop_heap(out_of_order_.begin(), out_of_order_.end(), Later);
    out_of_order_.pop_back();
  }
  if (out_of_order_.empty()) {
    *from_heap = false;
    return in_order_.empty() ? nullptr : &in_order_.front();
  }
  *from_heap =
      in_order_.empty() || out_of_order_.front().deadline_ms < in_order_.front().deadline_ms;
  return *from_heap ? &out_of_order_.front() : &in_order_.front();
}

void LeaseTable::PopTop(bool from_heap) {
  if (from_heap) {
    std::pop_heap(out_of_order_.begin(), out_of_order_.end(), Later);
    out_of_order_.pop_back();
  } else {
    in_order_.pop_front();
  }
}

void LeaseTable::MaybeCompact() {
  if (DeadlineEntries() < 2 * leases_.size() + 1024) return;
  std::vector<DeadlineEntry> current;
  for (const auto& [key, lease] : leases_) {
    if (lease.state == LeaseState::kActive) {
      current.push_back({lease.deadline_ms, lease.partition, lease.offset, lease.sequence});
    }
  }
  std::sort(current.begin(), current.end(),
            [](const DeadlineEntry& a, const DeadlineEntry& b) { return Later(b, a); });
  in_order_.assign(current.begin(), current.end());
  out_of_order_.clear();
}

void LeaseTable::Add(const Lease& lease) {
  auto [it, inserted] = leases_.emplace(Key(lease.partition, lease.offset), lease);
  if (!inserted) return;  // by contract never happens; keep the old one
  if (lease.state == LeaseState::kActive) {
    PushDeadline(lease);
    MaybeCompact();
  }
  ++held_[lease.consumer];
}

void LeaseTable::Remove(int partition, int64_t offset) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end()) return;
  const Lease& l = it->second;
  auto held = held_.find(l.consumer);
  if (held != held_.end() && --held->second <= 0) held_.erase(held);
  leases_.erase(it);  // its deadline entry, if any, is stale now
}

void LeaseTable::SetState(int partition, int64_t offset, LeaseState state) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (l.state == state) return;
  if (state == LeaseState::kSettling) l.settled_from = l.state;
  l.state = state;
  // Leaving kActive makes the entry stale; coming back makes a new one
  // (the old one, if still there, is then current too: a duplicate that
  // the first pop settles and the second finds stale).
  if (state == LeaseState::kActive) {
    PushDeadline(l);
    MaybeCompact();
  }
}

void LeaseTable::Unsettle(int partition, int64_t offset) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end() || it->second.state != LeaseState::kSettling) return;
  SetState(partition, offset, it->second.settled_from);
}

std::vector<Lease> LeaseTable::TakeExpired(int64_t now_ms) {
  std::vector<Lease> expired;
  bool from_heap = false;
  for (const DeadlineEntry* top = PruneTop(&from_heap);
       top != nullptr && top->deadline_ms <= now_ms; top = PruneTop(&from_heap)) {
    const Key key(top->partition, top->offset);
    PopTop(from_heap);
    expired.push_back(leases_.find(key)->second);
    Remove(key.first, key.second);
  }
  return expired;
}

std::vector<Lease> LeaseTable::TakeAll() {
  std::vector<Lease> all;
  all.reserve(leases_.size());
  for (const auto& [key, lease] : leases_) all.push_back(lease);
  leases_.clear();
  in_order_.clear();
  out_of_order_.clear();
  held_.clear();
  return all;
}

std::optional<int64_t> LeaseTable::NextDeadline() const {
  bool from_heap = false;
  const DeadlineEntry* top = PruneTop(&from_heap);
  if (top == nullptr) return std::nullopt;
  return top->deadline_ms;
}

int64_t LeaseTable::HeldBy(uint32_t consumer) const {
  auto it = held_.find(consumer);
  return it == held_.end() ? 0 : it->second;
}

}  // namespace once::broker
