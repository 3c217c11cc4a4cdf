#include "coordinator/ws_feed.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/system/error_code.hpp"
#include "coordinator/network_thread_work.h"

namespace once::coordinator {
namespace net = boost::asio;

namespace {

// A fetch that found nothing but saw the group move meanwhile fetches
// again at once, this many times in a row at most; then it goes back to
// its executor's queue, so that a group that moves all the time cannot
// hold a thread.
constexpr int kMaxImmediateRetries = 4;

}  // namespace

WsFeed::WsFeed(net::any_io_executor workers, net::any_io_executor strand, Clock* clock,
               std::shared_ptr<broker::ConsumerGroup> group, std::string consumer, Deliver deliver,
               bool handles_only)
    : workers_(std::move(workers)),
      strand_(std::move(strand)),
      clock_(clock),
      group_(std::move(group)),
      in_ram_(GroupRunsOnNetworkThread(*group_)),
      strand_may_fetch_(FetchMayRunOnNetworkThread(*group_)),
      consumer_(std::move(consumer)),
      handles_only_(handles_only),
      deliver_(std::move(deliver)),
      timer_(strand_) {}

WsFeed::~WsFeed() {
  absl::MutexLock lock(&mu_);
  if (listener_id_ != 0) group_->notifier().RemoveListener(listener_id_);
}

void WsFeed::Request(int max) {
  std::optional<int64_t> deadline_ms;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kStopped) return;
    max_ = std::max(1, max);
    if (listener_id_ == 0) {
      std::weak_ptr<WsFeed> weak = weak_from_this();
      // On the notifying thread (a publish, an ack...): only a state check
      // and a post.
      listener_id_ = group_->notifier().AddListener([weak] {
        if (std::shared_ptr<WsFeed> feed = weak.lock()) feed->OnChange();
      });
    }
    if (state_ != State::kIdle) return;
    if (!drained_at_.has_value() || *drained_at_ != group_->notifier().version()) {
      state_ = State::kFetching;
      PostFetch(/*caught_up=*/drained_at_.has_value());
      return;
    }
    // Nothing moved since a fetch that left nothing behind: wait. (Checked
    // under mu_, as Fetch does: a change after this finds kWaiting.)
    state_ = State::kWaiting;
    deadline_ms = drained_deadline_ms_;
  }
  // On the strand already when the session calls: no hand-off.
  net::dispatch(strand_, [self = shared_from_this(), deadline_ms] { self->ArmTimer(deadline_ms); });
}

void WsFeed::Stop() {
  int64_t listener = 0;
  {
    absl::MutexLock lock(&mu_);
    state_ = State::kStopped;
    std::swap(listener, listener_id_);
  }
  // Outside mu_: the listener takes mu_, and RemoveListener may wait for
  // a call in progress.
  if (listener != 0) group_->notifier().RemoveListener(listener);
  timer_.cancel();
}

void WsFeed::OnChange() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kWaiting) return;  // a fetch in flight looks again itself
  state_ = State::kFetching;
  PostFetch(/*caught_up=*/drained_at_.has_value());
}

void WsFeed::PostFetch(bool caught_up) {
  // A subscription that is behind (its last fetch came back full) reads a
  // large batch, which from a disk log means CRCs checked and records
  // decoded: a worker's job, or the strand's other sessions would wait.
  if (in_ram_ || (strand_may_fetch_ && caught_up)) {
    net::post(strand_, [self = shared_from_this()] { self->FetchOnStrand(); });
  } else {
    net::post(workers_, [self = shared_from_this()] { self->Fetch(); });
  }
}

void WsFeed::FetchOnStrand() {
  // Not in PostFetch: this takes the group's lock, which a notifier's
  // listener (OnChange) must not.
  if (FetchRunsOnNetworkThread(*group_, clock_->NowMs())) {
    Fetch();
  } else {
    net::post(workers_, [self = shared_from_this()] { self->Fetch(); });
  }
}

void WsFeed::Fetch() {
  for (int attempt = 0;; ++attempt) {
    // The version before the fetch: a change after it means "try again".
    const uint64_t seen = group_->notifier().version();
    int max = 1;
    {
      absl::MutexLock lock(&mu_);
      if (state_ == State::kStopped) return;
      max = max_;
    }
    Result result = absl::InternalError("fetch did not run");
    std::optional<int64_t> next_deadline;
    try {
      result = handles_only_ ? group_->FetchHandles(consumer_, max) : group_->Fetch(consumer_, max);
      if (result.ok() && static_cast<int>(result->size()) < max) {
        next_deadline = group_->NextDeadlineMs();
      }
    } catch (const std::exception& e) {
      result = absl::InternalError(absl::StrCat("fetch failed: ", e.what()));
    }
    if (!result.ok() || !result->empty()) {
      {
        absl::MutexLock lock(&mu_);
        if (state_ != State::kStopped) state_ = State::kIdle;
        const bool drained = result.ok() && static_cast<int>(result->size()) < max;
        drained_at_ = drained ? std::optional<uint64_t>(seen) : std::nullopt;
        drained_deadline_ms_ = next_deadline;
      }
      deliver_(std::move(result));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (state_ == State::kStopped) return;
      if (group_->notifier().version() == seen) {
        // Checked under mu_: a change after this finds kWaiting (its
        // listener runs after the version moved) and fetches.
        state_ = State::kWaiting;
        drained_at_ = seen;
        drained_deadline_ms_ = next_deadline;
        // A timer due no later than needed (the usual case: a fetch woken
        // by a publish another consumer took) stays as it is: no hand-off.
        if (!timer_due_.has_value() || *timer_due_ > WakeAt(next_deadline)) {
          net::post(strand_,
                    [self = shared_from_this(), next_deadline] { self->ArmTimer(next_deadline); });
        }
        return;
      }
    }
    if (attempt + 1 >= kMaxImmediateRetries) {
      PostFetch(/*caught_up=*/true);  // it found nothing
      return;
    }
  }
}

std::chrono::steady_clock::time_point WsFeed::WakeAt(std::optional<int64_t> deadline_ms) const {
  auto wait = std::chrono::milliseconds(kMaxIdle);
  if (deadline_ms.has_value()) {
    // The group's deadlines are on its (wall) clock; at least 1 ms so a
    // deadline just passing cannot spin the feed.
    wait = std::min(
        wait, std::chrono::milliseconds(std::max<int64_t>(1, *deadline_ms - clock_->NowMs())));
  }
  return std::chrono::steady_clock::now() + wait;
}

void WsFeed::ArmTimer(std::optional<int64_t> deadline_ms) {
  const std::chrono::steady_clock::time_point due = WakeAt(deadline_ms);
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kWaiting) return;                     // woken meanwhile, or stopped
    if (timer_due_.has_value() && *timer_due_ <= due) return;  // armed soon enough
    timer_due_ = due;
  }
  timer_.expires_at(due);
  timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;  // cancelled: re-armed or stopped
    if (std::shared_ptr<WsFeed> feed = weak.lock()) {
      {
        absl::MutexLock lock(&feed->mu_);
        feed->timer_due_.reset();
      }
      feed->OnChange();
    }
  });
}

}  // namespace once::coordinator
