#include "coordinator/long_poll.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace net = boost::asio;

bool LongPollSet::Add(LongPoll* poll, std::weak_ptr<LongPoll> handle) {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  polls_[poll] = std::move(handle);
  return true;
}

void LongPollSet::Remove(LongPoll* poll) {
  absl::MutexLock lock(&mu_);
  polls_.erase(poll);
}

void LongPollSet::BeginDrain() {
  std::vector<std::shared_ptr<LongPoll>> live;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (auto& [raw, weak] : polls_) {
      if (auto p = weak.lock()) live.push_back(std::move(p));
    }
  }
  for (const auto& p : live) p->Wake();
}

bool LongPollSet::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

size_t LongPollSet::size() const {
  absl::MutexLock lock(&mu_);
  return polls_.size();
}

LongPoll::LongPoll(net::io_context& ioc, net::thread_pool& workers, LongPollSet* set, Clock* clock,
                   std::shared_ptr<broker::ConsumerGroup> group, std::string consumer, int max,
                   std::chrono::milliseconds wait, Done done)
    : strand_(net::make_strand(ioc)),
      timer_(strand_),
      workers_(workers),
      set_(set),
      clock_(clock),
      group_(std::move(group)),
      consumer_(std::move(consumer)),
      max_(max),
      deadline_(std::chrono::steady_clock::now() + wait),
      done_(std::move(done)) {}

LongPoll::~LongPoll() {
  // Finish unregisters; this covers a poll destroyed without finishing
  // (its io_context stopped under it).
  if (registered_) group_->notifier().RemoveListener(listener_id_);
  set_->Remove(this);
}

void LongPoll::Start() {
  net::dispatch(strand_, [self = shared_from_this()] {
    std::weak_ptr<LongPoll> weak = self;
    self->listener_id_ = self->group_->notifier().AddListener([weak] {
      // On the notifying thread (a publish, an ack...): only post.
      if (std::shared_ptr<LongPoll> poll = weak.lock()) {
        net::post(poll->strand_, [poll] { poll->OnChange(); });
      }
    });
    self->registered_ = true;
    if (!self->set_->Add(self.get(), weak)) self->final_ = true;
    self->DoFetch();
  });
}

void LongPoll::Wake() {
  net::post(strand_, [self = shared_from_this()] {
    self->final_ = true;
    if (self->state_ == State::kWaiting) self->timer_.cancel();
  });
}

void LongPoll::DoFetch() {
  state_ = State::kFetching;
  net::post(workers_, [self = shared_from_this()] {
    // The version before the fetch: a change after it means "try again".
    const uint64_t seen = self->group_->notifier().version();
    Result result = absl::InternalError("fetch did not run");
    std::optional<int64_t> next_deadline;
    try {
      result = self->group_->Fetch(self->consumer_, self->max_);
      if (result.ok() && result->empty()) next_deadline = self->group_->NextDeadlineMs();
    } catch (const std::exception& e) {
      result = absl::InternalError(absl::StrCat("fetch failed: ", e.what()));
    }
    net::post(self->strand_, [self, result = std::move(result), seen, next_deadline]() mutable {
      self->OnFetched(std::move(result), seen, next_deadline);
    });
  });
}

void LongPoll::OnFetched(Result result, uint64_t seen, std::optional<int64_t> next_deadline_ms) {
  const auto now = std::chrono::steady_clock::now();
  if (!result.ok() || !result->empty() || final_ || now >= deadline_) {
    Finish(std::move(result));
    return;
  }
  if (group_->notifier().version() != seen) {
    // Something changed while we fetched: look again before sleeping.
    DoFetch();
    return;
  }
  auto wake_at = deadline_;
  if (next_deadline_ms.has_value()) {
    // The group's deadlines are on its (wall) clock; sleep until then at
    // most, at least 1 ms so a deadline just passing cannot spin us.
    const int64_t in_ms = std::max<int64_t>(1, *next_deadline_ms - clock_->NowMs());
    wake_at = std::min(wake_at, now + std::chrono::milliseconds(in_ms));
  }
  state_ = State::kWaiting;
  timer_.expires_at(wake_at);
  timer_.async_wait(
      [self = shared_from_this()](boost::beast::error_code ec) { self->OnTimer(ec); });
}

void LongPoll::OnChange() {
  if (state_ == State::kWaiting) timer_.cancel();  // OnTimer fetches again
}

void LongPoll::OnTimer(boost::beast::error_code /*ec*/) {
  // Expired, cancelled by a change or by Wake: fetch again either way.
  if (state_ != State::kWaiting) return;
  DoFetch();
}

void LongPoll::Finish(Result result) {
  state_ = State::kDone;
  if (registered_) {
    group_->notifier().RemoveListener(listener_id_);
    registered_ = false;
  }
  set_->Remove(this);
  Done done = std::move(done_);
  done(std::move(result));
}

}  // namespace once::coordinator
