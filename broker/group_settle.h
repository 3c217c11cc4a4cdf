// Token and settlement bookkeeping that both group modes share
// (broker/group_shared.h, broker/group_ordered.h): judging the tokens of
// an Ack, Nack or Pin call one by one, the refusals both word alike, the
// checks of AckPositions, the dead letters waiting to be published, and
// the delivery counts that ride along a durable write.
//
// Not thread-safe: every function works on state that the calling group's
// mutex guards (or on none).
#ifndef ONCE_BROKER_GROUP_SETTLE_H_
#define ONCE_BROKER_GROUP_SETTLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "broker/consumer_group.h"
#include "broker/group_dead_letter.h"
#include "broker/group_store.h"
#include "broker/group_token.h"
#include "broker/topic.h"

namespace once::broker {

// "<topic>/<partition>/<offset>": how refusals and errors name a message.
std::string MessageName(absl::string_view topic, int partition, int64_t offset);

// A token for a message that an earlier token of the same call already
// settles (kFailedPrecondition).
absl::Status DuplicateInCall(absl::string_view topic, const DeliveryToken& t);
// A Nack of a delivery that a 2PC COMMIT decision pinned
// (kFailedPrecondition).
absl::Status PinnedRefusal(absl::string_view topic, const DeliveryToken& t);

// Judges each token of one Ack/Nack/Pin call alone, in order: `decode`
// (the group's CheckToken) refuses a text that is not a current token of
// the group, `check` (the group's CheckHandle) a handle that is not;
// `judge` (the mode's lease look-up) refuses what is stale; a token that
// passes both but names a message an earlier accepted token of the call
// named is refused as DuplicateInCall (only the first counts). `accept`
// then gets each accepted token with its index; refusals go to
// result->refused (with the token's text, empty for a handle). `decode`,
// `check` and `judge` must change nothing, so that a refused token changes
// nothing; only `accept` records what to apply.
void JudgeTokens(const TokenRefs& tokens,
                 absl::FunctionRef<absl::StatusOr<DeliveryToken>(absl::string_view)> decode,
                 absl::FunctionRef<absl::Status(const DeliveryToken&)> check,
                 absl::FunctionRef<absl::Status(const DeliveryToken&)> judge,
                 absl::FunctionRef<void(size_t index, const DeliveryToken&)> accept,
                 absl::string_view topic, AckResult* result);

// AckPositions' check of one position: the partition exists and the
// offset is in the log (kInvalidArgument otherwise).
absl::Status CheckPosition(const Topic& topic, const MessagePosition& m);

// A message waiting to be published to the dead-letter topic.
struct PendingDeadLetter {
  int32_t deliveries = 0;  // made before giving up
  std::string reason;      // kReasonMaxDeliveries or kReasonRejected
  bool in_progress = false;
  int64_t retry_at_ms = 0;  // after a failed attempt
};
using PendingDeadLetters = absl::btree_map<int64_t, PendingDeadLetter>;  // by offset

// Marks every pending letter of `partition` that is due at `now_ms` and
// not already being published in progress, and lists it in `letters` and
// `items` (the caller publishes them, then settles them as done).
void TakeDueDeadLetters(int partition, int64_t now_ms, PendingDeadLetters& pending,
                        std::vector<DeadLetter>* letters, std::vector<MessagePosition>* items);
// After a failed publish or write: the letter at `offset` (if still
// pending) is idle again and retried at `retry_at_ms`.
void ReleaseDeadLetter(int64_t offset, int64_t retry_at_ms, PendingDeadLetters& pending);
// When a failed dead-lettering is retried: not sooner than
// kDeadLetterRetryMs nor than the group's backoff base.
int64_t DeadLetterRetryAt(int64_t now_ms, const GroupConfig& config);

// Delivery counts (offset -> deliveries made) that the store does not
// have yet.
using DirtyCounts = absl::btree_map<int64_t, int32_t>;

// Adds the dirty counts at or above u->done_floor to u->set_counts (below
// it the messages are done and their counts are deleted by the store).
void AddDirtyCounts(const DirtyCounts& dirty, PartitionUpdate* u);
// After `u` committed: forgets the dirty counts it wrote, unless a later
// delivery changed them meanwhile (they are still to be written).
void ForgetWrittenCounts(const PartitionUpdate& u, DirtyCounts& dirty);
// Undoes a delivery numbered `deliveries` that was reserved but never
// handed out: the count goes back to what it was before.
void UndoDirtyCount(int64_t offset, int32_t deliveries, DirtyCounts& dirty);

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_SETTLE_H_
