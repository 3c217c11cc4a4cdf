// once-recover's output: each command fills an Output with both its text
// and its JSON form; main prints one of them (--json: one JSON document on
// stdout, text otherwise). Progress and logs go to stderr.
#ifndef ONCE_TOOLS_RECOVER_FORMAT_H_
#define ONCE_TOOLS_RECOVER_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "coordinator/txn_store.h"
#include "tools/recover_args.h"

namespace once::recover {

struct Output {
  int exit_code = kExitOk;
  std::string text;
  boost::json::object json;
};

// "5m12s", "3h04m", "2d03h", "850ms"; "0s" for <= 0.
std::string FormatAge(int64_t ms);
// "2026-11-25T17:03:12.345Z" (UTC); "-" for 0.
std::string FormatTime(int64_t unix_ms);

// A record as JSON: every field, messages as [{"partition","offset"}],
// plus "age_ms" (now - decided_ms).
boost::json::object RecordJson(const coordinator::TxnRecord& r, int64_t now_ms);
boost::json::object AuditJson(const coordinator::AuditEntry& e);

// Appends printf-style text to out->text.
void Appendf(Output* out, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace once::recover

#endif  // ONCE_TOOLS_RECOVER_FORMAT_H_
