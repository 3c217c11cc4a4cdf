// TxnRoutes: the operators' HTTP routes of the 2PC coordinator
// (schema/http_api.md, "Transactions"):
//
//   GET  /v1/transactions?state=S&limit=N   {"transactions": [...]}
//   GET  /v1/transactions/{id}              one, with its audit entries
//   POST /v1/transactions/{id}/commit       {"reason"}: forced commit
//   POST /v1/transactions/{id}/abort        {"reason"}: forced abort
//
// A forced outcome is audited (coordinator.db, table audit). Commit only
// of a txn whose participant voted yes and abort only before the commit
// point; anything else is 409 transaction_state naming why.
//
// Handlers run on the worker pool (the engine and the store block). Until
// SetReady (recovery done) every route answers 503 not_ready.
#ifndef ONCE_COORDINATOR_TXN_ROUTES_H_
#define ONCE_COORDINATOR_TXN_ROUTES_H_

#include <atomic>

#include "boost/asio/thread_pool.hpp"
#include "boost/json/object.hpp"
#include "coordinator/api_exchange.h"
#include "coordinator/router.h"
#include "coordinator/txn_coordinator.h"
#include "coordinator/txn_store.h"

namespace once::coordinator {

// Most transactions one list answers; the default when limit is absent.
inline constexpr int64_t kMaxTxnList = 10'000;
inline constexpr int64_t kDefaultTxnList = 1'000;

class TxnRoutes {
 public:
  // `workers` outlives the routes.
  explicit TxnRoutes(boost::asio::thread_pool& workers) : workers_(workers) {}

  TxnRoutes(const TxnRoutes&) = delete;
  TxnRoutes& operator=(const TxnRoutes&) = delete;

  // Adds the routes. Call once, before the router is shared.
  void Register(Router* router);

  // Serve: both outlive the routes' use. Thread-safe; call once.
  void SetReady(TxnCoordinator* engine, TxnStore* store);

  // The handlers themselves (exposed for tests; call once ready).
  ApiResponse List(const ApiRequest& request);
  ApiResponse Get(const ApiRequest& request);
  ApiResponse Force(const ApiRequest& request, bool commit);

 private:
  Router::Handler Blocking(std::function<ApiResponse(const ApiRequest&)> handler);

  boost::asio::thread_pool& workers_;
  std::atomic<TxnCoordinator*> engine_{nullptr};
  std::atomic<TxnStore*> store_{nullptr};
};

// The JSON of one transaction as the routes answer it.
boost::json::object TxnViewToJson(const TxnView& view, int64_t now_ms);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_TXN_ROUTES_H_
