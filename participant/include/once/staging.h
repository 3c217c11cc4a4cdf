// The staging area a handler writes its effects into. In exactly-once mode
// nothing a handler does may change the consumer's store directly: it only
// stages effects, which the SDK journals with the vote and applies when the
// coordinator commits (DESIGN.md §2). An effect is a command in the
// resource's own language with bound parameters; for SqliteResource, one
// SQL statement with its "?N" parameters.
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_STAGING_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_STAGING_H_

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace once {

// Bytes bound as a BLOB (a std::string alone binds as TEXT).
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};

// A bound parameter: NULL, INTEGER, REAL, TEXT or BLOB.
using Value = std::variant<std::monostate, int64_t, double, std::string, Blob>;

struct Effect {
  std::string command;        // e.g. "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2"
  std::vector<Value> params;  // bound as ?1, ?2, ... in order
  bool operator==(const Effect&) const = default;
};

// Not thread-safe: a handler fills the one it is given, on the SDK's thread.
class Staging {
 public:
  void Add(std::string command, std::vector<Value> params = {}) {
    effects_.push_back(Effect{std::move(command), std::move(params)});
  }
  const std::vector<Effect>& effects() const { return effects_; }
  std::vector<Effect> Release() { return std::move(effects_); }
  void Clear() { effects_.clear(); }

 private:
  std::vector<Effect> effects_;
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_STAGING_H_
