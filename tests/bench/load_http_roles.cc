#include "tests/bench/load_http_roles.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "tests/bench/load_http.h"

namespace once::load {
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

constexpr std::chrono::milliseconds kConnectTimeout(10'000);
// Generous: a publish waits for its fsync, a fetch for up to kFetchWaitMs.
constexpr std::chrono::milliseconds kRequestTimeout(30'000);
constexpr int kFetchWaitMs = 100;

std::string PublishBody(int messages, int message_bytes) {
  const std::string payload = MakePayload(NowNanos(), message_bytes);
  std::string body = "{\"messages\":[";
  for (int i = 0; i < messages; ++i) {
    if (i > 0) body.push_back(',');
    absl::StrAppend(&body, "{\"value\":\"", payload, "\"}");
  }
  body += "]}";
  return body;
}

}  // namespace

void RunHttpPublisher(const LoadOptions& options, const std::string& topic, int index, int count,
                      RunCounters* counters) {
  absl::StatusOr<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(options.host, options.port, kConnectTimeout);
  if (!client.ok()) {
    counters->Error(client.status().ToString());
    return;
  }
  const std::string target = absl::StrCat("/v1/topics/", topic, "/messages");
  const double per_ns = options.rate / count / 1e9;
  const int64_t begin = counters->start_nanos.load() +
                        (options.rate > 0 ? static_cast<int64_t>(1e9 / options.rate * index) : 0);
  int64_t sent = 0;
  while (!counters->stop_publishing.load(std::memory_order_relaxed)) {
    int messages = options.batch;
    if (options.rate > 0) {
      const int64_t now = NowNanos();
      const int64_t due =
          now < begin ? 0 : static_cast<int64_t>(std::floor((now - begin) * per_ns)) + 1;
      if (sent >= due) {
        const int64_t next = begin + static_cast<int64_t>(std::ceil(sent / per_ns));
        std::this_thread::sleep_for(std::chrono::nanoseconds(
            std::clamp<int64_t>(next - now, 0, 10'000'000)));  // wake to see stop
        continue;
      }
      messages = static_cast<int>(std::min<int64_t>(options.batch, due - sent));
    }
    absl::StatusOr<HttpReply> reply = (*client)->Request(
        http::verb::post, target, PublishBody(messages, options.message_bytes), kRequestTimeout);
    sent += messages;
    if (absl::Status s = ExpectStatus(reply, "publish", 200); !s.ok()) {
      counters->Error(s.ToString());
      if (!reply.ok()) return;
      continue;
    }
    counters->published.fetch_add(messages, std::memory_order_relaxed);
    counters->last_publish_nanos.store(NowNanos(), std::memory_order_relaxed);
  }
}

void RunHttpConsumer(const LoadOptions& options, const std::string& topic, const std::string& group,
                     int index, RunCounters* counters, std::vector<int64_t>* latencies) {
  absl::StatusOr<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(options.host, options.port, kConnectTimeout);
  if (!client.ok()) {
    counters->Error(client.status().ToString());
    return;
  }
  const std::string base = absl::StrCat("/v1/topics/", topic, "/groups/", group);
  const std::string fetch_body =
      absl::StrCat("{\"consumer\":\"once-load-", index, "\",\"max\":", options.credits,
                   ",\"wait_ms\":", kFetchWaitMs, "}");
  std::vector<std::string> tokens;
  while (!counters->stop_consuming.load(std::memory_order_relaxed)) {
    absl::StatusOr<HttpReply> reply =
        (*client)->Request(http::verb::post, base + "/fetch", fetch_body, kRequestTimeout);
    if (absl::Status s = ExpectStatus(reply, "fetch", 200); !s.ok()) {
      counters->Error(s.ToString());
      return;
    }
    const int64_t now = NowNanos();
    boost::system::error_code ec;
    json::value v = json::parse(reply->body, ec);
    const json::value* messages =
        ec || !v.is_object() ? nullptr : v.get_object().if_contains("messages");
    if (messages == nullptr || !messages->is_array()) {
      counters->Error(absl::StrCat("fetch answer without messages: ", reply->body.substr(0, 200)));
      return;
    }
    tokens.clear();
    for (const json::value& m : messages->get_array()) {
      const json::value* value = m.is_object() ? m.get_object().if_contains("value") : nullptr;
      const json::value* token =
          m.is_object() ? m.get_object().if_contains("delivery_token") : nullptr;
      if (value == nullptr || !value->is_string() || token == nullptr || !token->is_string()) {
        counters->Error("fetched message without value or delivery_token");
        continue;
      }
      const json::string_view sv = value->get_string();
      absl::StatusOr<int64_t> sent = PayloadTime(absl::string_view(sv.data(), sv.size()));
      if (sent.ok()) {
        latencies->push_back(now - *sent);
      } else {
        counters->Error(sent.status().ToString());
      }
      tokens.emplace_back(token->get_string());
    }
    counters->consumed.fetch_add(static_cast<int64_t>(tokens.size()), std::memory_order_relaxed);
    for (size_t at = 0; at < tokens.size(); at += static_cast<size_t>(options.ack_batch)) {
      const size_t end = std::min(tokens.size(), at + static_cast<size_t>(options.ack_batch));
      std::string body = "{\"tokens\":[";
      for (size_t i = at; i < end; ++i) {
        if (i > at) body.push_back(',');
        absl::StrAppend(&body, "\"", tokens[i], "\"");
      }
      body += "]}";
      absl::StatusOr<HttpReply> acked =
          (*client)->Request(http::verb::post, base + "/ack", body, kRequestTimeout);
      if (absl::Status s = ExpectStatus(acked, "ack", 200); !s.ok()) {
        counters->Error(s.ToString());
        if (!acked.ok()) return;
        continue;
      }
      counters->acked.fetch_add(static_cast<int64_t>(end - at), std::memory_order_relaxed);
      counters->last_ack_nanos.store(NowNanos(), std::memory_order_relaxed);
    }
  }
}

}  // namespace once::load
