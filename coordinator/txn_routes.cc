#include "coordinator/txn_routes.h"

#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/post.hpp"
#include "boost/json/array.hpp"
#include "coordinator/api_error.h"
#include "coordinator/broker_api.h"
#include "coordinator/json_codec.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace json = boost::json;

namespace {

constexpr absl::string_view kTransactionState = "transaction_state";
constexpr absl::string_view kTransactionNotFound = "transaction_not_found";
// Longest reason an operator may give.
constexpr size_t kMaxReasonBytes = 4096;

absl::Status QueryError(absl::string_view message) {
  return ApiError(absl::StatusCode::kInvalidArgument, kInvalidField, message);
}

// state and limit of "?state=S&limit=N"; anything else is refused.
absl::Status ParseListQuery(absl::string_view target, std::optional<TxnState>* state,
                            int64_t* limit) {
  const size_t q = target.find('?');
  if (q == absl::string_view::npos) return absl::OkStatus();
  for (absl::string_view pair : absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == "state") {
      std::optional<TxnState> s =
          ParseTxnState(std::string_view(kv.second.data(), kv.second.size()));
      if (!s.has_value()) {
        return QueryError(absl::StrCat("query parameter state=\"", kv.second,
                                       "\" is not a state: preparing, voted_yes, committed, done "
                                       "or aborted"));
      }
      *state = s;
    } else if (kv.first == "limit") {
      if (!absl::SimpleAtoi(kv.second, limit) || *limit < 1 || *limit > kMaxTxnList) {
        return QueryError(absl::StrCat("query parameter limit=\"", kv.second,
                                       "\" must be an integer in 1..", kMaxTxnList));
      }
    } else {
      return QueryError(absl::StrCat("unknown query parameter \"", kv.first,
                                     "\"; /v1/transactions takes state and limit"));
    }
  }
  return absl::OkStatus();
}

// The engine's statuses with the API's codes.
ApiResponse EngineError(const absl::Status& status) {
  if (absl::IsFailedPrecondition(status)) {
    return ErrorResponse(WithApiCode(status, kTransactionState));
  }
  if (absl::IsNotFound(status)) return ErrorResponse(WithApiCode(status, kTransactionNotFound));
  if (absl::IsAborted(status)) {
    // The commit point refused the leases: the txn is aborted now.
    return ErrorResponse(
        ApiError(absl::StatusCode::kFailedPrecondition, kTransactionState, status.message()));
  }
  return ErrorResponse(status);
}

}  // namespace

json::object TxnViewToJson(const TxnView& view, int64_t now_ms) {
  const TxnRecord& r = view.record;
  json::object o;
  o["txn"] = r.txn;
  o["state"] = std::string(TxnStateName(r.state));
  o["topic"] = r.topic;
  o["group"] = r.group;
  o["participant"] = r.participant;
  o["epoch"] = r.epoch;
  o["generation"] = r.generation;
  json::array messages;
  for (const TxnMessageRef& m : r.messages) {
    json::object mo;
    mo["id"] = protocol::MessageId(r.topic, m.partition, m.offset);
    mo["partition"] = m.partition;
    mo["offset"] = m.offset;
    messages.push_back(std::move(mo));
  }
  o["messages"] = std::move(messages);
  o["created_ms"] = r.created_ms;
  o["age_ms"] = r.created_ms > 0 ? now_ms - r.created_ms : 0;
  o["decided_ms"] = r.decided_ms;
  o["done_ms"] = r.done_ms;
  o["attempts"] = r.attempts;
  o["reason"] = r.reason;
  o["broker_deleted"] = r.broker_deleted;
  o["committing"] = view.committing;
  o["participant_connected"] = view.participant_connected;
  return o;
}

void TxnRoutes::SetReady(TxnCoordinator* engine, TxnStore* store) {
  store_.store(store, std::memory_order_release);
  engine_.store(engine, std::memory_order_release);
}

Router::Handler TxnRoutes::Blocking(std::function<ApiResponse(const ApiRequest&)> handler) {
  return [this, handler = std::move(handler)](ApiRequest request, Responder responder) {
    boost::asio::post(workers_, [this, handler, request = std::move(request), responder] {
      ApiResponse response;
      try {
        if (engine_.load(std::memory_order_acquire) == nullptr) {
          response = ErrorResponse(
              ApiError(absl::StatusCode::kUnavailable, kNotReady,
                       "the transaction coordinator is still recovering its state; retry shortly"));
        } else {
          response = handler(request);
        }
      } catch (const std::exception& e) {
        spdlog::error("{} {} threw: {}", request.method, request.target, e.what());
        response = ErrorResponse(absl::InternalError(absl::StrCat("internal error: ", e.what())));
      }
      responder.Send(std::move(response));
    });
  };
}

void TxnRoutes::Register(Router* router) {
  router->Add("GET", "/v1/transactions", Blocking([this](const ApiRequest& r) { return List(r); }));
  router->Add("GET", "/v1/transactions/{id}",
              Blocking([this](const ApiRequest& r) { return Get(r); }));
  router->Add("POST", "/v1/transactions/{id}/commit",
              Blocking([this](const ApiRequest& r) { return Force(r, /*commit=*/true); }));
  router->Add("POST", "/v1/transactions/{id}/abort",
              Blocking([this](const ApiRequest& r) { return Force(r, /*commit=*/false); }));
}

ApiResponse TxnRoutes::List(const ApiRequest& request) {
  std::optional<TxnState> state;
  int64_t limit = kDefaultTxnList;
  if (absl::Status s = ParseListQuery(request.target, &state, &limit); !s.ok()) {
    return ErrorResponse(s);
  }
  TxnCoordinator* engine = engine_.load(std::memory_order_acquire);
  absl::StatusOr<std::vector<TxnView>> views = engine->List(state, static_cast<size_t>(limit));
  if (!views.ok()) return EngineError(views.status());
  const int64_t now = SystemClock()->NowMs();
  json::array list;
  for (const TxnView& v : *views) list.push_back(TxnViewToJson(v, now));
  json::object body;
  body["transactions"] = std::move(list);
  return JsonResponse(200, body);
}

ApiResponse TxnRoutes::Get(const ApiRequest& request) {
  const std::string& id = request.param("id");
  TxnCoordinator* engine = engine_.load(std::memory_order_acquire);
  absl::StatusOr<TxnView> view = engine->Get(id);
  if (!view.ok()) return EngineError(view.status());
  json::object body = TxnViewToJson(*view, SystemClock()->NowMs());
  absl::StatusOr<std::vector<AuditEntry>> audit =
      store_.load(std::memory_order_acquire)->AuditLog(id);
  if (!audit.ok()) return ErrorResponse(audit.status());
  json::array entries;
  for (const AuditEntry& e : *audit) {
    json::object eo;
    eo["at_ms"] = e.at_ms;
    eo["action"] = e.action;
    eo["reason"] = e.reason;
    eo["actor"] = e.actor;
    entries.push_back(std::move(eo));
  }
  body["audit"] = std::move(entries);
  return JsonResponse(200, body);
}

ApiResponse TxnRoutes::Force(const ApiRequest& request, bool commit) {
  const char* what = commit ? "the commit request" : "the abort request";
  absl::StatusOr<json::object> body = ParseJsonObject(request.body, what, false);
  if (!body.ok()) return ErrorResponse(body.status());
  FieldReader r(*body, what);
  std::string reason;
  bool has_reason = false;
  absl::Status s = r.String("reason", &reason, &has_reason);
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && (!has_reason || reason.empty())) {
    s = r.FieldError("reason", "is required (a non-empty string: it is audited)");
  }
  if (s.ok() && reason.size() > kMaxReasonBytes) {
    s = r.FieldError("reason", absl::StrCat("is longer than ", kMaxReasonBytes, " bytes"));
  }
  if (!s.ok()) return ErrorResponse(s);
  const std::string& id = request.param("id");
  TxnCoordinator* engine = engine_.load(std::memory_order_acquire);
  absl::Status done =
      commit ? engine->ForceCommit(id, reason, "http") : engine->ForceAbort(id, reason, "http");
  if (!done.ok()) return EngineError(done);
  json::object answer;
  answer["txn"] = id;
  answer["outcome"] = commit ? "commit" : "abort";
  answer["reason"] = reason;
  return JsonResponse(200, answer);
}

}  // namespace once::coordinator
