// LongPoll: one fetch that may wait (HTTP long-poll). It fetches on the
// worker pool; when nothing is available it waits, without holding any
// thread, for the group's notifier to move (a publish, a nack, an expired
// lease, a reset), for the group's next deadline (a lease that expires or
// a backoff that ends), or for its own deadline, then fetches again. It
// answers once: with messages, with an empty result at its deadline, or
// with an error.
//
// Each LongPoll runs on a strand of its own and keeps itself alive
// through shared_from_this while waiting. Waiting costs a timer and a
// notifier listener; every wait is bounded by the request's wait_ms
// (itself bounded by HttpLimits::max_wait_ms).
//
// A LongPollSet tracks the waiting polls so that a drain can end them at
// once (they answer with what a last fetch finds).
#ifndef ONCE_COORDINATOR_LONG_POLL_H_
#define ONCE_COORDINATOR_LONG_POLL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/thread_pool.hpp"
#include "boost/beast/core/error.hpp"
#include "broker/consumer_group.h"

namespace once::coordinator {

class LongPoll;

class LongPollSet {
 public:
  // False when draining (the poll must not wait).
  bool Add(LongPoll* poll, std::weak_ptr<LongPoll> handle);
  void Remove(LongPoll* poll);
  // Ends every wait now, and every later one at once. Thread-safe.
  void BeginDrain();
  bool draining() const;
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<LongPoll*, std::weak_ptr<LongPoll>> polls_ ABSL_GUARDED_BY(mu_);
};

class LongPoll : public std::enable_shared_from_this<LongPoll> {
 public:
  using Result = absl::StatusOr<std::vector<broker::Delivery>>;
  using Done = std::function<void(Result)>;

  // `done` is called exactly once, on the poll's strand or a worker.
  // `workers`, `set` and `clock` outlive the poll.
  LongPoll(boost::asio::io_context& ioc, boost::asio::thread_pool& workers, LongPollSet* set,
           Clock* clock, std::shared_ptr<broker::ConsumerGroup> group, std::string consumer,
           int max, std::chrono::milliseconds wait, Done done);
  ~LongPoll();

  // Starts the first fetch. Call once, on a shared_ptr.
  void Start();
  // Thread-safe: stop waiting; answer with what one more fetch finds.
  void Wake();

 private:
  enum class State { kIdle, kFetching, kWaiting, kDone };

  void DoFetch();
  void OnFetched(Result result, uint64_t seen, std::optional<int64_t> next_deadline_ms);
  void OnChange();
  void OnTimer(boost::beast::error_code ec);
  void Finish(Result result);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  boost::asio::thread_pool& workers_;
  LongPollSet* const set_;
  Clock* const clock_;
  const std::shared_ptr<broker::ConsumerGroup> group_;
  const std::string consumer_;
  const int max_;
  const std::chrono::steady_clock::time_point deadline_;
  Done done_;

  // On strand_.
  State state_ = State::kIdle;
  bool final_ = false;  // answer after the next fetch, whatever it finds
  bool registered_ = false;
  int64_t listener_id_ = 0;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_LONG_POLL_H_
