// WsFeed: the fetches of one WebSocket subscription. The session asks for
// up to N messages (Request); the feed fetches on the session's strand or
// on the worker pool (coordinator/network_thread_work.h says which) and,
// when the group has nothing, waits for the group's notifier to move (a
// publish, a nack, an expired lease...), for the group's next deadline (a
// lease that expires, a backoff that ends) or, as a safety net, for
// kMaxIdle, and fetches again, until it finds messages or fails; then it
// calls `deliver` once, and waits for the next Request.
//
// Why not a LongPoll per push (as HTTP fetches use): a LongPoll costs a
// strand, a timer, a listener registration and a set entry per push, and
// its wake-up goes notifier -> its strand -> its timer -> a worker ->
// its strand -> the session's strand. The feed lives as long as the
// subscription, keeps one listener, and a change goes straight from the
// notifying thread to the session's strand, where the fetch runs and its
// result is sent: one thread hand-off between a durable publish and the
// delivery's write (two when the fetch must go to a worker).
//
// Thread-safety: Request and Stop are called on the session's strand (the
// timer's executor); the listener and the fetches run on other threads;
// the state is under mu_. `deliver` runs on the strand or a worker, also
// after Stop for a fetch that was in flight (the session releases what it
// brings).
#ifndef ONCE_COORDINATOR_WS_FEED_H_
#define ONCE_COORDINATOR_WS_FEED_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "broker/consumer_group.h"
#include "schema/clock.h"

namespace once::coordinator {

class WsFeed : public std::enable_shared_from_this<WsFeed> {
 public:
  using Result = absl::StatusOr<std::vector<broker::Delivery>>;
  // Messages (never an empty vector) or the fetch's error.
  using Deliver = std::function<void(Result)>;

  // The longest a waiting feed goes without fetching again.
  static constexpr std::chrono::milliseconds kMaxIdle{30'000};

  // `workers` runs the fetches that may wait for a disk; `strand` is the
  // session's; `clock` outlives the feed. `handles_only`: fetch with
  // FetchHandles (deliveries without token text, for delivery tags).
  WsFeed(boost::asio::any_io_executor workers, boost::asio::any_io_executor strand, Clock* clock,
         std::shared_ptr<broker::ConsumerGroup> group, std::string consumer, Deliver deliver,
         bool handles_only = false);
  ~WsFeed();

  WsFeed(const WsFeed&) = delete;
  WsFeed& operator=(const WsFeed&) = delete;

  // Fetches up to `max` (>= 1) messages, waiting as long as it takes.
  // Call on a shared_ptr, and not again before `deliver` ran.
  void Request(int max);
  // No fetch starts after this; the listener is removed. Idempotent.
  void Stop();

 private:
  enum class State { kIdle, kFetching, kWaiting, kStopped };

  // Starts a fetch where it belongs (a post: mu_ may be held), given
  // whether the last fetch took everything there was.
  void PostFetch(bool caught_up);
  void FetchOnStrand();  // runs it there, or hands it to a worker
  void Fetch();          // on the strand or a worker
  void OnChange();       // any thread: the group moved, or the timer fired
  void ArmTimer(std::optional<int64_t> deadline_ms);  // on the strand
  // When the timer should fire to meet `deadline_ms` (at most kMaxIdle).
  std::chrono::steady_clock::time_point WakeAt(std::optional<int64_t> deadline_ms) const;

  const boost::asio::any_io_executor workers_;
  const boost::asio::any_io_executor strand_;
  Clock* const clock_;
  const std::shared_ptr<broker::ConsumerGroup> group_;
  const bool in_ram_;            // GroupRunsOnNetworkThread(*group_)
  const bool strand_may_fetch_;  // FetchMayRunOnNetworkThread(*group_)
  const std::string consumer_;
  const bool handles_only_;
  const Deliver deliver_;
  boost::asio::steady_timer timer_;  // on strand_

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kIdle;
  int max_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t listener_id_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none
  // The notifier's version before the last fetch, if that fetch took less
  // than it asked for: the group had no more for this consumer then, so
  // until the version moves a Request waits instead of fetching in vain
  // (at a steady rate, every delivery would otherwise cost an empty fetch
  // on a worker and a timer re-armed on the strand).
  std::optional<uint64_t> drained_at_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> drained_deadline_ms_ ABSL_GUARDED_BY(mu_);
  // When the armed timer fires (none if it is not armed): a wait that
  // needs it no sooner leaves it alone.
  std::optional<std::chrono::steady_clock::time_point> timer_due_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_WS_FEED_H_
