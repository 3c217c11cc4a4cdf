#include "coordinator/broker_api.h"

#include <chrono>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/json/array.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/string.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "coordinator/ws_frames.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace json = boost::json;
namespace net = boost::asio;

namespace {

constexpr absl::string_view kTopicNotFound = "topic_not_found";
constexpr absl::string_view kGroupNotFound = "group_not_found";
constexpr absl::string_view kTopicExists = "topic_exists";
constexpr absl::string_view kGroupExists = "group_exists";
constexpr absl::string_view kExactlyOnceGroup = "exactly_once_group";
constexpr absl::string_view kStaleTokens = "stale_tokens";
constexpr absl::string_view kInvalidTokens = "invalid_tokens";

// Broker validation errors name the setting: they are field errors.
absl::Status AsFieldError(absl::Status s) {
  if (absl::IsInvalidArgument(s)) return WithApiCode(std::move(s), kInvalidField);
  return s;
}

absl::Status AsNameError(absl::Status s) {
  if (!s.ok()) return WithApiCode(absl::InvalidArgumentError(s.message()), kInvalidName);
  return s;
}

}  // namespace

ApiResponse JsonResponse(int status, const json::object& body) {
  ApiResponse response;
  response.status = status;
  response.body = json::serialize(body);
  return response;
}

BrokerApi::BrokerApi(net::io_context& ioc, net::thread_pool& workers, Metrics* metrics,
                     const ServiceOptions& options)
    : ioc_(ioc), workers_(workers), metrics_(metrics), options_(options) {}

void BrokerApi::SetReady(broker::Broker* broker, broker::GroupRegistry* groups) {
  groups_.store(groups, std::memory_order_release);
  broker_.store(broker, std::memory_order_release);
}

Router::Handler BrokerApi::Blocking(BlockingHandler method) {
  return [this, method](ApiRequest request, Responder responder) {
    net::post(workers_, [this, method, request = std::move(request), responder]() {
      ApiResponse response;
      try {
        if (!ready()) {
          response = ErrorResponse(
              ApiError(absl::StatusCode::kUnavailable, kNotReady,
                       "the broker is still opening and recovering its data; retry shortly"));
        } else {
          response = (this->*method)(request);
        }
      } catch (const std::exception& e) {
        spdlog::error("{} {} threw: {}", request.method, request.target, e.what());
        response = ErrorResponse(absl::InternalError(absl::StrCat("internal error: ", e.what())));
      }
      responder.Send(std::move(response));
    });
  };
}

void BrokerApi::Register(Router* router) {
  // Health and metrics answer before the broker is ready.
  router->Add("GET", "/healthz", [this](ApiRequest request, Responder responder) {
    responder.Send(Healthz(request));
  });
  router->Add("GET", "/readyz",
              [this](ApiRequest request, Responder responder) { responder.Send(Readyz(request)); });
  router->Add("GET", "/metrics", [this](ApiRequest request, Responder responder) {
    net::post(workers_, [this, request = std::move(request), responder] {
      try {
        responder.Send(MetricsText(request));
      } catch (const std::exception& e) {
        responder.Send(ErrorResponse(absl::InternalError(e.what())));
      }
    });
  });

  // Reached only without an Upgrade header: the session upgrades real
  // WebSocket handshakes before routing.
  router->Add("GET", "/v1/ws", [](ApiRequest /*request*/, Responder responder) {
    ApiResponse response =
        ErrorResponse(ApiError(absl::StatusCode::kFailedPrecondition, kUpgradeRequired,
                               "/v1/ws speaks WebSocket: send a WebSocket upgrade request"));
    response.headers.emplace_back("Upgrade", "websocket");
    responder.Send(std::move(response));
  });
  router->Add("GET", "/v1/topics", Blocking(&BrokerApi::ListTopics));
  router->Add("PUT", "/v1/topics/{topic}", Blocking(&BrokerApi::CreateTopic));
  router->Add("GET", "/v1/topics/{topic}", Blocking(&BrokerApi::DescribeTopic));
  router->Add("DELETE", "/v1/topics/{topic}", Blocking(&BrokerApi::DeleteTopic));
  router->Add("POST", "/v1/topics/{topic}/messages", Blocking(&BrokerApi::Publish));
  router->Add("GET", "/v1/topics/{topic}/groups", Blocking(&BrokerApi::ListGroups));
  router->Add("PUT", "/v1/topics/{topic}/groups/{group}", Blocking(&BrokerApi::CreateGroup));
  router->Add("GET", "/v1/topics/{topic}/groups/{group}", Blocking(&BrokerApi::DescribeGroup));
  router->Add("DELETE", "/v1/topics/{topic}/groups/{group}", Blocking(&BrokerApi::DeleteGroup));
  router->Add("POST", "/v1/topics/{topic}/groups/{group}/ack", Blocking(&BrokerApi::Ack));
  router->Add("POST", "/v1/topics/{topic}/groups/{group}/nack", Blocking(&BrokerApi::Nack));
  router->Add("POST", "/v1/topics/{topic}/groups/{group}/reset", Blocking(&BrokerApi::Reset));
  router->Add("POST", "/v1/topics/{topic}/groups/{group}/fetch",
              [this](ApiRequest request, Responder responder) {
                // Parsing and the group lookup block briefly: on a worker.
                net::post(workers_, [this, request = std::move(request), responder] {
                  try {
                    Fetch(request, responder);
                  } catch (const std::exception& e) {
                    responder.Send(ErrorResponse(absl::InternalError(e.what())));
                  }
                });
              });
}

// ---- health

ApiResponse BrokerApi::Healthz(const ApiRequest& /*request*/) {
  json::object body;
  body["status"] = "ok";
  return JsonResponse(200, body);
}

ApiResponse BrokerApi::Readyz(const ApiRequest& /*request*/) {
  if (!ready()) {
    return ErrorResponse(ApiError(absl::StatusCode::kUnavailable, kNotReady,
                                  "the broker is still opening and recovering its data"));
  }
  json::object body;
  body["status"] = "ready";
  return JsonResponse(200, body);
}

BrokerSnapshot BrokerApi::Snapshot() const {
  BrokerSnapshot snapshot;
  broker::Broker* broker = broker_.load(std::memory_order_acquire);
  broker::GroupRegistry* groups = groups_.load(std::memory_order_acquire);
  snapshot.ready = broker != nullptr;
  snapshot.waiting_fetches = static_cast<int64_t>(polls_.size());
  if (broker == nullptr) return snapshot;
  for (const std::string& name : broker->ListTopics()) {
    absl::StatusOr<std::shared_ptr<broker::Topic>> topic = broker->GetTopic(name);
    if (!topic.ok()) continue;  // deleted meanwhile
    snapshot.topics.push_back((*topic)->Describe());
    for (const std::string& group : groups->ListGroups(name)) {
      absl::StatusOr<broker::GroupDescription> g = groups->DescribeGroup(name, group);
      if (g.ok()) snapshot.groups.push_back(*std::move(g));
    }
  }
  return snapshot;
}

ApiResponse BrokerApi::MetricsText(const ApiRequest& /*request*/) {
  ApiResponse response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = metrics_->Render(Snapshot());
  return response;
}

// ---- helpers

absl::StatusOr<json::object> BrokerApi::Body(const ApiRequest& request, absl::string_view what,
                                             bool empty_is_object) const {
  if (!request.content_type.empty()) {
    absl::string_view media = request.content_type;
    media = media.substr(0, media.find(';'));
    if (absl::AsciiStrToLower(absl::StripAsciiWhitespace(media)) != "application/json") {
      return ApiError(absl::StatusCode::kInvalidArgument, kUnsupportedMediaType,
                      absl::StrCat("Content-Type \"", request.content_type,
                                   "\" is not supported; send application/json"));
    }
  }
  return ParseJsonObject(request.body, what, empty_is_object);
}

absl::StatusOr<std::shared_ptr<broker::Topic>> BrokerApi::FindTopic(absl::string_view name) const {
  ONCE_RETURN_IF_ERROR(AsNameError(broker::ValidateTopicName(name)));
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic =
      broker_.load(std::memory_order_acquire)->GetTopic(name);
  if (absl::IsNotFound(topic.status())) {
    return ApiError(absl::StatusCode::kNotFound, kTopicNotFound,
                    absl::StrCat("topic \"", name, "\" not found"));
  }
  return topic;
}

absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> BrokerApi::FindGroup(
    absl::string_view topic, absl::string_view name) const {
  ONCE_RETURN_IF_ERROR(FindTopic(topic).status());
  ONCE_RETURN_IF_ERROR(AsNameError(broker::ValidateGroupName(name)));
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group =
      groups_.load(std::memory_order_acquire)->GetGroup(topic, name);
  if (absl::IsNotFound(group.status())) {
    return WithApiCode(group.status(), kGroupNotFound);
  }
  return group;
}

absl::Status BrokerApi::CheckMessageSizes(const broker::Topic& topic,
                                          const std::vector<broker::Record>& records) {
  const int64_t limit = topic.config().max_message_bytes;
  for (size_t i = 0; i < records.size(); ++i) {
    const int64_t size = static_cast<int64_t>(records[i].PayloadBytes());
    if (size > limit) {
      return ApiError(
          absl::StatusCode::kInvalidArgument, kMessageTooLarge,
          absl::StrCat("message ", i, " is ", size,
                       " bytes (key, value, headers and idempotency key); topic \"", topic.name(),
                       "\" allows at most ", limit, " (max_message_bytes)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<broker::PublishResult>> BrokerApi::PublishRecords(
    const std::shared_ptr<broker::Topic>& topic, std::vector<broker::Record> records) {
  const broker::TopicConfig& config = topic->config();
  ONCE_RETURN_IF_ERROR(CheckMessageSizes(*topic, records));
  int64_t bytes = 0;
  for (const broker::Record& r : records) bytes += static_cast<int64_t>(r.PayloadBytes());
  const int64_t count = static_cast<int64_t>(records.size());
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<broker::PublishResult>> results = topic->Publish(std::move(records));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!results.ok()) {
    metrics_->CountPublishError(topic->name());
    return results.status();
  }
  int64_t duplicates = 0;
  for (const broker::PublishResult& r : *results) duplicates += r.duplicate ? 1 : 0;
  metrics_->CountPublish(topic->name(), config.backend, count, duplicates, bytes, seconds);
  // Durable now: wake the topic's waiting consumers.
  groups_.load(std::memory_order_acquire)->NotifyPublished(topic->name());
  return results;
}

absl::StatusOr<broker::AckResult> BrokerApi::AckTokens(
    const std::shared_ptr<broker::ConsumerGroup>& group, const std::vector<std::string>& tokens,
    bool nack, bool requeue) {
  const broker::NackAction action =
      requeue ? broker::NackAction::kRequeue : broker::NackAction::kDeadLetter;
  return Counted(*group, nack, nack ? group->Nack(tokens, action) : group->Ack(tokens));
}

absl::StatusOr<broker::AckResult> BrokerApi::AckHandles(
    const std::shared_ptr<broker::ConsumerGroup>& group,
    absl::Span<const broker::DeliveryToken> handles, bool nack, bool requeue) {
  const broker::NackAction action =
      requeue ? broker::NackAction::kRequeue : broker::NackAction::kDeadLetter;
  return Counted(*group, nack,
                 nack ? group->NackHandles(handles, action) : group->AckHandles(handles));
}

absl::StatusOr<broker::AckResult> BrokerApi::Counted(const broker::ConsumerGroup& group, bool nack,
                                                     absl::StatusOr<broker::AckResult> result) {
  if (!result.ok()) {
    absl::Status s = result.status();
    if (absl::IsNotFound(s)) s = WithApiCode(std::move(s), kGroupNotFound);
    return s;
  }
  const int64_t refused = static_cast<int64_t>(result->refused.size());
  if (nack) {
    metrics_->CountNacked(group.topic_name(), group.name(), result->applied, refused);
  } else {
    metrics_->CountAcked(group.topic_name(), group.name(), result->applied, refused);
  }
  return result;
}

absl::Status BrokerApi::RefusalStatus(const broker::AckResult& result) {
  absl::Status status = result.ToStatus();
  if (status.ok()) return status;
  // Per-token judgement: the valid tokens were applied; say which were not.
  return WithApiCode(status, absl::IsInvalidArgument(status) ? kInvalidTokens : kStaleTokens);
}

absl::Status BrokerApi::FetchError(absl::Status status) {
  if (absl::IsNotFound(status)) return WithApiCode(std::move(status), kGroupNotFound);
  return status;
}

// ---- topics

ApiResponse BrokerApi::ListTopics(const ApiRequest& /*request*/) {
  broker::Broker* broker = broker_.load(std::memory_order_acquire);
  json::array topics;
  for (const std::string& name : broker->ListTopics()) {
    absl::StatusOr<std::shared_ptr<broker::Topic>> topic = broker->GetTopic(name);
    if (!topic.ok()) continue;  // deleted meanwhile
    const broker::TopicConfig& c = (*topic)->config();
    json::object t;
    t["name"] = name;
    t["partitions"] = c.partitions;
    t["backend"] = std::string(broker::BackendName(c.backend));
    t["fsync"] = std::string(broker::FsyncPolicyName(c.fsync));
    topics.push_back(std::move(t));
  }
  json::object body;
  body["topics"] = std::move(topics);
  return JsonResponse(200, body);
}

ApiResponse BrokerApi::CreateTopic(const ApiRequest& request) {
  const std::string& name = request.param("topic");
  if (absl::Status s = AsNameError(broker::ValidateTopicName(name)); !s.ok()) {
    return ErrorResponse(s);
  }
  absl::StatusOr<json::object> body = Body(request, "topic settings", /*empty_is_object=*/true);
  if (!body.ok()) return ErrorResponse(body.status());
  absl::StatusOr<broker::TopicConfig> config = TopicConfigFromJson(*body, options_.default_topic);
  if (!config.ok()) return ErrorResponse(config.status());
  broker::Broker* broker = broker_.load(std::memory_order_acquire);
  absl::StatusOr<broker::CreateOutcome> outcome = broker->CreateTopic(name, *config);
  if (!outcome.ok()) {
    absl::Status s = outcome.status();
    if (absl::IsFailedPrecondition(s)) s = WithApiCode(std::move(s), kTopicExists);
    return ErrorResponse(AsFieldError(std::move(s)));
  }
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = broker->GetTopic(name);
  if (!topic.ok()) return ErrorResponse(topic.status());  // deleted at once by another request
  const std::vector<std::string> groups = groups_.load()->ListGroups(name);
  return JsonResponse(*outcome == broker::CreateOutcome::kCreated ? 201 : 200,
                      TopicDescriptionToJson((*topic)->Describe(), groups));
}

ApiResponse BrokerApi::DescribeTopic(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = FindTopic(request);
  if (!topic.ok()) return ErrorResponse(topic.status());
  const std::vector<std::string> groups = groups_.load()->ListGroups((*topic)->name());
  return JsonResponse(200, TopicDescriptionToJson((*topic)->Describe(), groups));
}

ApiResponse BrokerApi::DeleteTopic(const ApiRequest& request) {
  const std::string& name = request.param("topic");
  if (absl::Status s = AsNameError(broker::ValidateTopicName(name)); !s.ok()) {
    return ErrorResponse(s);
  }
  absl::Status s = broker_.load()->DeleteTopic(name);
  if (absl::IsNotFound(s)) {
    return ErrorResponse(ApiError(absl::StatusCode::kNotFound, kTopicNotFound,
                                  absl::StrCat("topic \"", name, "\" not found")));
  }
  if (!s.ok()) return ErrorResponse(s);
  // The topic is gone: its groups go too (their tokens become invalid).
  if (absl::Status g = groups_.load()->DeleteTopicGroups(name); !g.ok()) {
    spdlog::error("topic \"{}\" deleted, but deleting its groups failed: {}", name, g.ToString());
  }
  json::object body;
  body["topic"] = name;
  body["deleted"] = true;
  return JsonResponse(200, body);
}

ApiResponse BrokerApi::Publish(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = FindTopic(request);
  if (!topic.ok()) return ErrorResponse(topic.status());
  absl::StatusOr<json::object> body = Body(request, "the publish request", false);
  if (!body.ok()) return ErrorResponse(body.status());
  absl::StatusOr<std::vector<broker::Record>> records = PublishRequestFromJson(
      *body, request.has_idempotency_key ? &request.idempotency_key : nullptr);
  if (!records.ok()) return ErrorResponse(records.status());
  absl::StatusOr<std::vector<broker::PublishResult>> results =
      PublishRecords(*topic, *std::move(records));
  if (!results.ok()) return ErrorResponse(results.status());
  ApiResponse response;
  response.body = PublishResultsBody(*results);  // no DOM: see ws_frames.h
  return response;
}

// ---- groups

ApiResponse BrokerApi::ListGroups(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = FindTopic(request);
  if (!topic.ok()) return ErrorResponse(topic.status());
  json::array names;
  for (const std::string& name : groups_.load()->ListGroups((*topic)->name())) {
    names.push_back(json::string(name));
  }
  json::object body;
  body["groups"] = std::move(names);
  return JsonResponse(200, body);
}

ApiResponse BrokerApi::CreateGroup(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::Topic>> topic = FindTopic(request);
  if (!topic.ok()) return ErrorResponse(topic.status());
  const std::string& name = request.param("group");
  if (absl::Status s = AsNameError(broker::ValidateGroupName(name)); !s.ok()) {
    return ErrorResponse(s);
  }
  absl::StatusOr<json::object> body = Body(request, "group settings", /*empty_is_object=*/true);
  if (!body.ok()) return ErrorResponse(body.status());
  absl::StatusOr<broker::GroupConfig> config = GroupConfigFromJson(*body);
  if (!config.ok()) return ErrorResponse(config.status());
  broker::GroupRegistry* groups = groups_.load();
  absl::StatusOr<broker::CreateOutcome> outcome =
      groups->CreateGroup((*topic)->name(), name, *config);
  if (!outcome.ok()) {
    absl::Status s = outcome.status();
    if (absl::IsFailedPrecondition(s)) s = WithApiCode(std::move(s), kGroupExists);
    if (absl::IsNotFound(s)) s = WithApiCode(std::move(s), kTopicNotFound);
    return ErrorResponse(AsFieldError(std::move(s)));
  }
  absl::StatusOr<broker::GroupDescription> description =
      groups->DescribeGroup((*topic)->name(), name);
  if (!description.ok()) return ErrorResponse(description.status());
  return JsonResponse(*outcome == broker::CreateOutcome::kCreated ? 201 : 200,
                      GroupDescriptionToJson(*description));
}

ApiResponse BrokerApi::DescribeGroup(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = FindGroup(request);
  if (!group.ok()) return ErrorResponse(group.status());
  return JsonResponse(200, GroupDescriptionToJson((*group)->Describe()));
}

ApiResponse BrokerApi::DeleteGroup(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = FindGroup(request);
  if (!group.ok()) return ErrorResponse(group.status());
  absl::Status s = groups_.load()->DeleteGroup(request.param("topic"), request.param("group"));
  if (absl::IsNotFound(s)) s = WithApiCode(std::move(s), kGroupNotFound);
  if (!s.ok()) return ErrorResponse(s);
  json::object body;
  body["topic"] = request.param("topic");
  body["group"] = request.param("group");
  body["deleted"] = true;
  return JsonResponse(200, body);
}

void BrokerApi::Fetch(const ApiRequest& request, const Responder& responder) {
  if (!ready()) {
    responder.Send(ErrorResponse(ApiError(absl::StatusCode::kUnavailable, kNotReady,
                                          "the broker is still opening; retry shortly")));
    return;
  }
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = FindGroup(request);
  if (!group.ok()) {
    responder.Send(ErrorResponse(group.status()));
    return;
  }
  absl::StatusOr<json::object> body = Body(request, "the fetch request", false);
  if (!body.ok()) {
    responder.Send(ErrorResponse(body.status()));
    return;
  }
  absl::StatusOr<FetchRequest> fetch = FetchRequestFromJson(*body, options_.limits.max_wait_ms);
  if (!fetch.ok()) {
    responder.Send(ErrorResponse(fetch.status()));
    return;
  }
  if (absl::Status s = broker::ValidateConsumerId(fetch->consumer); !s.ok()) {
    responder.Send(
        ErrorResponse(WithApiCode(absl::InvalidArgumentError(absl::StrCat(
                                      "the fetch request: field \"consumer\": ", s.message())),
                                  kInvalidField)));
    return;
  }
  if ((*group)->config().guarantee == broker::Guarantee::kExactlyOnce) {
    responder.Send(ErrorResponse(
        ApiError(absl::StatusCode::kFailedPrecondition, kExactlyOnceGroup,
                 absl::StrCat("group \"", (*group)->name(),
                              "\" is exactly-once: it delivers only "
                              "through participant sessions on /v1/ws, not by HTTP fetch"))));
    return;
  }
  const std::string topic = (*group)->topic_name();
  const std::string group_name = (*group)->name();
  auto poll = std::make_shared<LongPoll>(
      ioc_, workers_, &polls_, broker_.load()->options().clock, *group, fetch->consumer, fetch->max,
      std::chrono::milliseconds(fetch->wait_ms),
      [this, responder, topic, group_name](LongPoll::Result result) {
        if (!result.ok()) {
          responder.Send(ErrorResponse(FetchError(result.status())));
          return;
        }
        int64_t redelivered = 0;
        for (const broker::Delivery& d : *result) redelivered += d.delivery_count > 1 ? 1 : 0;
        if (!result->empty()) {
          metrics_->CountDelivered(topic, group_name, static_cast<int64_t>(result->size()),
                                   redelivered);
        }
        ApiResponse response;
        response.body = DeliveriesBody(topic, *result);  // no DOM: see ws_frames.h
        responder.Send(std::move(response));
      });
  poll->Start();
}

ApiResponse BrokerApi::AckOrNack(const ApiRequest& request, bool nack) {
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = FindGroup(request);
  if (!group.ok()) return ErrorResponse(group.status());
  absl::StatusOr<json::object> body =
      Body(request, nack ? "the nack request" : "the ack request", false);
  if (!body.ok()) return ErrorResponse(body.status());
  absl::StatusOr<TokensRequest> tokens = TokensRequestFromJson(*body, nack);
  if (!tokens.ok()) return ErrorResponse(tokens.status());
  absl::StatusOr<broker::AckResult> result =
      AckTokens(*group, tokens->tokens, nack, tokens->requeue);
  if (!result.ok()) return ErrorResponse(result.status());
  const absl::Status refused = RefusalStatus(*result);
  if (refused.ok()) return JsonResponse(200, AckResultToJson(*result));
  return ErrorResponse(refused, AckResultToJson(*result));
}

ApiResponse BrokerApi::Ack(const ApiRequest& request) { return AckOrNack(request, false); }

ApiResponse BrokerApi::Nack(const ApiRequest& request) { return AckOrNack(request, true); }

ApiResponse BrokerApi::Reset(const ApiRequest& request) {
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = FindGroup(request);
  if (!group.ok()) return ErrorResponse(group.status());
  absl::StatusOr<json::object> body = Body(request, "the reset request", false);
  if (!body.ok()) return ErrorResponse(body.status());
  absl::StatusOr<ResetRequest> reset = ResetRequestFromJson(*body);
  if (!reset.ok()) return ErrorResponse(reset.status());
  const int partitions = (*group)->topic()->partition_count();
  if (reset->partition >= partitions) {
    return ErrorResponse(ApiError(
        absl::StatusCode::kInvalidArgument, kInvalidField,
        absl::StrCat("the reset request: field \"partition\" is ", reset->partition, "; topic \"",
                     (*group)->topic_name(), "\" has ", partitions, " partition(s)")));
  }
  absl::Status s = (*group)->Reset(reset->to, reset->partition);
  if (absl::IsNotFound(s)) s = WithApiCode(std::move(s), kGroupNotFound);
  if (!s.ok()) return ErrorResponse(AsFieldError(std::move(s)));
  return JsonResponse(200, GroupDescriptionToJson((*group)->Describe()));
}

}  // namespace once::coordinator
