#include "tests/bench/load_options.h"

#include <cmath>
#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/ip/address.hpp"

namespace once::load {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", what));
}

absl::Status ParseInt(absl::string_view flag, const std::string& v, int lo, int hi, int* out) {
  int n = 0;
  if (!absl::SimpleAtoi(v, &n)) return Bad(flag, absl::StrCat("\"", v, "\" is not an integer"));
  if (n < lo || n > hi) return Bad(flag, absl::StrCat(n, " is out of range ", lo, "..", hi));
  *out = n;
  return absl::OkStatus();
}

absl::Status ParseDouble(absl::string_view flag, const std::string& v, double lo, double hi,
                         double* out) {
  double d = 0;
  if (!absl::SimpleAtod(v, &d) || !std::isfinite(d)) {
    return Bad(flag, absl::StrCat("\"", v, "\" is not a number"));
  }
  if (d < lo || d > hi) return Bad(flag, absl::StrCat(v, " is out of range ", lo, "..", hi));
  *out = d;
  return absl::OkStatus();
}

absl::Status ParseBool(absl::string_view flag, const std::string& v, bool* out) {
  if (v == "true" || v == "1" || v.empty()) {
    *out = true;
  } else if (v == "false" || v == "0") {
    *out = false;
  } else {
    return Bad(flag, absl::StrCat("\"", v, "\" is not true or false"));
  }
  return absl::OkStatus();
}

absl::Status ParseUrl(const std::string& v, LoadOptions* o) {
  absl::string_view rest = v;
  if (absl::StartsWith(rest, "http://"))
    rest.remove_prefix(7);
  else if (absl::StrContains(rest, "://"))
    return Bad("url", "only http:// URLs are served");
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos) return Bad("url", absl::StrCat("\"", v, "\" has no port"));
  const std::string host(rest.substr(0, colon));
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec) return Bad("url", absl::StrCat("host \"", host, "\" is not an IP address"));
  int port = 0;
  if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return Bad("url", absl::StrCat("\"", v, "\" has no valid port (1..65535)"));
  }
  o->host = host;
  o->port = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

}  // namespace

std::string LoadUsage() {
  return "once-load: publishes and consumes through a running onced and reports rates and\n"
         "end-to-end latency.\n"
         "  --url=http://127.0.0.1:PORT   the service (required)\n"
         "  --connections=N               publishing connections; as many consume [4]\n"
         "  --topic-backend=memory|disk   [disk]\n"
         "  --fsync=always|interval|never disk topics [always]\n"
         "  --partitions=N                [1]\n"
         "  --batch=N                     messages per publish frame/request [64]\n"
         "  --duration-s=S                how long to publish [5]\n"
         "  --rate=R                      msg/s over all publishers, 0 = flat out [0]\n"
         "  --transport=ws|http           [ws]\n"
         "  --json                        print the result as JSON\n"
         "  --message-bytes=N             value size, >= 16 [256]\n"
         "  --inflight=N                  ws publish frames outstanding per connection [8]\n"
         "  --credits=N                   ws credits per subscription / http fetch max [2000]\n"
         "  --ack-batch=N                 tokens per ack [128]\n"
         "  --drain-timeout-s=S           wait for consumers after publishing [30]\n"
         "  --topic=NAME --keep-topic     use this topic name; do not delete it\n"
         "  --client-threads=N            the driver's WebSocket I/O threads [1]\n"
         "  --ws-batch=true|false         batched delivery frames (\"messages\") [true]\n"
         "  --delivery-tags=true|false    ws: ack by delivery tag (up_to), not token [true]\n"
         "  --backlog                     ws: consume only after publishing, from the backlog\n";
}

absl::StatusOr<LoadOptions> ParseLoadOptions(const std::vector<std::string>& args) {
  LoadOptions o;
  bool has_url = false;
  using Setter = std::function<absl::Status(const std::string&)>;
  const std::map<std::string, Setter> flags = {
      {"url",
       [&](const std::string& v) {
         has_url = true;
         return ParseUrl(v, &o);
       }},
      {"connections",
       [&](const std::string& v) { return ParseInt("connections", v, 1, 256, &o.connections); }},
      {"topic-backend",
       [&](const std::string& v) {
         if (v != "memory" && v != "disk") return Bad("topic-backend", "expected memory or disk");
         o.backend = v;
         return absl::OkStatus();
       }},
      {"fsync",
       [&](const std::string& v) {
         if (v != "always" && v != "interval" && v != "never") {
           return Bad("fsync", "expected always, interval or never");
         }
         o.fsync = v;
         return absl::OkStatus();
       }},
      {"partitions",
       [&](const std::string& v) { return ParseInt("partitions", v, 1, 1024, &o.partitions); }},
      {"batch", [&](const std::string& v) { return ParseInt("batch", v, 1, 10000, &o.batch); }},
      {"duration-s",
       [&](const std::string& v) {
         return ParseDouble("duration-s", v, 0.1, 3600, &o.duration_s);
       }},
      {"rate", [&](const std::string& v) { return ParseDouble("rate", v, 0, 1e8, &o.rate); }},
      {"transport",
       [&](const std::string& v) {
         if (v == "ws")
           o.transport = Transport::kWebSocket;
         else if (v == "http")
           o.transport = Transport::kHttp;
         else
           return Bad("transport", "expected ws or http");
         return absl::OkStatus();
       }},
      {"json", [&](const std::string& v) { return ParseBool("json", v, &o.json); }},
      {"message-bytes",
       [&](const std::string& v) {
         return ParseInt("message-bytes", v, 16, 1 << 20, &o.message_bytes);
       }},
      {"inflight",
       [&](const std::string& v) { return ParseInt("inflight", v, 1, 64, &o.inflight); }},
      {"credits",
       [&](const std::string& v) { return ParseInt("credits", v, 1, 10000, &o.credits); }},
      {"ack-batch",
       [&](const std::string& v) { return ParseInt("ack-batch", v, 1, 10000, &o.ack_batch); }},
      {"drain-timeout-s",
       [&](const std::string& v) {
         return ParseDouble("drain-timeout-s", v, 0, 3600, &o.drain_timeout_s);
       }},
      {"topic",
       [&](const std::string& v) {
         if (v.empty() || v.size() > 200) return Bad("topic", "1..200 characters");
         o.topic = v;
         return absl::OkStatus();
       }},
      {"keep-topic",
       [&](const std::string& v) { return ParseBool("keep-topic", v, &o.keep_topic); }},
      {"ws-batch", [&](const std::string& v) { return ParseBool("ws-batch", v, &o.ws_batch); }},
      {"delivery-tags",
       [&](const std::string& v) { return ParseBool("delivery-tags", v, &o.delivery_tags); }},
      {"backlog", [&](const std::string& v) { return ParseBool("backlog", v, &o.backlog); }},
      {"client-threads",
       [&](const std::string& v) {
         return ParseInt("client-threads", v, 1, 16, &o.client_threads);
       }},
  };
  const std::map<std::string, bool> booleans = {{"json", true},
                                                {"keep-topic", true},
                                                {"ws-batch", true},
                                                {"delivery-tags", true},
                                                {"backlog", true}};
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\"; see --help"));
    }
    arg.remove_prefix(2);
    std::string name, value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    } else {
      name = std::string(arg);
    }
    auto it = flags.find(name);
    if (it == flags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, "; see --help"));
    }
    if (!has_value && !booleans.contains(name)) {
      if (i + 1 >= args.size()) return Bad(name, "needs a value");
      value = args[++i];
    }
    if (absl::Status s = it->second(value); !s.ok()) return s;
  }
  if (!has_url) return Bad("url", "is required (http://127.0.0.1:PORT)");
  if (o.backlog && o.transport != Transport::kWebSocket) {
    return Bad("backlog", "is for --transport=ws only");
  }
  return o;
}

}  // namespace once::load
