// BrokerApi: the handlers of the HTTP API /v1 (topics, messages, groups)
// and of /healthz, /readyz and /metrics, registered on a Router. The
// contract is schema/http_api.md.
//
// Threading: a handler is called on a session's strand and must not
// block it, so every handler that touches the broker runs on the worker
// pool (a publish waits there for its fsync; a topic create writes its
// metadata durably) and answers through its Responder, which posts back
// to the session. A fetch that waits is a LongPoll and holds no thread.
//
// Until SetReady (the broker opened and recovered), the /v1 routes answer
// 503 not_ready; /healthz always answers.
#ifndef ONCE_COORDINATOR_BROKER_API_H_
#define ONCE_COORDINATOR_BROKER_API_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/thread_pool.hpp"
#include "boost/json/object.hpp"
#include "broker/broker.h"
#include "broker/consumer_group.h"
#include "broker/group_registry.h"
#include "coordinator/api_exchange.h"
#include "coordinator/long_poll.h"
#include "coordinator/metrics.h"
#include "coordinator/router.h"
#include "coordinator/service_options.h"
#include "schema/clock.h"

namespace once::coordinator {

class BrokerApi {
 public:
  // Nothing is owned; everything outlives the API. `options` is copied.
  BrokerApi(boost::asio::io_context& ioc, boost::asio::thread_pool& workers, Metrics* metrics,
            const ServiceOptions& options);

  BrokerApi(const BrokerApi&) = delete;
  BrokerApi& operator=(const BrokerApi&) = delete;

  // Adds every route. Call once, before the router is shared.
  void Register(Router* router);

  // The broker is open and recovered: serve. Thread-safe; call once. The
  // pointers must stay valid until the API is no longer called.
  void SetReady(broker::Broker* broker, broker::GroupRegistry* groups);
  bool ready() const { return broker_.load(std::memory_order_acquire) != nullptr; }

  // Ends every waiting fetch now (they answer with what they find) and
  // makes later fetches answer at once. Thread-safe.
  void BeginDrain() { polls_.BeginDrain(); }

  // ---- shared with the WebSocket sessions (call only once ready(); the
  // blocking ones on a worker)

  // The topic `name`: invalid_name (400) or topic_not_found (404).
  absl::StatusOr<std::shared_ptr<broker::Topic>> FindTopic(absl::string_view name) const;
  // The group: invalid_name, topic_not_found or group_not_found.
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> FindGroup(absl::string_view topic,
                                                                   absl::string_view group) const;
  // message_too_large naming the first message over the topic's
  // max_message_bytes.
  static absl::Status CheckMessageSizes(const broker::Topic& topic,
                                        const std::vector<broker::Record>& records);
  // Checks the messages' sizes, publishes, counts, and wakes the topic's
  // waiting consumers. Blocks until durable.
  absl::StatusOr<std::vector<broker::PublishResult>> PublishRecords(
      const std::shared_ptr<broker::Topic>& topic, std::vector<broker::Record> records);
  // Acks (or nacks) `tokens` on `group` and counts. An error means nothing
  // was applied; refusals are in the result (see RefusalStatus). Blocks.
  absl::StatusOr<broker::AckResult> AckTokens(const std::shared_ptr<broker::ConsumerGroup>& group,
                                              const std::vector<std::string>& tokens, bool nack,
                                              bool requeue);
  // The same for handles the service kept (a WebSocket subscription with
  // delivery tags): ConsumerGroup::AckHandles / NackHandles.
  absl::StatusOr<broker::AckResult> AckHandles(const std::shared_ptr<broker::ConsumerGroup>& group,
                                               absl::Span<const broker::DeliveryToken> handles,
                                               bool nack, bool requeue);
  // OK when nothing was refused; else stale_tokens (409) or
  // invalid_tokens (400).
  static absl::Status RefusalStatus(const broker::AckResult& result);
  // A fetch failure with the right API code (group_not_found when the
  // group went away).
  static absl::Status FetchError(absl::Status status);

  boost::asio::io_context& ioc() { return ioc_; }
  boost::asio::thread_pool& workers() { return workers_; }
  LongPollSet* polls() { return &polls_; }
  Metrics& metrics() { return *metrics_; }
  const ServiceOptions& options() const { return options_; }
  Clock* clock() const { return broker_.load(std::memory_order_acquire)->options().clock; }

 private:
  // AckTokens' and AckHandles' errors and counters.
  absl::StatusOr<broker::AckResult> Counted(const broker::ConsumerGroup& group, bool nack,
                                            absl::StatusOr<broker::AckResult> result);
  using BlockingHandler = ApiResponse (BrokerApi::*)(const ApiRequest&);

  // A route handler that runs `method` on the worker pool, after checking
  // that the broker is ready, and turns any exception into a 500.
  Router::Handler Blocking(BlockingHandler method);

  ApiResponse Healthz(const ApiRequest& request);
  ApiResponse Readyz(const ApiRequest& request);
  ApiResponse MetricsText(const ApiRequest& request);

  ApiResponse CreateTopic(const ApiRequest& request);
  ApiResponse ListTopics(const ApiRequest& request);
  ApiResponse DescribeTopic(const ApiRequest& request);
  ApiResponse DeleteTopic(const ApiRequest& request);
  ApiResponse Publish(const ApiRequest& request);

  ApiResponse ListGroups(const ApiRequest& request);
  ApiResponse CreateGroup(const ApiRequest& request);
  ApiResponse DescribeGroup(const ApiRequest& request);
  ApiResponse DeleteGroup(const ApiRequest& request);
  ApiResponse Ack(const ApiRequest& request);
  ApiResponse Nack(const ApiRequest& request);
  ApiResponse Reset(const ApiRequest& request);
  // Starts a LongPoll (answers later) or answers an error.
  void Fetch(const ApiRequest& request, const Responder& responder);

  // The request's body as a JSON object, after checking its Content-Type
  // (absent or application/json, else 415).
  absl::StatusOr<boost::json::object> Body(const ApiRequest& request, absl::string_view what,
                                           bool empty_is_object) const;
  // The topic named by the route's {topic}: invalid_name (400) or
  // topic_not_found (404).
  absl::StatusOr<std::shared_ptr<broker::Topic>> FindTopic(const ApiRequest& request) const {
    return FindTopic(request.param("topic"));
  }
  // The group named by {topic} and {group}.
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> FindGroup(
      const ApiRequest& request) const {
    return FindGroup(request.param("topic"), request.param("group"));
  }
  ApiResponse AckOrNack(const ApiRequest& request, bool nack);
  BrokerSnapshot Snapshot() const;

  boost::asio::io_context& ioc_;
  boost::asio::thread_pool& workers_;
  Metrics* const metrics_;
  const ServiceOptions options_;
  LongPollSet polls_;

  std::atomic<broker::Broker*> broker_{nullptr};
  std::atomic<broker::GroupRegistry*> groups_{nullptr};
};

// A JSON answer with `status`.
ApiResponse JsonResponse(int status, const boost::json::object& body);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_BROKER_API_H_
