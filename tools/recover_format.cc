#include "tools/recover_format.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

#include "absl/strings/str_format.h"

namespace once::recover {

std::string FormatAge(int64_t ms) {
  if (ms <= 0) return "0s";
  if (ms < 1000) return absl::StrFormat("%dms", ms);
  const int64_t s = ms / 1000;
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         static_cast<int>(unix_ms % 1000));
}

boost::json::object RecordJson(const coordinator::TxnRecord& r, int64_t now_ms) {
  boost::json::object o;
  o["txn"] = r.txn;
  o["state"] = std::string(coordinator::TxnStateName(r.state));
  o["topic"] = r.topic;
  o["group"] = r.group;
  o["participant"] = r.participant;
  o["epoch"] = r.epoch;
  o["generation"] = r.generation;
  o["created_ms"] = r.created_ms;
  o["decided_ms"] = r.decided_ms;
  o["done_ms"] = r.done_ms;
  o["age_ms"] = now_ms - r.decided_ms;
  o["attempts"] = r.attempts;
  o["reason"] = r.reason;
  o["broker_deleted"] = r.broker_deleted;
  o["message_count"] = r.messages.size();
  boost::json::array messages;
  for (const auto& m : r.messages) {
    boost::json::object mo;
    mo["partition"] = m.partition;
    mo["offset"] = m.offset;
    messages.push_back(std::move(mo));
  }
  o["messages"] = std::move(messages);
  return o;
}

boost::json::object AuditJson(const coordinator::AuditEntry& e) {
  boost::json::object o;
  o["id"] = e.id;
  o["at_ms"] = e.at_ms;
  o["txn"] = e.txn;
  o["action"] = e.action;
  o["reason"] = e.reason;
  o["actor"] = e.actor;
  return o;
}

void Appendf(Output* out, const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n > 0) {
    std::string chunk(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(chunk.data(), chunk.size(), format, args);
    chunk.resize(static_cast<size_t>(n));
    out->text += chunk;
  }
  va_end(args);
}

}  // namespace once::recover
