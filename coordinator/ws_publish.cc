// WebSocketSession: publish frames (see websocket_session.h). A frame is
// checked on the strand as it arrives (its JSON lives only as long as the
// frame's parse arena), queued, and published with the frames queued
// behind it as one batch, on a worker (or, when every topic of the batch
// is a memory topic, on the strand: coordinator/network_thread_work.h);
// the answers go back in frame order.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "boost/asio/post.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/json_codec.h"
#include "coordinator/network_thread_work.h"
#include "coordinator/websocket_session.h"
#include "coordinator/ws_frames.h"
#include "schema/status_macros.h"

namespace once::coordinator {
namespace net = boost::asio;
namespace json = boost::json;

namespace {

// Fills `topic` and `records` from the frame (its "messages" are moved
// out: only its "request" is needed after), or fails with the error to
// answer.
absl::Status ParsePublish(BrokerApi* api, json::object& frame,
                          std::shared_ptr<broker::Topic>* topic,
                          std::vector<broker::Record>* records) {
  FieldReader r(frame, "the publish frame");
  std::string topic_name;
  bool has_topic = false;
  r.Get("type");
  r.Get("request");
  ONCE_RETURN_IF_ERROR(r.String("topic", &topic_name, &has_topic));
  r.Get("messages");
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (!has_topic) return r.FieldError("topic", "is required");
  // In the frame's own arena, and moved, not copied: no heap allocation.
  json::object body(frame.storage());
  if (json::value* messages = frame.if_contains("messages")) {
    body["messages"] = std::move(*messages);
  }
  ONCE_ASSIGN_OR_RETURN(*records, PublishRequestFromJson(body, nullptr));
  ONCE_ASSIGN_OR_RETURN(*topic, api->FindTopic(topic_name));
  return BrokerApi::CheckMessageSizes(**topic, *records);
}

}  // namespace

void WebSocketSession::HandlePublish(json::object& frame) {
  PendingPublish p;
  if (const json::value* request = RequestOf(frame)) p.request = json::serialize(*request);
  if (absl::Status s = ParsePublish(api_, frame, &p.topic, &p.records); !s.ok()) {
    p.answer = WsErrorFrameText(s, p.request);
  }
  publish_queue_.push_back(std::move(p));
  ++inflight_publishes_;
  if (!publishing_) StartPublishing();
}

void WebSocketSession::StartPublishing() {
  publishing_ = true;
  std::vector<PendingPublish> frames(std::make_move_iterator(publish_queue_.begin()),
                                     std::make_move_iterator(publish_queue_.end()));
  publish_queue_.clear();
  const bool here = std::all_of(frames.begin(), frames.end(), [](const PendingPublish& p) {
    return p.topic == nullptr || PublishRunsOnNetworkThread(*p.topic);
  });
  if (here) {
    OnPublished(PublishFrames(api_, std::move(frames)));
    return;
  }
  net::post(api_->workers(), [self = shared_from_this(), frames = std::move(frames)]() mutable {
    std::vector<std::string> answers = PublishFrames(self->api_, std::move(frames));
    net::post(self->ws_.get_executor(), [self, answers = std::move(answers)]() mutable {
      self->OnPublished(std::move(answers));
    });
  });
}

std::vector<std::string> WebSocketSession::PublishFrames(BrokerApi* api,
                                                         std::vector<PendingPublish> frames) {
  const size_t n = frames.size();
  std::vector<std::string> answers(n);
  for (size_t i = 0; i < n; ++i) answers[i] = std::move(frames[i].answer);
  // Consecutive frames for one topic go to the broker as one publish, in
  // frame order: one durable write for all of them.
  for (size_t i = 0; i < n;) {
    if (!answers[i].empty()) {
      ++i;
      continue;
    }
    const std::shared_ptr<broker::Topic> topic = frames[i].topic;
    std::vector<broker::Record> combined;
    std::vector<size_t> counts;
    size_t j = i;
    while (j < n && answers[j].empty() && frames[j].topic == topic &&
           (j == i || combined.size() + frames[j].records.size() <= kMaxMessagesPerPublish)) {
      counts.push_back(frames[j].records.size());
      if (combined.empty()) {
        combined = std::move(frames[j].records);
      } else {
        for (broker::Record& r : frames[j].records) combined.push_back(std::move(r));
      }
      ++j;
    }
    absl::StatusOr<std::vector<broker::PublishResult>> results =
        api->PublishRecords(topic, std::move(combined));
    size_t at = 0;
    for (size_t k = i; k < j; ++k) {
      if (!results.ok()) {
        answers[k] = WsErrorFrameText(results.status(), frames[k].request);
        continue;
      }
      const size_t count = counts[k - i];
      answers[k] =
          PublishedFrame(frames[k].request, absl::MakeConstSpan(results->data() + at, count));
      at += count;
    }
    i = j;
  }
  return answers;
}

void WebSocketSession::OnPublished(std::vector<std::string> answers) {
  publishing_ = false;
  inflight_publishes_ -= static_cast<int>(answers.size());
  for (std::string& answer : answers) SendText(std::move(answer));
  if (!publish_queue_.empty()) {
    StartPublishing();
  } else if (closing_ && inflight_publishes_ == 0 && !writing_) {
    DoClose();
  }
  MaybeResumeReading();
}

}  // namespace once::coordinator
