// Which broker calls a WebSocket session makes on its own strand (a
// network thread) instead of handing them to the worker pool.
//
// A memory topic's publish and a memory topic's group's fetches and acks
// never wait for a disk: the records, the dedup index and the group's
// state are in RAM, and a full memory budget is answered at once (429).
// Run on the session's strand they cost no hand-off: a hand-off is a
// thread wake-up on the way there and another on the way back, which on
// 2 busy cores took longer than the call itself. Everything else (a disk
// append waits for its fdatasync, a disk topic's group commits to SQLite)
// goes to the workers: a network thread that waited for a disk would hold
// up every connection it serves.
//
// One exception is accepted: a memory group that gives up on a message
// (max_deliveries) moves it to its dead-letter topic from within the
// fetch, and a dead-letter topic named in the group's settings may be a
// disk topic. That costs one append, rarely.
#ifndef ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_
#define ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_

#include "broker/consumer_group.h"
#include "broker/topic.h"

namespace once::coordinator {

inline bool PublishRunsOnNetworkThread(const broker::Topic& topic) {
  return topic.config().backend == broker::Backend::kMemory;
}

inline bool GroupRunsOnNetworkThread(const broker::ConsumerGroup& group) {
  return !group.durable() && PublishRunsOnNetworkThread(*group.topic());
}

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_NETWORK_THREAD_WORK_H_
