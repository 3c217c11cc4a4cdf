// once-load: a load generator for a running onced (the service's
// benchmark). It creates its own topic and shared group over HTTP, runs
// N publishing and N consuming connections (WebSocket or HTTP) at once,
// stamps each message's publish time in its payload to measure end-to-end
// latency (publish call -> delivery at the consumer), and prints one
// result line: published and consumed+acked msg/s, p50/p99/p999 latency.
//
// Phases: setup; publish for --duration-s; stop publishing and wait (up
// to --drain-timeout-s) until every published message was acked; report.
// Rates are over the time from the start to the last confirmation of
// each kind. With --backlog the consumers start only once publishing is
// over, and the consume rate is from their start. Exit status: 0 when the
// run had no error, 1 when it had (the first is printed on stderr), 2 for
// bad flags.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "tests/bench/load_http.h"
#include "tests/bench/load_http_roles.h"
#include "tests/bench/load_options.h"
#include "tests/bench/load_stats.h"
#include "tests/bench/load_ws.h"

namespace once::load {
namespace {

namespace http = boost::beast::http;
namespace net = boost::asio;

constexpr std::chrono::milliseconds kAdminTimeout(30'000);
constexpr std::chrono::seconds kOpenTimeout(15);
constexpr std::chrono::seconds kPublishersStopTimeout(60);
constexpr std::chrono::milliseconds kPollStep(5);

absl::Status Setup(const LoadOptions& o, const std::string& topic, const std::string& group) {
  absl::StatusOr<std::unique_ptr<HttpClient>> admin =
      HttpClient::Connect(o.host, o.port, kAdminTimeout);
  if (!admin.ok()) return admin.status();
  // A service just started may still be recovering its data.
  const auto ready_deadline = std::chrono::steady_clock::now() + kAdminTimeout;
  for (;;) {
    absl::StatusOr<HttpReply> ready =
        (*admin)->Request(http::verb::get, "/readyz", "", kAdminTimeout);
    if (!ready.ok()) return ready.status();
    if (ready->status == 200) break;
    if (std::chrono::steady_clock::now() >= ready_deadline) {
      return absl::UnavailableError(absl::StrCat("the service is not ready after ",
                                                 kAdminTimeout.count(), " ms: ", ready->body));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string body =
      absl::StrCat("{\"partitions\":", o.partitions, ",\"backend\":\"", o.backend, "\"");
  if (o.backend == "disk") absl::StrAppend(&body, ",\"fsync\":\"", o.fsync, "\"");
  body += "}";
  absl::Status s =
      ExpectStatus((*admin)->Request(http::verb::put, "/v1/topics/" + topic, body, kAdminTimeout),
                   "creating topic " + topic, 201, 200);
  if (!s.ok()) return s;
  // Leases long enough that nothing is redelivered during a run, and a
  // prefetch that never limits the credits.
  return ExpectStatus(
      (*admin)->Request(http::verb::put, absl::StrCat("/v1/topics/", topic, "/groups/", group),
                        "{\"mode\":\"shared\",\"ack_timeout_ms\":600000,\"prefetch\":100000,"
                        "\"max_deliveries\":100}",
                        kAdminTimeout),
      "creating group " + group, 201, 200);
}

void DeleteTopic(const LoadOptions& o, const std::string& topic) {
  absl::StatusOr<std::unique_ptr<HttpClient>> admin =
      HttpClient::Connect(o.host, o.port, kAdminTimeout);
  absl::Status s = admin.status();
  if (s.ok()) {
    s = ExpectStatus(
        (*admin)->Request(http::verb::delete_, "/v1/topics/" + topic, "", kAdminTimeout),
        "deleting topic " + topic, 200);
  }
  if (!s.ok()) std::fprintf(stderr, "once-load: %s\n", s.ToString().c_str());
}

// Waits, polling, until `done` or `timeout`; true when done.
template <typename Done>
bool WaitFor(Done done, std::chrono::nanoseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollStep);
  }
  return true;
}

std::chrono::nanoseconds Seconds(double s) {
  return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
}

// Publishing for the duration, then draining; common to both transports.
void PublishPhase(const LoadOptions& o, RunCounters* c) {
  std::this_thread::sleep_for(Seconds(o.duration_s));
  c->stop_publishing.store(true);
}

void DrainPhase(const LoadOptions& o, RunCounters* c) {
  WaitFor([&] { return c->acked.load() >= c->published.load(); }, Seconds(o.drain_timeout_s));
  c->stop_consuming.store(true);
}

absl::Status RunWebSocket(const LoadOptions& o, const std::string& topic, const std::string& group,
                          RunCounters* c, std::vector<int64_t>* latencies) {
  std::vector<std::unique_ptr<net::io_context>> iocs;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.client_threads; ++i) {
    iocs.push_back(std::make_unique<net::io_context>(1));
    guards.push_back(net::make_work_guard(*iocs.back()));
  }
  for (auto& ioc : iocs) threads.emplace_back([&ioc] { ioc->run(); });
  std::vector<std::shared_ptr<WsConnection>> publishers, consumers;
  std::atomic<int> ready{0};
  for (int i = 0; i < o.connections; ++i) {
    net::io_context& pi = *iocs[(2 * i) % iocs.size()];
    net::io_context& ci = *iocs[(2 * i + 1) % iocs.size()];
    consumers.push_back(std::make_shared<WsConnection>(
        ci, o, topic, group, WsConnection::Role::kConsumer, i, o.connections, c));
    publishers.push_back(std::make_shared<WsConnection>(
        pi, o, topic, group, WsConnection::Role::kPublisher, i, o.connections, c));
    net::post(ci, [conn = consumers.back(), &ready] { conn->Open(&ready); });
    net::post(pi, [conn = publishers.back(), &ready] { conn->Open(&ready); });
  }
  absl::Status status;
  if (!WaitFor([&] { return ready.load() == 2 * o.connections; }, kOpenTimeout)) {
    status = absl::DeadlineExceededError("opening the WebSocket connections timed out");
  } else if (c->errors.load() > 0) {
    status = absl::UnavailableError(c->first_error());
  }
  if (status.ok()) {
    c->start_nanos.store(NowNanos());
    auto begin_consumers = [&] {
      c->consume_start_nanos.store(NowNanos());
      for (auto& conn : consumers) conn->Begin();
    };
    if (!o.backlog) begin_consumers();
    for (auto& conn : publishers) conn->Begin();
    PublishPhase(o, c);
    const bool stopped = WaitFor(
        [&] {
          for (auto& p : publishers) {
            if (!p->done()) return false;
          }
          return true;
        },
        kPublishersStopTimeout);
    if (!stopped) c->Error("publishers still had unanswered publishes after 60 s");
    if (o.backlog) begin_consumers();
    DrainPhase(o, c);
  }
  for (auto& conn : publishers) conn->Close();
  for (auto& conn : consumers) conn->Close();
  guards.clear();
  // Closing completes every pending operation; a bounded wait, then stop.
  WaitFor(
      [&] { return std::all_of(iocs.begin(), iocs.end(), [](auto& i) { return i->stopped(); }); },
      std::chrono::seconds(5));
  for (auto& ioc : iocs) ioc->stop();
  for (auto& t : threads) t.join();
  for (auto& conn : consumers) {
    latencies->insert(latencies->end(), conn->latencies().begin(), conn->latencies().end());
  }
  return status;
}

absl::Status RunHttp(const LoadOptions& o, const std::string& topic, const std::string& group,
                     RunCounters* c, std::vector<int64_t>* latencies) {
  c->start_nanos.store(NowNanos());
  std::vector<std::vector<int64_t>> per_consumer(o.connections);
  std::vector<std::thread> publishers, consumers;
  for (int i = 0; i < o.connections; ++i) {
    consumers.emplace_back([&, i] { RunHttpConsumer(o, topic, group, i, c, &per_consumer[i]); });
    publishers.emplace_back([&, i] { RunHttpPublisher(o, topic, i, o.connections, c); });
  }
  PublishPhase(o, c);
  for (auto& t : publishers) t.join();
  DrainPhase(o, c);
  for (auto& t : consumers) t.join();
  for (auto& v : per_consumer) latencies->insert(latencies->end(), v.begin(), v.end());
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(LoadUsage().c_str(), stdout);
      return 0;
    }
  }
  absl::StatusOr<LoadOptions> options = ParseLoadOptions(args);
  if (!options.ok()) {
    std::fprintf(stderr, "once-load: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  const LoadOptions& o = *options;
  const std::string topic =
      o.topic.empty() ? absl::StrCat("once-load-", ::getpid(), "-", NowNanos() % 1'000'000'000)
                      : o.topic;
  const std::string group = "load";
  if (absl::Status s = Setup(o, topic, group); !s.ok()) {
    std::fprintf(stderr, "once-load: setup: %s\n", s.ToString().c_str());
    return 1;
  }
  RunCounters counters;
  std::vector<int64_t> latencies;
  absl::Status run = o.transport == Transport::kWebSocket
                         ? RunWebSocket(o, topic, group, &counters, &latencies)
                         : RunHttp(o, topic, group, &counters, &latencies);
  if (!run.ok()) counters.Error(run.ToString());
  LoadResult r;
  r.options = o;
  const int64_t start = counters.start_nanos.load();
  r.publish_seconds = std::max<int64_t>(0, counters.last_publish_nanos.load() - start) / 1e9;
  const int64_t consume_start =
      counters.consume_start_nanos.load() > 0 ? counters.consume_start_nanos.load() : start;
  r.consume_seconds = std::max<int64_t>(0, counters.last_ack_nanos.load() - consume_start) / 1e9;
  r.published = counters.published.load();
  r.consumed = counters.consumed.load();
  r.acked = counters.acked.load();
  r.errors = counters.errors.load();
  r.latency = ComputePercentiles(&latencies);
  std::printf("%s\n", FormatResult(r, o.json).c_str());
  std::fflush(stdout);
  if (!o.keep_topic) DeleteTopic(o, topic);
  if (r.errors > 0) {
    std::fprintf(stderr, "once-load: %lld error(s); the first: %s\n",
                 static_cast<long long>(r.errors), counters.first_error().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace once::load

int main(int argc, char** argv) { return once::load::Main(argc, argv); }
