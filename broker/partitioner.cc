#include "broker/partitioner.h"

#include <cstdint>

#include "absl/strings/string_view.h"
#include "xxhash.h"

namespace once::broker {

int PartitionForKey(absl::string_view key, int partitions) {
  const uint64_t h = XXH64(key.data(), key.size(), /*seed=*/0);
  return static_cast<int>(h % static_cast<uint64_t>(partitions));
}

int Partitioner::Choose(const Record& record) {
  if (record.has_key() || !record.key.empty()) return PartitionForKey(record.key, partitions_);
  return NextRoundRobin();
}

int Partitioner::NextRoundRobin() {
  // Relaxed: the counter only spreads load; it orders nothing.
  const uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(n % static_cast<uint64_t>(partitions_));
}

}  // namespace once::broker
