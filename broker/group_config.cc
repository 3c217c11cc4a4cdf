#include "broker/group_config.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "broker/topic_config.h"

namespace once::broker {
namespace {

constexpr size_t kMaxGroupNameLength = 200;
constexpr size_t kMaxConsumerIdLength = 256;

absl::Status OutOfRange(absl::string_view setting, int64_t value, int64_t lo, int64_t hi) {
  return absl::InvalidArgumentError(
      absl::StrCat("group setting ", setting, " must be in ", lo, "..", hi, ", not ", value));
}

// The exactly-once batching settings; see GroupConfig.
absl::Status ValidateTxnSettings(const GroupConfig& c) {
  if (c.guarantee != Guarantee::kExactlyOnce) {
    // Refused rather than ignored: a setting that silently does nothing
    // hides the user's mistake (the wrong guarantee, or the wrong knob:
    // prefetch batches at-least-once deliveries).
    const char* setting = c.txn_batch_max.has_value()   ? "txn_batch_max"
                          : c.txn_linger_ms.has_value() ? "txn_linger_ms"
                                                        : nullptr;
    if (setting != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "group setting ", setting, " applies to exactly-once groups only, not to guarantee \"",
          GuaranteeName(c.guarantee), "\""));
    }
    return absl::OkStatus();
  }
  if (c.txn_batch_max.has_value() && (*c.txn_batch_max < 1 || *c.txn_batch_max > kMaxTxnBatchMax)) {
    return OutOfRange("txn_batch_max", *c.txn_batch_max, 1, kMaxTxnBatchMax);
  }
  if (c.txn_linger_ms.has_value()) {
    if (*c.txn_linger_ms < 0 || *c.txn_linger_ms > kMaxTxnLingerMs) {
      return OutOfRange("txn_linger_ms", *c.txn_linger_ms, 0, kMaxTxnLingerMs);
    }
    if (*c.txn_linger_ms >= c.ack_timeout_ms) {
      return absl::InvalidArgumentError(absl::StrCat(
          "group setting txn_linger_ms (", *c.txn_linger_ms, ") must be below ack_timeout_ms (",
          c.ack_timeout_ms, "): a lingering batch's leases would expire before its PREPARE"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view GroupModeName(GroupMode m) {
  switch (m) {
    case GroupMode::kShared:
      return "shared";
    case GroupMode::kOrdered:
      return "ordered";
  }
  return "unknown";
}

absl::StatusOr<GroupMode> ParseGroupMode(absl::string_view s) {
  if (s == "shared") return GroupMode::kShared;
  if (s == "ordered") return GroupMode::kOrdered;
  return absl::InvalidArgumentError(
      absl::StrCat("group mode must be \"shared\" or \"ordered\", not \"", s, "\""));
}

absl::string_view GuaranteeName(Guarantee g) {
  switch (g) {
    case Guarantee::kAtLeastOnce:
      return "at-least-once";
    case Guarantee::kIdempotent:
      return "idempotent";
    case Guarantee::kExactlyOnce:
      return "exactly-once";
  }
  return "unknown";
}

absl::StatusOr<Guarantee> ParseGuarantee(absl::string_view s) {
  if (s == "at-least-once") return Guarantee::kAtLeastOnce;
  if (s == "idempotent") return Guarantee::kIdempotent;
  if (s == "exactly-once") return Guarantee::kExactlyOnce;
  return absl::InvalidArgumentError(absl::StrCat(
      "guarantee must be \"at-least-once\", \"idempotent\" or \"exactly-once\", not \"", s, "\""));
}

std::string PositionName(const Position& p) {
  switch (p.kind) {
    case PositionKind::kEarliest:
      return "earliest";
    case PositionKind::kLatest:
      return "latest";
    case PositionKind::kOffset:
      return absl::StrCat("offset:", p.value);
    case PositionKind::kTime:
      return absl::StrCat("time:", p.value);
  }
  return "unknown";
}

absl::StatusOr<Position> ParsePosition(absl::string_view s) {
  if (s == "earliest") return Position::Earliest();
  if (s == "latest") return Position::Latest();
  absl::string_view rest = s;
  int64_t v = 0;
  if (absl::ConsumePrefix(&rest, "offset:") && absl::SimpleAtoi(rest, &v) && v >= 0) {
    return Position::Offset(v);
  }
  rest = s;
  if (absl::ConsumePrefix(&rest, "time:") && absl::SimpleAtoi(rest, &v) && v >= 0) {
    return Position::Time(v);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "position must be \"earliest\", \"latest\", \"offset:N\" or \"time:MS\" (N, MS >= 0), "
      "not \"",
      s, "\""));
}

std::string DeadLetterTopicFor(absl::string_view topic, const GroupConfig& config) {
  if (!config.dead_letter_topic.empty()) return config.dead_letter_topic;
  return absl::StrCat(topic, "-dlq");
}

absl::Status CheckDirectFetch(const GroupConfig& config, absl::string_view topic,
                              absl::string_view group) {
  if (config.guarantee != Guarantee::kExactlyOnce) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("group \"", group, "\" of topic \"", topic,
                   "\" is exactly-once: its messages are delivered only through the coordinator"));
}

absl::Status ValidateGroupConfig(const GroupConfig& c, absl::string_view topic) {
  if (c.mode != GroupMode::kShared && c.mode != GroupMode::kOrdered) {
    return absl::InvalidArgumentError(
        absl::StrCat("group setting mode has unknown value ", static_cast<int>(c.mode)));
  }
  if (c.guarantee != Guarantee::kAtLeastOnce && c.guarantee != Guarantee::kIdempotent &&
      c.guarantee != Guarantee::kExactlyOnce) {
    return absl::InvalidArgumentError(
        absl::StrCat("group setting guarantee has unknown value ", static_cast<int>(c.guarantee)));
  }
  if (c.ack_timeout_ms < 1 || c.ack_timeout_ms > kMaxGroupTimeoutMs) {
    return OutOfRange("ack_timeout_ms", c.ack_timeout_ms, 1, kMaxGroupTimeoutMs);
  }
  if (c.max_deliveries < 1 || c.max_deliveries > kMaxMaxDeliveries) {
    return OutOfRange("max_deliveries", c.max_deliveries, 1, kMaxMaxDeliveries);
  }
  if (c.prefetch < 1 || c.prefetch > kMaxPrefetch) {
    return OutOfRange("prefetch", c.prefetch, 1, kMaxPrefetch);
  }
  if (c.session_timeout_ms < 1 || c.session_timeout_ms > kMaxGroupTimeoutMs) {
    return OutOfRange("session_timeout_ms", c.session_timeout_ms, 1, kMaxGroupTimeoutMs);
  }
  if (c.backoff_base_ms < 0 || c.backoff_base_ms > kMaxGroupTimeoutMs) {
    return OutOfRange("backoff_base_ms", c.backoff_base_ms, 0, kMaxGroupTimeoutMs);
  }
  if (c.backoff_max_ms < c.backoff_base_ms || c.backoff_max_ms > kMaxGroupTimeoutMs) {
    return OutOfRange("backoff_max_ms", c.backoff_max_ms, c.backoff_base_ms, kMaxGroupTimeoutMs);
  }
  if (absl::Status s = ValidateTxnSettings(c); !s.ok()) return s;
  switch (c.start.kind) {
    case PositionKind::kEarliest:
    case PositionKind::kLatest:
      break;
    case PositionKind::kOffset:
    case PositionKind::kTime:
      if (c.start.value < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("group setting start ", PositionName(c.start), " must not be negative"));
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("group setting start has unknown kind ", static_cast<int>(c.start.kind)));
  }
  const std::string dlq = DeadLetterTopicFor(topic, c);
  if (absl::Status s = ValidateTopicName(dlq); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("group setting dead_letter_topic \"", dlq, "\": ", s.message()));
  }
  if (dlq == topic) {
    return absl::InvalidArgumentError(absl::StrCat(
        "group setting dead_letter_topic must differ from the group's topic \"", topic, "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateGroupName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxGroupNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("group name must have 1..", kMaxGroupNameLength,
                                                   " characters, not ", name.size()));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("group name \"", name, "\" is reserved"));
  }
  if (absl::StartsWith(name, "__")) {
    return absl::InvalidArgumentError(
        absl::StrCat("group name \"", name, "\" must not start with \"__\" (reserved)"));
  }
  for (char ch : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' &&
        ch != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("group name \"", absl::CHexEscape(name), "\" may hold only [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateConsumerId(absl::string_view consumer) {
  if (consumer.empty() || consumer.size() > kMaxConsumerIdLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "consumer id must have 1..", kMaxConsumerIdLength, " characters, not ", consumer.size()));
  }
  for (char ch : consumer) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(ch))) {
      return absl::InvalidArgumentError(
          absl::StrCat("consumer id \"", absl::CHexEscape(consumer),
                       "\" may hold only printable ASCII without spaces"));
    }
  }
  return absl::OkStatus();
}

}  // namespace once::broker
