// The coordinator's frames as a test plays them to a participant, encoded
// with schema/txn_protocol.h: welcome, prepare of payments messages,
// commit and abort, for any epoch and generation.
#ifndef ONCE_TESTS_PARTICIPANT_COORDINATOR_FRAMES_H_
#define ONCE_TESTS_PARTICIPANT_COORDINATOR_FRAMES_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "boost/json/object.hpp"
#include "schema/txn_protocol.h"

namespace once::participant::frames {

// A message of partition 0 of topic "payments" at `offset`.
inline protocol::TxnMessage Payment(uint64_t offset, std::string value) {
  protocol::TxnMessage m;
  m.id = protocol::MessageId("payments", 0, offset);
  m.offset = offset;
  m.value = std::move(value);
  return m;
}

inline std::string Welcome(uint64_t epoch, uint64_t generation,
                           std::vector<protocol::Resolution> resolutions = {}) {
  protocol::Welcome w;
  w.epoch = epoch;
  w.generation = generation;
  w.resolutions = std::move(resolutions);
  return protocol::Encode(w);
}

inline std::string Prepare(const std::string& txn, uint64_t epoch, uint64_t generation,
                           std::vector<protocol::TxnMessage> messages) {
  protocol::Prepare p;
  p.txn = txn;
  p.epoch = epoch;
  p.generation = generation;
  p.messages = std::move(messages);
  return protocol::Encode(p);
}

inline std::string Commit(const std::string& txn, uint64_t epoch, uint64_t generation) {
  protocol::Commit c;
  c.txn = txn;
  c.epoch = epoch;
  c.generation = generation;
  return protocol::Encode(c);
}

inline std::string Abort(const std::string& txn, uint64_t epoch, uint64_t generation) {
  protocol::Abort a;
  a.txn = txn;
  a.epoch = epoch;
  a.generation = generation;
  a.reason = "test";
  return protocol::Encode(a);
}

// The string `field` of a frame the participant sent ("" when absent).
inline std::string Str(const boost::json::object& o, const char* field) {
  auto it = o.find(field);
  return it != o.end() && it->value().is_string() ? std::string(it->value().get_string()) : "";
}

}  // namespace once::participant::frames

#endif  // ONCE_TESTS_PARTICIPANT_COORDINATOR_FRAMES_H_
