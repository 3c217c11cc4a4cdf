#include "coordinator/server_state.h"

#include <utility>
#include <vector>

namespace once::coordinator {

bool ServerState::TryReserveConnection() {
  int64_t n = connections_.load();
  while (n < limits_.max_connections) {
    if (connections_.compare_exchange_weak(n, n + 1)) return true;
  }
  return false;
}

void ServerState::ReleaseConnection() { connections_.fetch_sub(1); }

bool ServerState::TryReserveRejection() {
  int64_t n = rejecting_.load();
  while (n < kMaxRejectingSessions) {
    if (rejecting_.compare_exchange_weak(n, n + 1)) return true;
  }
  return false;
}

void ServerState::ReleaseRejection() { rejecting_.fetch_sub(1); }

void ServerState::Register(Session* session, std::weak_ptr<Session> handle) {
  absl::MutexLock lock(&mu_);
  sessions_[session] = std::move(handle);
}

void ServerState::Unregister(Session* session) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(session);
}

void ServerState::BeginDrain() {
  draining_.store(true, std::memory_order_release);
  std::vector<std::shared_ptr<Session>> live;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [raw, weak] : sessions_) {
      if (std::shared_ptr<Session> s = weak.lock()) live.push_back(std::move(s));
    }
  }
  // Outside the lock: each Shutdown posts to its session's strand, and a
  // session's destructor (which may run when `live` is cleared) takes mu_.
  for (const auto& s : live) s->Shutdown();
}

}  // namespace once::coordinator
