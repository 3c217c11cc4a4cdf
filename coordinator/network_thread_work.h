// Which broker calls a WebSocket session makes on its own strand (a
// network thread) instead of handing them to the worker pool.
//
// A hand-off to a worker and back is a thread wake-up each way, which on
// 2 busy cores took longer than the calls below. But a network thread that
// waited for a disk would hold up every connection it serves, so only
// calls that cannot wait for a disk (or, rarely, for one append) run there:
//
// - A memory topic's publish, and its groups' fetches and acks: the
//   records, the dedup index and the group state are in RAM, and a full
//   memory budget is answered at once (429). Accepted exception: a memory
//   group that gives up on a message moves it to its dead-letter topic
//   from within the fetch, and a dead-letter topic named in the group's
//   settings may be on disk.
// - A disk topic's shared group's fetch for a subscription that is caught
//   up (WsFeed: its last fetch took everything there was; one that is
//   behind reads a large batch, every record's CRC checked, which would
//   hold up the strand's other connections), when nothing can come due
//   while it runs. Such a fetch only reads a few records from the log (the
//   page cache: they were just published); it writes to the group store
//   only for a redelivery
//   (its delivery count goes first) or a dead-letter move, which come from
//   an expired lease, a retry whose backoff ended or a pending dead letter:
//   all of them are the group's deadlines (NextDeadlineMs). An ordered
//   group's redeliveries (after a nack, a rebalance) have no deadline: its
//   fetches stay on the workers, as do every disk append (fsync) and every
//   ack of a group in the store (SQLite commit).
#ifndef ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_
#define ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_

#include <cstdint>
#include <optional>

#include "broker/consumer_group.h"
#include "broker/topic.h"

namespace once::coordinator {

// How far off a disk group's next deadline must be for a fetch to run on
// the network thread: far more than any fetch takes.
inline constexpr int64_t kQuietFetchMarginMs = 1'000;

inline bool PublishRunsOnNetworkThread(const broker::Topic& topic) {
  return topic.config().backend == broker::Backend::kMemory;
}

// Acks and requeueing nacks; a memory group's fetches.
inline bool GroupRunsOnNetworkThread(const broker::ConsumerGroup& group) {
  return !group.durable() && PublishRunsOnNetworkThread(*group.topic());
}

// Whether a fetch of `group` may ever run on the network thread: then
// FetchRunsOnNetworkThread says whether this one does.
inline bool FetchMayRunOnNetworkThread(const broker::ConsumerGroup& group) {
  return GroupRunsOnNetworkThread(group) || group.config().mode == broker::GroupMode::kShared;
}

// Whether a fetch of `group` starting at `now_ms` runs on the network
// thread. Takes the group's lock: not from a notifier's listener.
inline bool FetchRunsOnNetworkThread(const broker::ConsumerGroup& group, int64_t now_ms) {
  if (GroupRunsOnNetworkThread(group)) return true;
  if (!FetchMayRunOnNetworkThread(group)) return false;
  const std::optional<int64_t> next = group.NextDeadlineMs();
  return !next.has_value() || *next > now_ms + kQuietFetchMarginMs;
}

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_
