// ServerState: what every HTTP session shares (Beast chat-multi's
// shared_state): the router, the limits, the metrics, and the small
// registry of live sessions that a drain walks. Its mutex guards only that
// registry, never I/O: a drain collects the sessions under the lock and
// tells each, outside it, to close (each on its own strand).
#ifndef ONCE_COORDINATOR_SERVER_STATE_H_
#define ONCE_COORDINATOR_SERVER_STATE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/metrics.h"
#include "coordinator/router.h"
#include "coordinator/service_options.h"

namespace once::coordinator {

class BrokerApi;
class TxnCoordinator;

// What a drain asks of every connection's session (HTTP or WebSocket).
class Session {
 public:
  virtual ~Session() = default;
  // Thread-safe: finish what is in progress, then close.
  virtual void Shutdown() = 0;
};

// Sessions answering 503 at once beyond max_connections; past this many
// more, new connections are closed without a word.
inline constexpr int kMaxRejectingSessions = 64;

class ServerState {
 public:
  // Nothing is owned; everything outlives the state. `api` serves the
  // WebSocket upgrades of /v1/ws (nullptr: none).
  ServerState(const Router* router, HttpLimits limits, Metrics* metrics, BrokerApi* api = nullptr)
      : router_(router), limits_(limits), metrics_(metrics), api_(api) {}

  ServerState(const ServerState&) = delete;
  ServerState& operator=(const ServerState&) = delete;

  const Router& router() const { return *router_; }
  const HttpLimits& limits() const { return limits_; }
  Metrics& metrics() const { return *metrics_; }
  BrokerApi* api() const { return api_; }
  // The 2PC engine for participant sessions; null until recovery is done.
  // Thread-safe (set once, before the API is ready).
  TxnCoordinator* txn() const { return txn_.load(std::memory_order_acquire); }
  void SetTxnCoordinator(TxnCoordinator* txn) { txn_.store(txn, std::memory_order_release); }

  // Takes one of max_connections slots; false when all are taken. Each
  // true is paired with one ReleaseConnection.
  bool TryReserveConnection();
  void ReleaseConnection();
  // Likewise for the sessions that only answer 503.
  bool TryReserveRejection();
  void ReleaseRejection();

  // Sessions (serving ones) register so that a drain can reach them.
  // Thread-safe.
  void Register(Session* session, std::weak_ptr<Session> handle);
  void Unregister(Session* session);

  // Connections open (serving and rejecting).
  int64_t connections() const { return connections_.load() + rejecting_.load(); }

  // Stops serving: from now on every session closes as soon as it is
  // idle (after the answer it is working on, if any). Thread-safe;
  // idempotent.
  void BeginDrain();
  bool draining() const { return draining_.load(std::memory_order_acquire); }

 private:
  const Router* const router_;
  const HttpLimits limits_;
  Metrics* const metrics_;
  BrokerApi* const api_;

  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> rejecting_{0};
  std::atomic<bool> draining_{false};
  std::atomic<TxnCoordinator*> txn_{nullptr};

  absl::Mutex mu_;
  absl::flat_hash_map<Session*, std::weak_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_SERVER_STATE_H_
