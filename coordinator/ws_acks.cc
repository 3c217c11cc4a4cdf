// WebSocketSession: ack and nack frames (see websocket_session.h). The
// tokens are settled on a worker, tried on the subscription's group or,
// without a subscription, on each of the connection's groups in turn.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "coordinator/json_codec.h"
#include "coordinator/websocket_session.h"
#include "coordinator/ws_frames.h"

namespace once::coordinator {
namespace net = boost::asio;
namespace json = boost::json;

void WebSocketSession::HandleAck(const json::object& frame, bool nack) {
  const json::value* request = RequestOf(frame);
  const char* what = nack ? "the nack frame" : "the ack frame";
  FieldReader r(frame, what);
  int64_t id = -1;
  r.Get("type");
  r.Get("request");
  const json::value* tokens_value = r.Get("tokens");
  const json::value* requeue_value = nack ? r.Get("requeue") : nullptr;
  absl::Status s = r.Int("subscription", &id, 0);
  if (s.ok()) s = r.NoOtherFields();
  absl::StatusOr<TokensRequest> tokens = TokensRequest();
  if (s.ok()) {
    // In the frame's arena: the copies cost no heap allocation.
    json::object body(frame.storage());
    if (tokens_value != nullptr) body["tokens"] = *tokens_value;
    if (requeue_value != nullptr) body["requeue"] = *requeue_value;
    tokens = TokensRequestFromJson(body, nack);
    s = tokens.status();
  }
  // The groups to try, in order: the subscription's, or every one's.
  std::vector<std::shared_ptr<broker::ConsumerGroup>> groups;
  if (s.ok()) {
    if (id >= 0) {
      absl::StatusOr<Subscription*> found = FindSubscription(id);
      s = found.status();
      if (s.ok()) groups.push_back((*found)->group);
    } else {
      for (const auto& [sid, sub] : subscriptions_) {
        if (std::find(groups.begin(), groups.end(), sub.group) == groups.end()) {
          groups.push_back(sub.group);
        }
      }
      if (groups.empty()) {
        s = WsFrameError(absl::StrCat(what, ": no subscription on this connection to ",
                                      nack ? "nack" : "ack", " for"));
      }
    }
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }
  // The client has handed these back: not ours to release any more,
  // whatever the answer.
  for (auto& [sid, sub] : subscriptions_) {
    for (const std::string& t : tokens->tokens) sub.outstanding.erase(t);
  }
  // Off the frame's arena: the answer comes after the frame is gone.
  json::value request_copy =
      request != nullptr ? json::value(*request, json::storage_ptr()) : json::value(nullptr);
  net::post(
      api_->workers(), [self = shared_from_this(), groups = std::move(groups),
                        tokens = *std::move(tokens), nack, request_copy = std::move(request_copy)] {
        // A token not of one group's (kInvalidArgument) is tried on the next.
        broker::AckResult total;
        std::vector<std::string> remaining = tokens.tokens;
        std::vector<size_t> index(remaining.size());
        for (size_t i = 0; i < index.size(); ++i) index[i] = i;
        absl::Status failure;
        for (size_t g = 0; g < groups.size() && !remaining.empty(); ++g) {
          absl::StatusOr<broker::AckResult> r =
              self->api_->AckTokens(groups[g], remaining, nack, tokens.requeue);
          if (!r.ok()) {
            failure = r.status();
            break;
          }
          total.applied += r->applied;
          std::vector<std::string> next;
          std::vector<size_t> next_index;
          for (broker::TokenRefusal& refusal : r->refused) {
            const size_t original = index[refusal.index];
            if (absl::IsInvalidArgument(refusal.status) && g + 1 < groups.size()) {
              next.push_back(std::move(refusal.token));
              next_index.push_back(original);
            } else {
              refusal.index = original;
              total.refused.push_back(std::move(refusal));
            }
          }
          remaining = std::move(next);
          index = std::move(next_index);
        }
        std::sort(total.refused.begin(), total.refused.end(),
                  [](const broker::TokenRefusal& a, const broker::TokenRefusal& b) {
                    return a.index < b.index;
                  });
        net::post(self->ws_.get_executor(),
                  [self, total = std::move(total), failure = std::move(failure),
                   request_copy = std::move(request_copy)] {
                    const json::value* request = request_copy.is_null() ? nullptr : &request_copy;
                    if (!failure.ok()) {
                      self->SendError(failure, request);
                      return;
                    }
                    if (request != nullptr) {
                      // Confirmed once durable, with the per-token judgement.
                      json::object answer;
                      answer["type"] = "acked";
                      answer["request"] = *request;
                      for (auto& field : AckResultToJson(total))
                        answer[field.key()] = std::move(field.value());
                      self->Send(answer);
                      return;
                    }
                    const absl::Status refused = BrokerApi::RefusalStatus(total);
                    if (!refused.ok()) self->SendError(refused, nullptr, AckResultToJson(total));
                  });
      });
}

}  // namespace once::coordinator
