// Service: the whole of onced in one object. It locks the data directory,
// binds the listener, opens (and recovers) the broker and the consumer
// groups, serves the HTTP API, runs periodic maintenance, and on
// Shutdown (SIGTERM/SIGINT in onced) drains: stops accepting, lets
// in-flight requests finish (bounded by drain_timeout_ms), ends waiting
// fetches, syncs every log, and returns.
//
// Threads: io_threads run the network (Asio); worker_threads run blocking
// broker calls. Nothing else.
#ifndef ONCE_COORDINATOR_SERVICE_H_
#define ONCE_COORDINATOR_SERVICE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/thread_pool.hpp"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/broker_api.h"
#include "coordinator/data_dir_lock.h"
#include "coordinator/listener.h"
#include "coordinator/metrics.h"
#include "coordinator/router.h"
#include "coordinator/server_state.h"
#include "coordinator/service_options.h"
#include "coordinator/txn_coordinator.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_routes.h"
#include "coordinator/txn_store.h"

namespace once::coordinator {

class Service {
 public:
  // Validates `options`, locks the data directory (kFailedPrecondition
  // naming the holder when another onced has it) and binds the listen
  // address (kUnavailable when it cannot). Serves nothing until Run.
  static absl::StatusOr<std::unique_ptr<Service>> Create(ServiceOptions options);

  ~Service();

  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // The bound port (the real one when the listen address asked for 0).
  uint16_t port() const;
  // "http://HOST:PORT".
  std::string url() const;
  const ServiceOptions& options() const { return options_; }

  // Serves until Shutdown (or a signal, with handle_signals), then drains
  // and flushes. Returns OK after a clean stop, or the error that stopped
  // the service (the broker failed to open, a flush failed). Call once.
  absl::Status Run();

  // Thread-safe and idempotent; returns at once (Run does the draining).
  void Shutdown();

 private:
  explicit Service(ServiceOptions options);

  void OpenBroker();  // on a worker
  // Opens coordinator.db and recovers the 2PC state (before ready).
  absl::Status OpenCoordinator();  // on a worker
  void ScheduleTxnTick();
  void ScheduleMaintenance();
  void RunMaintenance();  // on a worker
  void BeginShutdown();   // on the io_context
  void CheckDrained();
  absl::Status Flush();
  void SetExitStatus(absl::Status status);

  const ServiceOptions options_;
  std::unique_ptr<DataDirLock> lock_;
  Metrics metrics_;
  Router router_;
  std::unique_ptr<boost::asio::io_context> ioc_;
  std::unique_ptr<boost::asio::thread_pool> workers_;
  std::unique_ptr<ServerState> state_;
  std::unique_ptr<BrokerApi> api_;
  std::shared_ptr<Listener> listener_;
  std::unique_ptr<boost::asio::signal_set> signals_;
  std::unique_ptr<boost::asio::steady_timer> maintenance_timer_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  std::unique_ptr<boost::asio::steady_timer> txn_timer_;
  std::unique_ptr<TxnRoutes> txn_routes_;
  TxnMetrics txn_metrics_;
  std::chrono::steady_clock::time_point drain_deadline_;

  // Written by OpenBroker before api_->SetReady publishes them; read by
  // the API after. Destroyed after every thread has stopped.
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> groups_;
  // Likewise, by OpenCoordinator; the engine goes before the groups.
  std::unique_ptr<TxnStore> txn_store_;
  std::unique_ptr<TxnCoordinator> txn_;

  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  absl::Status exit_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_SERVICE_H_
