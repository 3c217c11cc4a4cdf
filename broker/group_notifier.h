// GroupNotifier: tells waiters that a group may have messages for them
// again (new publishes, released or expired leases, a rebalance, a reset).
// It is the hook for the HTTP long-poll and the WebSocket push: a waiter
// remembers version(), fetches, and when the fetch is empty waits for the
// version to move (blocking, or through a listener that posts to its own
// strand). Spurious wake-ups are allowed: a change means "fetch again",
// never "there is a message".
//
// Thread-safe.
#ifndef ONCE_BROKER_GROUP_NOTIFIER_H_
#define ONCE_BROKER_GROUP_NOTIFIER_H_

#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace once::broker {

class GroupNotifier {
 public:
  using Listener = std::function<void()>;

  uint64_t version() const;

  // Bumps the version, wakes every blocked waiter and calls every listener.
  // Listeners run on the notifying thread, without any lock of the
  // notifier held: they must be quick (post work elsewhere) and may call
  // back into the group.
  void Notify();

  // Blocks until version() != `seen` or `timeout` passed (real time: this
  // is for service threads, not unit tests' clocks). Returns the version.
  uint64_t WaitForChange(uint64_t seen, absl::Duration timeout) const;

  // Registers `listener`; returns an id for RemoveListener. A listener may
  // still run once, concurrently, while RemoveListener is returning.
  int64_t AddListener(Listener listener);
  void RemoveListener(int64_t id);

 private:
  mutable absl::Mutex mu_;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_listener_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_NOTIFIER_H_
