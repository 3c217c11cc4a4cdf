// once-load's WebSocket connections: a publisher (publish frames, closed
// loop with `inflight` frames outstanding or paced at a rate) and a
// consumer (one subscription with credits; acks in batches, each ack
// giving its credits back). Each runs on one single-threaded io_context;
// every member is touched only from that thread, except the RunCounters.
#ifndef ONCE_TESTS_BENCH_LOAD_WS_H_
#define ONCE_TESTS_BENCH_LOAD_WS_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/monotonic_resource.hpp"
#include "boost/json/object.hpp"
#include "tests/bench/load_options.h"
#include "tests/bench/load_stats.h"

namespace once::load {

class WsConnection : public std::enable_shared_from_this<WsConnection> {
 public:
  enum class Role { kPublisher, kConsumer };

  // `index` numbers the connection within its role (consumer ids, pacing).
  WsConnection(boost::asio::io_context& ioc, const LoadOptions& options, const std::string& topic,
               const std::string& group, Role role, int index, int role_count,
               RunCounters* counters);

  // Connects and shakes hands; `ready` is incremented once done (or
  // failed: then the error is counted). Call on the io_context's thread.
  void Open(std::atomic<int>* ready);
  // Starts publishing or subscribing (post to the io_context).
  void Begin();
  // Closes the socket (post to the io_context).
  void Close();

  // A publisher is done once publishing stopped and nothing is
  // outstanding; a consumer never is (the driver closes it).
  bool done() const { return done_.load(); }
  // Latency samples (consumers), nanoseconds. Read after the io_context
  // has stopped.
  std::vector<int64_t>& latencies() { return latencies_; }

 private:
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void HandleFrame(const char* data, size_t size);
  // One delivery (a "message" frame, or an element of a "messages" one).
  void HandleDelivery(const boost::json::object& m, int64_t now);
  // A delivery with its token, or (subscribed with delivery tags) its tag.
  void HandleDelivery(absl::string_view value, absl::string_view token, uint64_t tag, int64_t now);
  void Send(std::string frame);
  void DoWrite();

  // Publisher.
  void PublishMore();
  void SendPublish(int messages);
  void SchedulePaced();
  void MaybeDone();
  // Consumer.
  void Subscribe();
  void FlushAcks();

  boost::asio::io_context& ioc_;
  const LoadOptions& options_;
  const std::string topic_;
  const std::string group_;
  const Role role_;
  const int index_;
  const int role_count_;
  RunCounters* const counters_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  boost::asio::steady_timer timer_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool closed_ = false;
  std::atomic<bool> done_{false};

  // Publisher: frames sent and not answered, messages sent (paced mode).
  int outstanding_ = 0;
  int64_t next_request_ = 1;
  int64_t sent_messages_ = 0;
  int64_t begin_nanos_ = 0;

  // Consumer.
  int64_t subscription_ = -1;
  std::vector<std::string> pending_tokens_;
  int pending_tags_ = 0;  // delivery tags not acked yet, the highest:
  uint64_t last_tag_ = 0;
  bool flush_armed_ = false;
  std::vector<int64_t> latencies_;
  unsigned char parse_buffer_[64 << 10];
};

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_WS_H_
