#include "coordinator/service.h"

#include <algorithm>
#include <csignal>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/beast/core/error.hpp"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace net = boost::asio;

namespace {

// How often a drain looks whether every connection has closed.
constexpr std::chrono::milliseconds kDrainPoll(10);

}  // namespace

Service::Service(ServiceOptions options)
    : options_(std::move(options)),
      ioc_(std::make_unique<net::io_context>(options_.io_threads)),
      workers_(std::make_unique<net::thread_pool>(static_cast<size_t>(options_.worker_threads))) {}

absl::StatusOr<std::unique_ptr<Service>> Service::Create(ServiceOptions options) {
  ONCE_RETURN_IF_ERROR(ValidateServiceOptions(options));
  ONCE_ASSIGN_OR_RETURN(ListenAddress address, ParseListenAddress(options.listen));
  std::unique_ptr<Service> service(new Service(std::move(options)));
  // The lock first: a second onced on the same data directory must be
  // told so, not that the port is taken.
  ONCE_ASSIGN_OR_RETURN(service->lock_, DataDirLock::Acquire(service->options_.data_dir));
  service->api_ = std::make_unique<BrokerApi>(*service->ioc_, *service->workers_,
                                              &service->metrics_, service->options_);
  service->state_ = std::make_unique<ServerState>(&service->router_, service->options_.limits,
                                                  &service->metrics_, service->api_.get());
  service->api_->Register(&service->router_);
  service->txn_routes_ = std::make_unique<TxnRoutes>(*service->workers_);
  service->txn_routes_->Register(&service->router_);
  ONCE_ASSIGN_OR_RETURN(service->listener_,
                        Listener::Open(*service->ioc_, address, service->state_.get()));
  service->maintenance_timer_ = std::make_unique<net::steady_timer>(*service->ioc_);
  service->drain_timer_ = std::make_unique<net::steady_timer>(*service->ioc_);
  service->txn_timer_ = std::make_unique<net::steady_timer>(*service->ioc_);
  if (service->options_.handle_signals) {
    service->signals_ = std::make_unique<net::signal_set>(*service->ioc_, SIGTERM, SIGINT);
  }
  return service;
}

Service::~Service() {
  // Run has returned (or never ran): stop what may remain, in dependency
  // order. Worker jobs may still use the broker; handlers queued on the
  // io_context hold sessions that use state_.
  if (workers_) workers_->join();
  listener_.reset();
  signals_.reset();
  maintenance_timer_.reset();
  drain_timer_.reset();
  txn_timer_.reset();
  ioc_.reset();
  workers_.reset();
  api_.reset();
  metrics_.SetExtraRenderer(nullptr);
  txn_.reset();  // holds groups and listens on their notifiers
  txn_store_.reset();
  groups_.reset();
  broker_.reset();
  state_.reset();
}

uint16_t Service::port() const { return listener_->local_endpoint().port(); }

std::string Service::url() const {
  const auto endpoint = listener_->local_endpoint();
  const std::string host = endpoint.address().is_v6()
                               ? absl::StrCat("[", endpoint.address().to_string(), "]")
                               : endpoint.address().to_string();
  return absl::StrCat("http://", host, ":", endpoint.port());
}

void Service::SetExitStatus(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (exit_status_.ok()) exit_status_ = std::move(status);
}

absl::Status Service::Run() {
  if (signals_) {
    signals_->async_wait([this](boost::beast::error_code ec, int signal) {
      if (ec) return;  // cancelled by a shutdown
      spdlog::info("received {}; shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      Shutdown();
    });
  }
  listener_->Run();
  net::post(*workers_, [this] { OpenBroker(); });

  std::vector<std::thread> threads;
  for (int i = 1; i < options_.io_threads; ++i) {
    threads.emplace_back([this] { ioc_->run(); });
  }
  ioc_->run();
  for (std::thread& t : threads) t.join();

  // The network is stopped. Let every blocking call (publishes waiting on
  // their fsync, a maintenance pass, the broker's opening) finish, then
  // make everything durable.
  workers_->join();
  absl::Status flushed = Flush();
  if (!flushed.ok()) SetExitStatus(flushed);
  absl::MutexLock lock(&mu_);
  if (exit_status_.ok()) spdlog::info("stopped cleanly");
  return exit_status_;
}

void Service::Shutdown() {
  net::post(*ioc_, [this] { BeginShutdown(); });
}

void Service::OpenBroker() {
  if (stopping_.load()) return;
  const auto start = std::chrono::steady_clock::now();
  broker::BrokerOptions broker_options;
  broker_options.data_dir = options_.data_dir;
  broker_options.memory_budget_bytes = options_.memory_budget_bytes;
  broker_options.on_corruption = options_.on_corruption;
  broker_options.append_threads = options_.append_threads;
  absl::StatusOr<std::unique_ptr<broker::Broker>> broker = broker::Broker::Open(broker_options);
  if (!broker.ok()) {
    SetExitStatus(absl::Status(broker.status().code(),
                               absl::StrCat("opening the broker in ", options_.data_dir, ": ",
                                            broker.status().message())));
    Shutdown();
    return;
  }
  broker::GroupRegistryOptions group_options;
  group_options.min_commit_interval = absl::Milliseconds(options_.group_commit_interval_ms);
  absl::StatusOr<std::unique_ptr<broker::GroupRegistry>> groups =
      broker::GroupRegistry::Open(broker->get(), group_options);
  if (!groups.ok()) {
    SetExitStatus(absl::Status(groups.status().code(),
                               absl::StrCat("opening the consumer groups in ", options_.data_dir,
                                            ": ", groups.status().message())));
    Shutdown();
    return;
  }
  broker_ = *std::move(broker);
  groups_ = *std::move(groups);
  // The 2PC state is recovered before anything is served (DESIGN.md §2):
  // /readyz answers 503 until then.
  if (absl::Status s = OpenCoordinator(); !s.ok()) {
    SetExitStatus(s);
    Shutdown();
    return;
  }
  api_->SetReady(broker_.get(), groups_.get());
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  spdlog::info("ready: broker opened and recovered in {} ms ({} topic(s))", ms,
               broker_->ListTopics().size());
  net::post(*ioc_, [this] {
    ScheduleMaintenance();
    ScheduleTxnTick();
  });
}

absl::Status Service::OpenCoordinator() {
  TxnStoreOptions store_options;
  store_options.synchronous_full = options_.txn_sync_full;
  // Done markings share the next decision's fsync (or wait this long).
  store_options.bookkeeping_delay = absl::Milliseconds(20);
  const std::string path = options_.data_dir + "/coordinator.db";
  absl::StatusOr<std::unique_ptr<TxnStore>> store = TxnStore::Open(path, store_options);
  if (!store.ok()) {
    return absl::Status(store.status().code(), absl::StrCat("opening the coordinator's store ",
                                                            path, ": ", store.status().message()));
  }
  txn_store_ = *std::move(store);
  TxnCoordinatorOptions engine_options;
  engine_options.batch_max = options_.txn_batch_max;
  engine_options.linger_ms = options_.txn_linger_ms;
  engine_options.vote_timeout_ms = options_.txn_vote_timeout_ms;
  engine_options.commit_retry_initial_ms = options_.txn_commit_retry_ms;
  engine_options.commit_retry_max_ms = std::max<int64_t>(60'000, options_.txn_commit_retry_ms);
  // The broker deletes after DONEs share one groups.db fsync per 5 ms
  // instead of one each (TxnCoordinatorOptions::finish_delay_ms).
  engine_options.finish_delay_ms = 5;
  ONCE_RETURN_IF_ERROR(ValidateTxnCoordinatorOptions(engine_options));
  broker::GroupRegistry* groups = groups_.get();
  net::thread_pool* workers = workers_.get();
  txn_ = std::make_unique<TxnCoordinator>(
      txn_store_.get(),
      [groups](absl::string_view topic, absl::string_view group) {
        return groups->GetGroup(topic, group);
      },
      [workers](std::function<void()> work) { net::post(*workers, std::move(work)); },
      engine_options, &txn_metrics_);
  if (absl::Status s = txn_->Recover(); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("recovering the transaction coordinator: ", s.message()));
  }
  TxnStore* txn_store = txn_store_.get();
  TxnCoordinator* txn = txn_.get();
  TxnMetrics* txn_metrics = &txn_metrics_;
  metrics_.SetExtraRenderer([txn, txn_store, txn_metrics](std::string* out) {
    const TxnStore::Stats stats = txn_store->stats();
    txn_metrics->Render(txn->Gauges(), {stats.commits, stats.decisions}, out);
  });
  state_->SetTxnCoordinator(txn_.get());
  txn_routes_->SetReady(txn_.get(), txn_store_.get());
  return absl::OkStatus();
}

void Service::ScheduleTxnTick() {
  if (stopping_.load() || !txn_) return;
  txn_timer_->expires_after(std::chrono::milliseconds(options_.txn_tick_ms));
  txn_timer_->async_wait([this](boost::beast::error_code ec) {
    if (ec || stopping_.load()) return;
    net::post(*workers_, [this] {
      txn_->Tick();
      net::post(*ioc_, [this] { ScheduleTxnTick(); });
    });
  });
}

void Service::ScheduleMaintenance() {
  if (stopping_.load()) return;
  maintenance_timer_->expires_after(std::chrono::milliseconds(options_.maintenance_interval_ms));
  maintenance_timer_->async_wait([this](boost::beast::error_code ec) {
    if (ec || stopping_.load()) return;
    net::post(*workers_, [this] { RunMaintenance(); });
  });
}

void Service::RunMaintenance() {
  // Retention and fsync=interval syncs; lease deadlines (redelivery,
  // dead-lettering); then space every group is done with.
  if (absl::Status s = broker_->RunMaintenance(); !s.ok()) {
    spdlog::warn("maintenance: broker: {}", s.ToString());
  }
  if (absl::Status s = groups_->Tick(); !s.ok()) {
    spdlog::warn("maintenance: groups: {}", s.ToString());
  }
  if (absl::StatusOr<std::vector<broker::TrimmedPartition>> trimmed = groups_->ReclaimSpace();
      !trimmed.ok()) {
    spdlog::warn("maintenance: reclaiming space: {}", trimmed.status().ToString());
  }
  net::post(*ioc_, [this] { ScheduleMaintenance(); });
}

void Service::BeginShutdown() {
  if (stopping_.exchange(true)) return;
  spdlog::info("draining: no new connections; {} open; waiting up to {} ms for them",
               state_->connections(), options_.drain_timeout_ms);
  listener_->Stop();
  if (signals_) {
    boost::beast::error_code ec;
    signals_->cancel(ec);
  }
  maintenance_timer_->cancel();
  txn_timer_->cancel();
  // Sessions first: waking the long polls answers them on other threads,
  // and each answer must already see the drain so that it says
  // "Connection: close" (the session closes right after it).
  state_->BeginDrain();
  api_->BeginDrain();
  drain_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.drain_timeout_ms);
  CheckDrained();
}

void Service::CheckDrained() {
  if (state_->connections() == 0) {
    ioc_->stop();
    return;
  }
  if (std::chrono::steady_clock::now() >= drain_deadline_) {
    spdlog::warn("drain timeout: {} connection(s) still open; closing them", state_->connections());
    ioc_->stop();
    return;
  }
  drain_timer_->expires_after(kDrainPoll);
  drain_timer_->async_wait([this](boost::beast::error_code) { CheckDrained(); });
}

absl::Status Service::Flush() {
  // Every session is gone: what the engine still does is finish commit
  // records (the store drains its queue on Close).
  if (txn_) txn_->Shutdown();
  if (txn_store_) txn_store_->Close();
  if (!broker_) return absl::OkStatus();
  absl::Status first;
  // Persists what the groups keep lazily (delivery counts, cursors).
  if (absl::Status s = groups_->Tick(); !s.ok()) {
    spdlog::error("flush: groups: {}", s.ToString());
    first = s;
  }
  int64_t synced = 0;
  for (const std::string& name : broker_->ListTopics()) {
    absl::StatusOr<std::shared_ptr<broker::Topic>> topic = broker_->GetTopic(name);
    if (!topic.ok()) continue;
    for (int p = 0; p < (*topic)->partition_count(); ++p) {
      broker::Log* log = (*topic)->partition(p);
      if (log == nullptr) continue;
      absl::Status s = log->Sync();
      if (!s.ok()) {
        spdlog::error("flush: syncing {}/{}: {}", name, p, s.ToString());
        if (first.ok()) {
          first = absl::Status(s.code(), absl::StrCat("syncing ", name, "/", p, ": ", s.message()));
        }
      } else {
        ++synced;
      }
    }
  }
  spdlog::info("flushed {} partition log(s)", synced);
  return first;
}

}  // namespace once::coordinator
