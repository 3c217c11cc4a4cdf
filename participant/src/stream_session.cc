#include "participant/src/stream_session.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

namespace json = boost::json;

absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Violation(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("protocol violation: ", what));
}

absl::StatusOr<std::string> GetString(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end()) return Violation(absl::StrCat("missing field \"", A(name), "\""));
  if (!it->value().is_string()) {
    return Violation(absl::StrCat("field \"", A(name), "\" must be a string"));
  }
  return std::string(it->value().get_string());
}

absl::StatusOr<uint64_t> GetUnsigned(const json::object& o, std::string_view name,
                                     std::optional<uint64_t> fallback = std::nullopt) {
  auto it = o.find(name);
  if (it == o.end()) {
    if (fallback.has_value()) return *fallback;
    return Violation(absl::StrCat("missing field \"", A(name), "\""));
  }
  const json::value& v = it->value();
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<uint64_t>(v.get_int64());
  return Violation(absl::StrCat("field \"", A(name), "\" must be a non-negative integer"));
}

}  // namespace

absl::StatusOr<StreamMessage> DecodeStreamMessage(const json::object& o) {
  StreamMessage out;
  Message& m = out.message;
  ONCE_ASSIGN_OR_RETURN(out.subscription, GetUnsigned(o, "subscription"));
  ONCE_ASSIGN_OR_RETURN(out.tag, GetUnsigned(o, "delivery_tag"));
  if (out.tag == 0) return Violation("\"delivery_tag\" 0");
  ONCE_ASSIGN_OR_RETURN(m.id, GetString(o, "id"));
  if (m.id.empty()) return Violation("empty message \"id\"");
  ONCE_ASSIGN_OR_RETURN(const uint64_t partition, GetUnsigned(o, "partition"));
  if (partition > std::numeric_limits<uint32_t>::max()) return Violation("partition too large");
  m.partition = static_cast<uint32_t>(partition);
  ONCE_ASSIGN_OR_RETURN(m.offset, GetUnsigned(o, "offset"));
  ONCE_ASSIGN_OR_RETURN(const uint64_t count, GetUnsigned(o, "delivery_count", 1));
  m.delivery_count = static_cast<uint32_t>(std::min<uint64_t>(count, UINT32_MAX));
  ONCE_ASSIGN_OR_RETURN(const uint64_t ts, GetUnsigned(o, "timestamp_ms", 0));
  m.timestamp_ms = static_cast<int64_t>(std::min<uint64_t>(ts, INT64_MAX));
  if (auto it = o.find("key"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_string()) return Violation("field \"key\" must be a string");
    m.key = std::string(it->value().get_string());
  }
  if (auto it = o.find("headers"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_object()) return Violation("field \"headers\" must be an object");
    for (const auto& h : it->value().get_object()) {
      if (!h.value().is_string()) return Violation("every header must be a string");
      m.headers.emplace_back(std::string(h.key()), std::string(h.value().get_string()));
    }
  }
  const bool has_text = o.contains("value");
  const bool has_b64 = o.contains("value_b64");
  if (has_text == has_b64) return Violation("exactly one of \"value\" and \"value_b64\"");
  if (has_text) {
    ONCE_ASSIGN_OR_RETURN(m.value, GetString(o, "value"));
  } else {
    ONCE_ASSIGN_OR_RETURN(const std::string b64, GetString(o, "value_b64"));
    if (!absl::Base64Unescape(b64, &m.value)) return Violation("\"value_b64\" is not base64");
    m.binary = true;
  }
  return out;
}

void StreamSession::Send(json::object frame) { env_.send(json::serialize(frame)); }

size_t StreamSession::ack_batch_max() const {
  // Half the window: a burst is acked by a frame or two, and the leases
  // held unacked stay bounded. Capped so that one ack frame stays small.
  constexpr size_t kMaxAckBatch = 256;
  return std::clamp<size_t>(env_.options->window / 2, 1, kMaxAckBatch);
}

void StreamSession::Settle(uint64_t tag) {
  // The credit goes at once: it costs the server nothing durable, and
  // holding credits back starves its pushes (measured: batching credits
  // with the acks cut the at-least-once rate by a third).
  Send(json::object{{"type", "credit"}, {"subscription", subscription_}, {"credits", 1}});
  if (tag == 0) return;
  ++pending_acks_;
  last_tag_ = std::max(last_tag_, tag);
  if (pending_acks_ >= ack_batch_max()) (void)Flush();  // cannot fail
}

absl::Status StreamSession::Flush() {
  if (state_ != State::kOpen || pending_acks_ == 0) return absl::OkStatus();
  Send(json::object{{"type", "ack"}, {"subscription", subscription_}, {"up_to", last_tag_}});
  pending_acks_ = 0;
  return absl::OkStatus();
}

absl::Status StreamSession::Start() {
  const ParticipantOptions& o = *env_.options;
  Send(json::object{{"type", "subscribe"},
                    {"topic", o.topic},
                    {"group", o.group},
                    {"consumer", o.participant_id},
                    {"credits", o.window},
                    {"delivery_tags", true}});
  state_ = State::kSubscribing;
  return absl::OkStatus();
}

absl::Status StreamSession::OnFrame(absl::string_view data, bool text) {
  if (!text) return Violation(absl::StrCat("binary frame of ", data.size(), " bytes"));
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(data.data(), data.size()), ec);
  if (ec) return Violation(absl::StrCat("malformed JSON: ", ec.message()));
  if (!v.is_object()) return Violation("frame is not a JSON object");
  const json::object& o = v.get_object();
  ONCE_ASSIGN_OR_RETURN(const std::string type, GetString(o, "type"));
  if (state_ == State::kIdle) return Violation("frame before subscribe was sent");
  if (type == "subscribed") {
    if (state_ != State::kSubscribing) return Violation("a second \"subscribed\"");
    ONCE_ASSIGN_OR_RETURN(subscription_, GetUnsigned(o, "subscription"));
    state_ = State::kOpen;
    env_.stats->Update([](ParticipantStats& s) { ++s.connects; });
    return absl::OkStatus();
  }
  if (type == "message") return OnMessage(o);
  if (type == "acked") return absl::OkStatus();
  if (type == "error") {
    ONCE_ASSIGN_OR_RETURN(const std::string code, GetString(o, "code"));
    const std::string message = GetString(o, "message").value_or("");
    if (state_ == State::kOpen && (code == "stale_tokens" || code == "invalid_tokens")) {
      // A lease expired before our ack: the message will be redelivered,
      // and the idempotent guard will skip it. The session goes on.
      return absl::OkStatus();
    }
    return absl::UnavailableError(absl::StrCat("service error ", code, ": ", message));
  }
  return Violation(absl::StrCat("unexpected \"", type, "\" frame"));
}

absl::Status StreamSession::OnMessage(const json::object& o) {
  if (state_ != State::kOpen) return Violation("message before subscribed");
  ONCE_ASSIGN_OR_RETURN(StreamMessage sm, DecodeStreamMessage(o));
  if (sm.subscription != subscription_) {
    return Violation(absl::StrCat("message for subscription ", sm.subscription,
                                  ", this session's is ", subscription_));
  }
  if (env_.options->mode == Mode::kIdempotent) {
    // A redelivery of an applied message: ack it without running the
    // handler again (ApplyOnce below guards the race anyway).
    ONCE_ASSIGN_OR_RETURN(const bool done, env_.resource->IsCommitted(sm.message.id));
    if (done) {
      env_.stats->Update([](ParticipantStats& s) {
        ++s.acks;
        ++s.messages_skipped;
      });
      Settle(sm.tag);
      return absl::OkStatus();
    }
  }
  Staging staging;
  absl::Status handled = RunHandler(*env_.handler, sm.message, staging);
  bool applied = true;
  if (handled.ok()) {
    // An effect that fails to apply (a constraint, a full disk) is treated
    // like a handler failure: nacked, redelivered later, the session goes on.
    if (env_.options->mode == Mode::kIdempotent) {
      absl::StatusOr<bool> once = env_.resource->ApplyOnce(sm.message.id, staging.effects());
      handled = once.status();
      if (once.ok()) applied = *once;
    } else if (!staging.effects().empty()) {
      handled = env_.resource->Apply(staging.effects());
    }
  }
  if (!handled.ok()) {
    env_.stats->Update([&handled](ParticipantStats& s) {
      ++s.nacks;
      s.last_error = handled.ToString();
    });
    Send(json::object{{"type", "nack"},
                      {"subscription", subscription_},
                      {"delivery_tags", json::array{json::value(sm.tag)}},
                      {"requeue", true}});
    Settle(0);  // its credit only
  } else {
    // Counted before the ack goes out: whoever sees the ack sees the count.
    env_.stats->Update([applied](ParticipantStats& s) {
      ++s.acks;
      ++(applied ? s.messages_applied : s.messages_skipped);
    });
    Settle(sm.tag);
  }
  return absl::OkStatus();
}

}  // namespace once::participant
