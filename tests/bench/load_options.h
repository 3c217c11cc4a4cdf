// The once-load driver's options (tests/bench/service_load.cc): parsed
// from the command line, checked, and described by LoadUsage().
#ifndef ONCE_TESTS_BENCH_LOAD_OPTIONS_H_
#define ONCE_TESTS_BENCH_LOAD_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace once::load {

enum class Transport { kWebSocket, kHttp };

struct LoadOptions {
  std::string host = "127.0.0.1";  // an IP literal: the driver does not resolve names
  uint16_t port = 0;
  // Publishing connections; as many again consume (so 2N sockets in all).
  int connections = 4;
  std::string backend = "disk";  // the topic's: "memory" | "disk"
  std::string fsync = "always";  // disk topics: "always" | "interval" | "never"
  int partitions = 1;
  int batch = 64;  // messages per publish frame / request (1..10000)
  double duration_s = 5;
  // Messages per second over all publishers, 0 = as fast as possible
  // (closed loop: each publisher keeps `inflight` frames outstanding).
  double rate = 0;
  Transport transport = Transport::kWebSocket;
  bool json = false;            // print the result as one JSON object
  int message_bytes = 256;      // value size; >= 16 (the timestamp)
  int inflight = 8;             // WebSocket publish frames outstanding per connection (closed loop)
  int credits = 2000;           // WebSocket credits per subscription; HTTP fetch max
  int ack_batch = 128;          // deliveries per ack
  double drain_timeout_s = 30;  // after publishing stops, wait this long for consumers
  std::string topic;            // default: a fresh "once-load-<pid>-<time>"
  bool keep_topic = false;      // else deleted at the end
  int client_threads = 1;       // WebSocket I/O threads of the driver
  // WebSocket subscriptions ask for batched delivery ("messages" frames)
  // instead of one "message" frame per delivery.
  bool ws_batch = true;
  // WebSocket subscriptions ask for delivery tags (numbers, acked with
  // one "up_to" per ack) instead of delivery tokens (each acked by its
  // 66-character text).
  bool delivery_tags = true;
  // WebSocket only: the consumers start once publishing is over, on the
  // backlog it left, so consume+ack msg/s is the consumers' own rate rather
  // than the publishers' (consumption cannot outrun publishing when both
  // run at once; consumed-vs-published figures of other brokers are taken
  // this way). Latencies then are mostly time spent in the backlog.
  bool backlog = false;
};

// Parses `args` (without the program name). Flags take "--name=value" or
// "--name value". kInvalidArgument names the flag and what is wrong.
absl::StatusOr<LoadOptions> ParseLoadOptions(const std::vector<std::string>& args);

std::string LoadUsage();

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_OPTIONS_H_
