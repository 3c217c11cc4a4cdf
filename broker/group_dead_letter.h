// Dead-lettering: moves messages a group gave up on (too many deliveries,
// or rejected by a nack) to the group's dead-letter topic, with headers
// naming where they came from and why.
//
// A dead-lettered record keeps the original's key, value, flags and
// headers, and gets these headers appended:
//
//   x-once-origin-topic      the source topic
//   x-once-origin-partition  decimal
//   x-once-origin-offset     decimal
//   x-once-origin-group      the group that gave up
//   x-once-reason            "max-deliveries" or "rejected"
//   x-once-delivery-count    decimal: deliveries made before giving up
//
// and the idempotency key "dlq:<group>:<topic>:<partition>:<offset>", so a
// retry after a crash between the publish and the group's durable write is
// deduplicated within the dead-letter topic's dedup window.
#ifndef ONCE_BROKER_GROUP_DEAD_LETTER_H_
#define ONCE_BROKER_GROUP_DEAD_LETTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "broker/broker.h"
#include "broker/record.h"
#include "broker/topic.h"

namespace once::broker {

inline constexpr char kHeaderOriginTopic[] = "x-once-origin-topic";
inline constexpr char kHeaderOriginPartition[] = "x-once-origin-partition";
inline constexpr char kHeaderOriginOffset[] = "x-once-origin-offset";
inline constexpr char kHeaderOriginGroup[] = "x-once-origin-group";
inline constexpr char kHeaderReason[] = "x-once-reason";
inline constexpr char kHeaderDeliveryCount[] = "x-once-delivery-count";

inline constexpr char kReasonMaxDeliveries[] = "max-deliveries";
inline constexpr char kReasonRejected[] = "rejected";

// Room for the headers above on top of the source's max_message_bytes when
// the dead-letter topic is created.
inline constexpr int64_t kDeadLetterOverheadBytes = 4096;

struct DeadLetter {
  int partition = 0;
  int64_t offset = 0;
  int32_t deliveries = 0;
  std::string reason;  // kReasonMaxDeliveries or kReasonRejected
};

// The record to publish for `original` (read from `topic`).
Record MakeDeadLetterRecord(const Record& original, absl::string_view topic,
                            absl::string_view group, const DeadLetter& letter);

// Publishes `letters` of group `group` on `source` to `dlq_topic`, creating
// it when missing with the source topic's settings (and room for the
// headers). Answers once they are durable in the dead-letter topic. A
// letter whose message is already gone from the source (trimmed by
// retention) is skipped: there is nothing left to move. Thread-safe.
absl::Status PublishDeadLetters(Broker* broker, const Topic& source, absl::string_view group,
                                absl::string_view dlq_topic, absl::Span<const DeadLetter> letters);

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_DEAD_LETTER_H_
