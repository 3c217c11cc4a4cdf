// The participant-session frames of /v1/ws (schema/ws_protocol.md,
// "Participant sessions"): the 2PC conversation between the coordinator in
// onced and the participant SDK a consumer embeds. Both sides encode and
// decode through this one codec, so the document, the server and the SDK
// cannot drift apart.
//
// Every frame is one JSON object in a WebSocket text frame with a "type".
// Decoding is strict: a missing required field, a field of the wrong type,
// an unknown field or an unknown type is an InvalidArgument naming it. A
// "request" field is accepted on any frame and ignored here (the service
// echoes it; see ws_protocol.md).
//
// Fencing: every frame after "welcome" carries the coordinator's epoch
// (bumped at every start of onced) and the connection's generation (bumped
// at every hello of the same participant id). A receiver drops frames whose
// epoch or generation are not the current ones.
#ifndef ONCE_SCHEMA_TXN_PROTOCOL_H_
#define ONCE_SCHEMA_TXN_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/json/object.hpp"

namespace once::protocol {

// Version of the participant-session frames; sent in "hello".
inline constexpr int kTxnProtocolVersion = 1;

// One message inside "prepare": the fields of a streamed message without a
// delivery token (the transaction id stands for the batch's leases).
struct TxnMessage {
  std::string id;  // "topic/partition/offset", stable across redeliveries
  uint32_t partition = 0;
  uint64_t offset = 0;
  std::optional<std::string> key;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string value;    // the payload's bytes
  bool binary = false;  // true: travels as "value_b64", else as UTF-8 "value"
  uint32_t delivery_count = 1;
  int64_t timestamp_ms = 0;
};

enum class Outcome { kCommit, kAbort };

// participant -> coordinator: opens the session. `in_doubt` lists the
// transactions the participant prepared (voted yes) and has no outcome for.
// `window` is how many transactions the participant accepts in flight.
struct Hello {
  std::string participant;
  std::string topic;
  std::string group;
  std::vector<std::string> in_doubt;
  uint32_t window = 1;
  int version = kTxnProtocolVersion;
};

struct Resolution {
  std::string txn;
  Outcome outcome = Outcome::kAbort;
};

// coordinator -> participant: the session is open. One resolution per
// in-doubt id: commit (the coordinator holds the COMMIT record) or abort
// (it does not: presumed abort). A commit resolution is applied and
// answered with "done", like a "commit" frame.
struct Welcome {
  uint64_t epoch = 0;
  uint64_t generation = 0;
  std::vector<Resolution> resolutions;
};

// coordinator -> participant: stage the effects of these messages and vote.
struct Prepare {
  std::string txn;
  uint64_t epoch = 0;
  uint64_t generation = 0;
  std::vector<TxnMessage> messages;
};

// participant -> coordinator. A vote for a transaction that is no longer
// open is answered with its outcome (commit or abort frame).
struct Vote {
  std::string txn;
  uint64_t epoch = 0;
  uint64_t generation = 0;
  bool yes = false;
  std::string reason;  // why "no"; empty for "yes"
};

struct Commit {
  std::string txn;
  uint64_t epoch = 0;
  uint64_t generation = 0;
};

struct Abort {
  std::string txn;
  uint64_t epoch = 0;
  uint64_t generation = 0;
  std::string reason;
};

// participant -> coordinator: the commit is applied locally and durable.
struct Done {
  std::string txn;
  uint64_t epoch = 0;
  uint64_t generation = 0;
};

// Either direction's error frame ({"type":"error","code","message"}); the
// server's carries an HTTP-like "status" too, kept here when present.
struct Error {
  std::string code;
  std::string message;
  int status = 0;  // 0: absent
};

using Frame = std::variant<Hello, Welcome, Prepare, Vote, Commit, Abort, Done, Error>;

// The frame's "type" string: "hello", "welcome", "prepare", "vote",
// "commit", "abort", "done", "error".
std::string_view TypeName(const Frame& frame);

// True for the types this codec knows ("hello" ... "error").
bool IsTxnFrameType(std::string_view type);

boost::json::object ToJson(const Frame& frame);
std::string Encode(const Frame& frame);

absl::StatusOr<Frame> FromJson(const boost::json::object& object);
// Parses `text` (one JSON object) and decodes it.
absl::StatusOr<Frame> Decode(std::string_view text);

// "topic/partition/offset", the message id of DESIGN.md §4.
std::string MessageId(std::string_view topic, uint32_t partition, uint64_t offset);

}  // namespace once::protocol

#endif  // ONCE_SCHEMA_TXN_PROTOCOL_H_
