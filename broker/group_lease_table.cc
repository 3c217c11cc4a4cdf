#include "broker/group_lease_table.h"

namespace once::broker {

const Lease* LeaseTable::Find(int partition, int64_t offset) const {
  auto it = leases_.find(Key(partition, offset));
  return it == leases_.end() ? nullptr : &it->second;
}

void LeaseTable::Add(const Lease& lease) {
  auto [it, inserted] = leases_.emplace(Key(lease.partition, lease.offset), lease);
  if (!inserted) return;  // by contract never happens; keep the old one
  if (lease.state == LeaseState::kActive) {
    deadlines_.emplace(lease.deadline_ms, lease.partition, lease.offset);
  }
  ++held_[lease.consumer];
}

void LeaseTable::Remove(int partition, int64_t offset) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end()) return;
  const Lease& l = it->second;
  if (l.state == LeaseState::kActive) deadlines_.erase({l.deadline_ms, partition, offset});
  auto held = held_.find(l.consumer);
  if (held != held_.end() && --held->second <= 0) held_.erase(held);
  leases_.erase(it);
}

void LeaseTable::SetState(int partition, int64_t offset, LeaseState state) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end()) return;
  Lease& l = it->second;
  if (l.state == state) return;
  if (l.state == LeaseState::kActive) deadlines_.erase({l.deadline_ms, partition, offset});
  if (state == LeaseState::kSettling) l.settled_from = l.state;
  l.state = state;
  if (state == LeaseState::kActive) deadlines_.emplace(l.deadline_ms, partition, offset);
}

void LeaseTable::Unsettle(int partition, int64_t offset) {
  auto it = leases_.find(Key(partition, offset));
  if (it == leases_.end() || it->second.state != LeaseState::kSettling) return;
  SetState(partition, offset, it->second.settled_from);
}

std::vector<Lease> LeaseTable::TakeExpired(int64_t now_ms) {
  std::vector<Lease> expired;
  while (!deadlines_.empty() && std::get<0>(*deadlines_.begin()) <= now_ms) {
    auto [deadline, partition, offset] = *deadlines_.begin();
    auto it = leases_.find(Key(partition, offset));
    expired.push_back(it->second);
    Remove(partition, offset);
  }
  return expired;
}

std::vector<Lease> LeaseTable::TakeAll() {
  std::vector<Lease> all;
  all.reserve(leases_.size());
  for (const auto& [key, lease] : leases_) all.push_back(lease);
  leases_.clear();
  deadlines_.clear();
  held_.clear();
  return all;
}

std::optional<int64_t> LeaseTable::NextDeadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return std::get<0>(*deadlines_.begin());
}

int64_t LeaseTable::HeldBy(uint32_t consumer) const {
  auto it = held_.find(consumer);
  return it == held_.end() ? 0 : it->second;
}

}  // namespace once::broker
