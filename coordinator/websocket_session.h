// WebSocketSession: one /v1/ws connection (Beast chat-multi's
// websocket_session). JSON text frames, documented in
// schema/ws_protocol.md: publish, subscribe with credits, credit, ack,
// nack, unsubscribe.
//
// Flow control and bounds:
// - A subscription never receives more messages than the credits its
//   client granted (each delivered message spends one).
// - Outgoing frames wait in one queue with one write in flight. Past
//   kMaxQueuedBytes the session stops fetching for its subscriptions and
//   stops reading the client's frames until the queue drains, so a slow
//   reader cannot make the server hold more than that, plus one fetch
//   (sized to the room left at the average frame size seen; a sudden
//   switch to much larger messages can overshoot by at most
//   kMaxMessagesPerPush of them).
// - Publishes are stored and answered in frame order: the queued publish
//   frames run as one batch on a worker (memory topics: on the strand,
//   see network_thread_work.h), consecutive frames for one topic
//   as one broker publish (one durable write), and the next batch starts
//   when this one is durable. At most kMaxInflightPublishes frames wait.
// - Keepalive: Beast's idle timeout with pings; a peer that answers
//   nothing for HttpLimits::idle_timeout_ms is dropped.
//
// When the socket closes (or dies) every message delivered on it and not
// yet acked or nacked on it is released for redelivery (nack, requeue),
// and ordered subscriptions leave their group.
//
// Runs on its own strand; keeps itself alive through shared_from_this
// while an operation is pending. Broker calls run on the worker pool,
// except those that cannot wait for a disk, which run on the strand
// (coordinator/network_thread_work.h).
//
// The implementation is split by concern: websocket_session.cc (life
// cycle, reading, frame dispatch, writing, closing), ws_publish.cc
// (publish frames), ws_subscriptions.cc (subscriptions, credits and
// pushes), ws_acks.cc (ack and nack by token), ws_tag_acks.cc (ack and
// nack by delivery tag); ws_frames.h writes the frames.
#ifndef ONCE_COORDINATOR_WEBSOCKET_SESSION_H_
#define ONCE_COORDINATOR_WEBSOCKET_SESSION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/object.hpp"
#include "boost/json/value.hpp"
#include "broker/consumer_group.h"
#include "coordinator/broker_api.h"
#include "coordinator/delivery_tags.h"
#include "coordinator/json_codec.h"
#include "coordinator/long_poll.h"
#include "coordinator/participant_session.h"
#include "coordinator/server_state.h"
#include "coordinator/ws_feed.h"

namespace once::coordinator {

inline constexpr size_t kMaxSubscriptionsPerSocket = 64;
inline constexpr int64_t kMaxCredits = 100'000;  // per subscription, outstanding
inline constexpr size_t kMaxQueuedBytes = 4 << 20;
inline constexpr int kMaxInflightPublishes = 64;
// One fetch of a subscription takes at most this many messages, and no
// more than the write queue has room for at the subscription's average
// frame size (which starts at the topic's largest possible message).
inline constexpr int kMaxMessagesPerPush = 256;

class WebSocketSession : public Session, public std::enable_shared_from_this<WebSocketSession> {
 public:
  // Takes over an accepted connection and its reservation on `state`
  // (released by the destructor). `api` must be ready.
  WebSocketSession(boost::asio::ip::tcp::socket&& socket, ServerState* state, BrokerApi* api);
  ~WebSocketSession() override;

  WebSocketSession(const WebSocketSession&) = delete;
  WebSocketSession& operator=(const WebSocketSession&) = delete;

  // Completes the handshake of `upgrade` and starts reading. Call once, on
  // a shared_ptr.
  void Run(boost::beast::http::request<boost::beast::http::string_body> upgrade);

  // Thread-safe: answer the publishes in flight, then close with "going
  // away", releasing every unacked delivery.
  void Shutdown() override;

 private:
  struct Subscription {
    int64_t id = 0;
    std::string topic;
    std::string group_name;
    std::string consumer;
    std::shared_ptr<broker::ConsumerGroup> group;
    int64_t credits = 0;
    // Subscribed with "batch": each push is one "messages" frame instead
    // of one "message" frame per delivery (ws_protocol.md).
    bool batch = false;
    double average_frame_bytes = 0;  // of the frames sent so far; see Pump
    std::shared_ptr<WsFeed> feed;    // its fetches; stopped when it ends
    bool fetching = false;           // a Request is out: wait for OnDelivered
    // Delivered on this socket, not yet acked or nacked on it: released
    // if the socket goes away. Tokens, or with "delivery_tags" the tags
    // (and the handles behind them: the client never sees a token).
    absl::flat_hash_set<std::string> outstanding;
    bool tags = false;
    DeliveryTags tagged;
  };

  // A publish frame, checked, waiting for its batch: its topic and
  // records, or (when `answer` is set) the error frame that answers it.
  struct PendingPublish {
    std::string request;  // the frame's "request", serialized; empty: none
    std::string answer;
    std::shared_ptr<broker::Topic> topic;
    std::vector<broker::Record> records;
  };

  // What settling an ack or nack frame's tokens came to.
  struct Settled {
    broker::AckResult result;
    absl::Status failure;  // a group's error: the whole frame failed
  };

  void OnAccept(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, std::size_t bytes);
  void HandleFrame(absl::string_view text);
  // Checks the frame now (it lives in the per-frame arena; its messages
  // are moved out) and queues it.
  void HandlePublish(boost::json::object& frame);
  void HandleSubscribe(const boost::json::object& frame);
  void HandleCredit(const boost::json::object& frame);
  // Takes the frame's tokens (moved out of `frame`).
  void HandleAck(boost::json::object& frame, bool nack);
  // An ack or nack frame with "delivery_tags" or "up_to" (ws_tag_acks.cc):
  // takes the tags still outstanding, settles their handles, answers.
  struct TagAck;
  void HandleTagAck(const boost::json::object& frame, bool nack);
  static TagAck TakeTags(DeliveryTags& tagged, int64_t subscription, uint64_t up_to,
                         const std::vector<uint64_t>& tags);
  static void SettleTags(BrokerApi* api, const std::shared_ptr<broker::ConsumerGroup>& group,
                         bool nack, bool requeue, TagAck* ack);
  void AnswerTagAck(const TagAck& ack, const boost::json::value* request);
  // Acks or nacks `tokens` on `groups`, each tried on the next group when
  // not the previous one's.
  static Settled Settle(BrokerApi* api,
                        const std::vector<std::shared_ptr<broker::ConsumerGroup>>& groups,
                        const TokensRequest& tokens, bool nack);
  void AnswerSettled(const Settled& settled, const boost::json::value* request);
  void HandleUnsubscribe(const boost::json::object& frame);
  // hello, vote and done: the participant session (exactly-once groups).
  void HandleParticipantFrame(std::string text);
  // Queues an already encoded frame (the participant session's).
  void SendText(std::string text);

  // Starts a fetch for `sub` when it has credits and the queue has room.
  void Pump(Subscription& sub);
  void PumpAll();
  // What `feed` calls (on a worker) with the fetches of subscription `id`.
  WsFeed::Deliver FeedCallback(int64_t id, std::shared_ptr<broker::ConsumerGroup> group);
  void OnDelivered(int64_t subscription, WsFeed::Result result);
  // Gives `tokens` and `handles` back to `group` for redelivery (on a
  // worker); then `leave_consumer`, if any, leaves the group.
  void Release(std::shared_ptr<broker::ConsumerGroup> group, std::vector<std::string> tokens,
               std::vector<broker::DeliveryToken> handles, const std::string& leave_consumer);
  void EndSubscription(Subscription& sub);
  // The subscription `id` of this connection, or a subscription_not_found
  // (404) error.
  absl::StatusOr<Subscription*> FindSubscription(int64_t id);

  // Runs every queued publish frame, in order, as one batch on a worker
  // (on the strand when every topic in it is a memory topic).
  void StartPublishing();
  // Publishes `frames` and returns the answer to each, in order.
  static std::vector<std::string> PublishFrames(BrokerApi* api, std::vector<PendingPublish> frames);
  void OnPublished(std::vector<std::string> answers);
  void Send(const boost::json::object& frame);
  void SendError(const absl::Status& status, const boost::json::value* request,
                 boost::json::object extra = {});
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, std::size_t bytes);
  bool Congested() const;
  void MaybeResumeReading();

  void OnShutdown();
  void DoClose();
  void OnClose(boost::beast::error_code ec);
  // The connection is over: release everything it held.
  void Finish();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  // The arena each frame's JSON is parsed into (one frame at a time, on
  // the strand): most frames need no allocation at all. Anything kept
  // past the frame is copied to the heap.
  unsigned char parse_buffer_[16 << 10];
  ServerState* const state_;
  BrokerApi* const api_;

  // All on the strand.
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool reading_ = false;
  bool accepted_ = false;
  bool closing_ = false;  // a close was started or is wanted
  bool close_started_ = false;
  bool finished_ = false;  // Finish ran: nothing more is sent or fetched
  absl::btree_map<int64_t, Subscription> subscriptions_;
  int64_t next_subscription_ = 1;
  std::deque<PendingPublish> publish_queue_;  // frames not yet started
  bool publishing_ = false;                   // a batch is on a worker
  int inflight_publishes_ = 0;                // frames queued or in the batch
  // Created by the first participant frame (hello/vote/done).
  std::shared_ptr<ParticipantSession> participant_;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_WEBSOCKET_SESSION_H_
