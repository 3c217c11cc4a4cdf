#include "broker/group_notifier.h"

#include <utility>
#include <vector>

namespace once::broker {

uint64_t GroupNotifier::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

void GroupNotifier::Notify() {
  std::vector<Listener> to_call;
  {
    absl::MutexLock lock(&mu_);
    ++version_;
    to_call.reserve(listeners_.size());
    for (const auto& [id, listener] : listeners_) to_call.push_back(listener);
  }
  for (const Listener& listener : to_call) listener();
}

uint64_t GroupNotifier::WaitForChange(uint64_t seen, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  struct Args {
    const uint64_t* version;
    uint64_t seen;
  } args{&version_, seen};
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](Args* a) { return *a->version != a->seen; }, &args),
                       timeout);
  return version_;
}

int64_t GroupNotifier::AddListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  int64_t id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void GroupNotifier::RemoveListener(int64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

}  // namespace once::broker
