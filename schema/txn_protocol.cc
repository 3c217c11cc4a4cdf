#include "schema/txn_protocol.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/monotonic_resource.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "schema/status_macros.h"

namespace once::protocol {
namespace {

namespace json = boost::json;

// Debian's Abseil has its own string_view type: StrCat takes it, not
// std::string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Most entries a list in a frame may hold: bounds what a hostile peer can
// make the receiver allocate beyond the frame's own size limit.
constexpr size_t kMaxListEntries = 100'000;

// Reads the fields of one JSON object strictly: every field read is
// remembered, and Finish() refuses the fields nobody asked for.
class FieldReader {
 public:
  FieldReader(const json::object& object, std::string_view where)
      : object_(object), where_(where) {}

  absl::StatusOr<std::string> String(std::string_view name) {
    ONCE_ASSIGN_OR_RETURN(const json::value* v, Required(name));
    if (!v->is_string()) return Wrong(name, "a string");
    return std::string(v->get_string());
  }

  absl::StatusOr<std::optional<std::string>> OptionalString(std::string_view name) {
    const json::value* v = Optional(name);
    if (v == nullptr || v->is_null()) return std::optional<std::string>();
    if (!v->is_string()) return Wrong(name, "a string");
    return std::optional<std::string>(std::string(v->get_string()));
  }

  absl::StatusOr<uint64_t> Unsigned(std::string_view name, uint64_t max) {
    ONCE_ASSIGN_OR_RETURN(const json::value* v, Required(name));
    return ToUnsigned(name, *v, max);
  }

  absl::StatusOr<std::optional<uint64_t>> OptionalUnsigned(std::string_view name, uint64_t max) {
    const json::value* v = Optional(name);
    if (v == nullptr) return std::optional<uint64_t>();
    ONCE_ASSIGN_OR_RETURN(uint64_t u, ToUnsigned(name, *v, max));
    return std::optional<uint64_t>(u);
  }

  absl::StatusOr<const json::array*> Array(std::string_view name) {
    ONCE_ASSIGN_OR_RETURN(const json::value* v, Required(name));
    if (!v->is_array()) return Wrong(name, "an array");
    if (v->get_array().size() > kMaxListEntries) {
      return Invalid(absl::StrCat("\"", A(name), "\" has more than ", kMaxListEntries, " entries"));
    }
    return &v->get_array();
  }

  const json::value* Optional(std::string_view name) {
    seen_.push_back(name);
    auto it = object_.find(name);
    return it == object_.end() ? nullptr : &it->value();
  }

  absl::Status Finish() {
    for (const auto& entry : object_) {
      std::string_view key = entry.key();
      if (key == "type" || key == "request") continue;
      if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
        return Invalid(absl::StrCat("unknown field \"", A(key), "\""));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Invalid(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(A(where_), ": ", A(what)));
  }

 private:
  absl::StatusOr<const json::value*> Required(std::string_view name) {
    const json::value* v = Optional(name);
    if (v == nullptr) return Invalid(absl::StrCat("missing field \"", A(name), "\""));
    return v;
  }

  absl::StatusOr<uint64_t> ToUnsigned(std::string_view name, const json::value& v, uint64_t max) {
    uint64_t u = 0;
    if (v.is_uint64()) {
      u = v.get_uint64();
    } else if (v.is_int64() && v.get_int64() >= 0) {
      u = static_cast<uint64_t>(v.get_int64());
    } else {
      return Wrong(name, "a non-negative integer");
    }
    if (u > max) return Invalid(absl::StrCat("\"", A(name), "\" is above ", max));
    return u;
  }

  absl::Status Wrong(std::string_view name, std::string_view expected) const {
    return Invalid(absl::StrCat("field \"", A(name), "\" must be ", A(expected)));
  }

  const json::object& object_;
  std::string_view where_;
  // The names asked for (a frame or message has a handful: a linear scan
  // beats hashing each, and nothing is allocated per message).
  absl::InlinedVector<std::string_view, 16> seen_;
};

absl::StatusOr<std::vector<std::string>> StringList(FieldReader& r, std::string_view name) {
  ONCE_ASSIGN_OR_RETURN(const json::array* array, r.Array(name));
  std::vector<std::string> out;
  out.reserve(array->size());
  for (const json::value& v : *array) {
    if (!v.is_string()) return r.Invalid(absl::StrCat("\"", A(name), "\" must hold strings"));
    out.emplace_back(v.get_string());
  }
  return out;
}

absl::StatusOr<std::string> TxnId(FieldReader& r) {
  ONCE_ASSIGN_OR_RETURN(std::string txn, r.String("txn"));
  if (txn.empty()) return r.Invalid("\"txn\" is empty");
  return txn;
}

// The epoch and generation every frame after "welcome" carries.
template <typename T>
absl::Status ReadFence(FieldReader& r, T& frame) {
  ONCE_ASSIGN_OR_RETURN(frame.epoch, r.Unsigned("epoch", std::numeric_limits<int64_t>::max()));
  ONCE_ASSIGN_OR_RETURN(frame.generation,
                        r.Unsigned("generation", std::numeric_limits<int64_t>::max()));
  return absl::OkStatus();
}

absl::StatusOr<TxnMessage> MessageFromJson(const json::value& v) {
  if (!v.is_object()) return absl::InvalidArgumentError("prepare: each message must be an object");
  FieldReader r(v.get_object(), "prepare message");
  TxnMessage m;
  ONCE_ASSIGN_OR_RETURN(m.id, r.String("id"));
  ONCE_ASSIGN_OR_RETURN(uint64_t partition, r.Unsigned("partition", 1023));
  m.partition = static_cast<uint32_t>(partition);
  ONCE_ASSIGN_OR_RETURN(m.offset, r.Unsigned("offset", std::numeric_limits<int64_t>::max()));
  ONCE_ASSIGN_OR_RETURN(m.key, r.OptionalString("key"));
  if (const json::value* h = r.Optional("headers"); h != nullptr && !h->is_null()) {
    if (!h->is_object()) return r.Invalid("field \"headers\" must be an object of strings");
    for (const auto& entry : h->get_object()) {
      if (!entry.value().is_string()) {
        return r.Invalid(
            absl::StrCat("header \"", A(std::string_view(entry.key())), "\" must be a string"));
      }
      m.headers.emplace_back(std::string(entry.key()), std::string(entry.value().get_string()));
    }
  }
  ONCE_ASSIGN_OR_RETURN(std::optional<std::string> text, r.OptionalString("value"));
  ONCE_ASSIGN_OR_RETURN(std::optional<std::string> b64, r.OptionalString("value_b64"));
  if (text.has_value() == b64.has_value()) {
    return r.Invalid("exactly one of \"value\" and \"value_b64\" must be present");
  }
  if (text.has_value()) {
    m.value = std::move(*text);
  } else {
    m.binary = true;
    if (!absl::Base64Unescape(*b64, &m.value)) return r.Invalid("\"value_b64\" is not base64");
  }
  ONCE_ASSIGN_OR_RETURN(std::optional<uint64_t> count,
                        r.OptionalUnsigned("delivery_count", std::numeric_limits<int32_t>::max()));
  m.delivery_count = static_cast<uint32_t>(count.value_or(1));
  ONCE_ASSIGN_OR_RETURN(std::optional<uint64_t> ts,
                        r.OptionalUnsigned("timestamp_ms", std::numeric_limits<int64_t>::max()));
  m.timestamp_ms = static_cast<int64_t>(ts.value_or(0));
  ONCE_RETURN_IF_ERROR(r.Finish());
  return m;
}

json::object MessageToJson(const TxnMessage& m) {
  json::object o;
  o["id"] = m.id;
  o["partition"] = m.partition;
  o["offset"] = m.offset;
  if (m.key.has_value()) o["key"] = *m.key;
  if (!m.headers.empty()) {
    json::object headers;
    for (const auto& [k, v] : m.headers) headers[k] = v;
    o["headers"] = std::move(headers);
  }
  if (m.binary) {
    o["value_b64"] = absl::Base64Escape(m.value);
  } else {
    o["value"] = m.value;
  }
  o["delivery_count"] = m.delivery_count;
  if (m.timestamp_ms != 0) o["timestamp_ms"] = m.timestamp_ms;
  return o;
}

absl::StatusOr<Frame> HelloFromJson(FieldReader& r) {
  Hello h;
  ONCE_ASSIGN_OR_RETURN(h.participant, r.String("participant"));
  if (h.participant.empty() || h.participant.size() > 255) {
    return r.Invalid("\"participant\" must have 1..255 characters");
  }
  ONCE_ASSIGN_OR_RETURN(h.topic, r.String("topic"));
  ONCE_ASSIGN_OR_RETURN(h.group, r.String("group"));
  ONCE_ASSIGN_OR_RETURN(h.in_doubt, StringList(r, "in_doubt"));
  ONCE_ASSIGN_OR_RETURN(std::optional<uint64_t> window, r.OptionalUnsigned("window", 1024));
  h.window = static_cast<uint32_t>(window.value_or(1));
  if (h.window == 0) return r.Invalid("\"window\" must be 1..1024");
  ONCE_ASSIGN_OR_RETURN(std::optional<uint64_t> version, r.OptionalUnsigned("version", 1'000'000));
  h.version = static_cast<int>(version.value_or(kTxnProtocolVersion));
  return h;
}

absl::StatusOr<Frame> WelcomeFromJson(FieldReader& r) {
  Welcome w;
  ONCE_RETURN_IF_ERROR(ReadFence(r, w));
  ONCE_ASSIGN_OR_RETURN(const json::array* list, r.Array("resolutions"));
  for (const json::value& v : *list) {
    if (!v.is_object()) return r.Invalid("each resolution must be an object");
    FieldReader rr(v.get_object(), "welcome resolution");
    Resolution res;
    ONCE_ASSIGN_OR_RETURN(res.txn, TxnId(rr));
    ONCE_ASSIGN_OR_RETURN(std::string outcome, rr.String("outcome"));
    if (outcome == "commit") {
      res.outcome = Outcome::kCommit;
    } else if (outcome == "abort") {
      res.outcome = Outcome::kAbort;
    } else {
      return rr.Invalid("\"outcome\" must be \"commit\" or \"abort\"");
    }
    ONCE_RETURN_IF_ERROR(rr.Finish());
    w.resolutions.push_back(std::move(res));
  }
  return w;
}

absl::StatusOr<Frame> PrepareFromJson(FieldReader& r) {
  Prepare p;
  ONCE_ASSIGN_OR_RETURN(p.txn, TxnId(r));
  ONCE_RETURN_IF_ERROR(ReadFence(r, p));
  ONCE_ASSIGN_OR_RETURN(const json::array* list, r.Array("messages"));
  if (list->empty()) return r.Invalid("\"messages\" is empty");
  p.messages.reserve(list->size());
  for (const json::value& v : *list) {
    ONCE_ASSIGN_OR_RETURN(TxnMessage m, MessageFromJson(v));
    p.messages.push_back(std::move(m));
  }
  return p;
}

absl::StatusOr<Frame> VoteFromJson(FieldReader& r) {
  Vote v;
  ONCE_ASSIGN_OR_RETURN(v.txn, TxnId(r));
  ONCE_RETURN_IF_ERROR(ReadFence(r, v));
  ONCE_ASSIGN_OR_RETURN(std::string vote, r.String("vote"));
  if (vote == "yes") {
    v.yes = true;
  } else if (vote != "no") {
    return r.Invalid("\"vote\" must be \"yes\" or \"no\"");
  }
  ONCE_ASSIGN_OR_RETURN(std::optional<std::string> reason, r.OptionalString("reason"));
  v.reason = reason.value_or("");
  return v;
}

template <typename T>
absl::StatusOr<Frame> DecisionFromJson(FieldReader& r) {
  T t;
  ONCE_ASSIGN_OR_RETURN(t.txn, TxnId(r));
  ONCE_RETURN_IF_ERROR(ReadFence(r, t));
  if constexpr (std::is_same_v<T, Abort>) {
    ONCE_ASSIGN_OR_RETURN(std::optional<std::string> reason, r.OptionalString("reason"));
    t.reason = reason.value_or("");
  }
  return t;
}

absl::StatusOr<Frame> ErrorFromJson(FieldReader& r) {
  Error e;
  ONCE_ASSIGN_OR_RETURN(e.code, r.String("code"));
  ONCE_ASSIGN_OR_RETURN(e.message, r.String("message"));
  ONCE_ASSIGN_OR_RETURN(std::optional<uint64_t> status, r.OptionalUnsigned("status", 599));
  e.status = static_cast<int>(status.value_or(0));
  return e;
}

template <typename T>
void PutFence(json::object& o, const T& frame) {
  o["txn"] = frame.txn;
  o["epoch"] = frame.epoch;
  o["generation"] = frame.generation;
}

}  // namespace

std::string_view TypeName(const Frame& frame) {
  static constexpr std::string_view kNames[] = {"hello",  "welcome", "prepare", "vote",
                                                "commit", "abort",   "done",    "error"};
  static_assert(std::variant_size_v<Frame> == std::size(kNames));
  return kNames[frame.index()];
}

bool IsTxnFrameType(std::string_view type) {
  return type == "hello" || type == "welcome" || type == "prepare" || type == "vote" ||
         type == "commit" || type == "abort" || type == "done" || type == "error";
}

boost::json::object ToJson(const Frame& frame) {
  json::object o;
  o["type"] = TypeName(frame);
  std::visit(
      [&o](const auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, Hello>) {
          o["participant"] = f.participant;
          o["topic"] = f.topic;
          o["group"] = f.group;
          json::array ids;
          for (const std::string& id : f.in_doubt) ids.emplace_back(id);
          o["in_doubt"] = std::move(ids);
          o["window"] = f.window;
          o["version"] = f.version;
        } else if constexpr (std::is_same_v<T, Welcome>) {
          o["epoch"] = f.epoch;
          o["generation"] = f.generation;
          json::array list;
          for (const Resolution& r : f.resolutions) {
            list.emplace_back(json::object{
                {"txn", r.txn}, {"outcome", r.outcome == Outcome::kCommit ? "commit" : "abort"}});
          }
          o["resolutions"] = std::move(list);
        } else if constexpr (std::is_same_v<T, Prepare>) {
          PutFence(o, f);
          json::array list;
          list.reserve(f.messages.size());
          for (const TxnMessage& m : f.messages) list.emplace_back(MessageToJson(m));
          o["messages"] = std::move(list);
        } else if constexpr (std::is_same_v<T, Vote>) {
          PutFence(o, f);
          o["vote"] = f.yes ? "yes" : "no";
          if (!f.reason.empty()) o["reason"] = f.reason;
        } else if constexpr (std::is_same_v<T, Commit> || std::is_same_v<T, Done>) {
          PutFence(o, f);
        } else if constexpr (std::is_same_v<T, Abort>) {
          PutFence(o, f);
          if (!f.reason.empty()) o["reason"] = f.reason;
        } else {
          static_assert(std::is_same_v<T, Error>);
          o["code"] = f.code;
          o["message"] = f.message;
          if (f.status != 0) o["status"] = f.status;
        }
      },
      frame);
  return o;
}

std::string Encode(const Frame& frame) { return json::serialize(ToJson(frame)); }

absl::StatusOr<Frame> FromJson(const boost::json::object& object) {
  auto type_it = object.find("type");
  if (type_it == object.end() || !type_it->value().is_string()) {
    return absl::InvalidArgumentError("frame: missing string field \"type\"");
  }
  std::string_view type = type_it->value().get_string();
  FieldReader r(object, type);
  absl::StatusOr<Frame> frame;
  if (type == "hello") {
    frame = HelloFromJson(r);
  } else if (type == "welcome") {
    frame = WelcomeFromJson(r);
  } else if (type == "prepare") {
    frame = PrepareFromJson(r);
  } else if (type == "vote") {
    frame = VoteFromJson(r);
  } else if (type == "commit") {
    frame = DecisionFromJson<Commit>(r);
  } else if (type == "abort") {
    frame = DecisionFromJson<Abort>(r);
  } else if (type == "done") {
    frame = DecisionFromJson<Done>(r);
  } else if (type == "error") {
    frame = ErrorFromJson(r);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("frame: unknown type \"", A(type), "\""));
  }
  if (!frame.ok()) return frame.status();
  ONCE_RETURN_IF_ERROR(r.Finish());
  return frame;
}

absl::StatusOr<Frame> Decode(std::string_view text) {
  boost::system::error_code ec;
  // The DOM lives only until FromJson has copied what it needs: one arena
  // for all of it instead of an allocation per string, object and array
  // (a PREPARE carries up to thousands of messages).
  json::monotonic_resource arena;
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec, &arena);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("frame: malformed JSON: ", ec.message()));
  if (!value.is_object()) return absl::InvalidArgumentError("frame: not a JSON object");
  return FromJson(value.get_object());
}

std::string MessageId(std::string_view topic, uint32_t partition, uint64_t offset) {
  return absl::StrCat(A(topic), "/", partition, "/", offset);
}

}  // namespace once::protocol
