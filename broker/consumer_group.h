// ConsumerGroup: one group of consumers reading one topic, in shared
// (queue) or ordered (log) mode — the interface that the HTTP and
// WebSocket layers and the 2PC coordinator program against, and the state
// that both modes have in common. The modes are in broker/group_shared.h
// and broker/group_ordered.h; groups are made by broker/group_registry.h.
// Semantics and the durable format: broker/groups.md.
//
// Time: every deadline (ack timeout, backoff, session timeout) is judged
// lazily against the Clock at each call, and by Tick(); no thread of the
// group's own runs.
//
// Thread-safety: every method is thread-safe. A group's state is guarded
// by one mutex, never held across a log read, a publish or a durable write:
// calls reserve what they work on (a lease in kSettling, a reservation),
// do their I/O unlocked, then apply the outcome.
#ifndef ONCE_BROKER_CONSUMER_GROUP_H_
#define ONCE_BROKER_CONSUMER_GROUP_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "broker/broker.h"
#include "broker/group_config.h"
#include "broker/group_dead_letter.h"
#include "broker/group_notifier.h"
#include "broker/group_ranges.h"
#include "broker/group_store.h"
#include "broker/group_token.h"
#include "broker/log.h"
#include "broker/record.h"
#include "broker/topic.h"
#include "schema/clock.h"

namespace once::broker {

// Most messages one Fetch or Lease call returns.
inline constexpr int kMaxFetch = 10'000;
// A failed dead-lettering is retried no sooner than this.
inline constexpr int64_t kDeadLetterRetryMs = 1000;
// Most tokens one Ack, Nack or Pin call takes.
inline constexpr size_t kMaxTokensPerCall = 10'000;

struct Delivery {
  int partition = 0;
  Record record;               // record.offset is the message's offset
  std::string token;           // empty from FetchHandles
  DeliveryToken handle;        // the token, decoded: for AckHandles/NackHandles
  int32_t delivery_count = 1;  // 1 on the first delivery
};

enum class NackAction { kRequeue, kDeadLetter };

// A token that an Ack, Nack or Pin refused, and why: kFailedPrecondition
// when it is stale (redelivered, expired, already acked, fenced by a
// rebalance or a restart) and kInvalidArgument when it is not a token of
// this group at all (malformed, forged, another group's).
struct TokenRefusal {
  size_t index = 0;  // position in the request
  std::string token;
  absl::Status status;
};

struct AckResult {
  int64_t applied = 0;
  std::vector<TokenRefusal> refused;

  // OK when nothing was refused. Otherwise kInvalidArgument when any token
  // was not this group's (a client bug: HTTP 400), else kFailedPrecondition
  // (stale: HTTP 409); the message counts them and quotes the first reason.
  absl::Status ToStatus() const;
};

struct MessagePosition {
  int partition = 0;
  int64_t offset = 0;
};

struct ConsumerDescription {
  std::string id;
  int64_t held = 0;             // leases (shared) or unacked deliveries (ordered)
  std::vector<int> partitions;  // ordered mode: the partitions assigned to it
  int64_t last_seen_ms = 0;
};

struct GroupPartitionDescription {
  int partition = 0;
  int64_t first_offset = 0;  // the log's
  int64_t next_offset = 0;   // the log's
  int64_t done_floor = 0;    // every offset below is done; ordered: the committed offset
  int64_t lag = 0;           // messages in the log the group is not done with
  int64_t leased = 0;        // out for delivery (leases / unacked deliveries)
  int64_t pending_redelivery = 0;
  int64_t acked = 0;          // since creation (disk) or since open (memory)
  int64_t dead_lettered = 0;  // likewise
  std::string owner;          // ordered mode: the assigned consumer, "" if none
};

struct GroupDescription {
  std::string topic;
  std::string name;
  GroupConfig config;
  std::string dead_letter_topic;
  uint64_t incarnation = 0;
  uint32_t generation = 0;  // ordered mode
  int64_t created_ms = 0;
  int64_t lag = 0;
  int64_t leased = 0;
  int64_t acked = 0;
  int64_t dead_lettered = 0;
  std::vector<GroupPartitionDescription> partitions;
  std::vector<ConsumerDescription> consumers;
};

// What a group is made of; filled by the registry.
struct GroupContext {
  std::string name;
  std::shared_ptr<Topic> topic;
  GroupConfig config;
  uint64_t incarnation = 0;
  uint32_t boot_epoch = 0;
  int64_t created_ms = 0;
  const DeliveryTokenCodec* codec = nullptr;  // outlives the group
  GroupStore* store = nullptr;                // nullptr: state in RAM only (memory topics)
  Broker* broker = nullptr;                   // for the dead-letter topic; outlives the group
  Clock* clock = nullptr;                     // outlives the group
};

class ConsumerGroup {
 public:
  virtual ~ConsumerGroup() = default;
  ConsumerGroup(const ConsumerGroup&) = delete;
  ConsumerGroup& operator=(const ConsumerGroup&) = delete;

  const std::string& name() const { return ctx_.name; }
  const std::string& topic_name() const { return ctx_.topic->name(); }
  const GroupConfig& config() const { return ctx_.config; }
  uint64_t incarnation() const { return ctx_.incarnation; }
  const std::shared_ptr<Topic>& topic() const { return ctx_.topic; }
  GroupNotifier& notifier() { return notifier_; }
  // Whether the group's state is kept in the store (else in RAM only).
  bool durable() const { return ctx_.store != nullptr; }

  // ---- consumers (at-least-once and idempotent groups)

  // Leases up to `max` (1..kMaxFetch) messages to `consumer`, within its
  // prefetch: shared mode takes the next available messages round-robin
  // over the partitions; ordered mode reads the partitions assigned to the
  // consumer (joining it first, which may rebalance). An empty result means
  // nothing is available now (wait on notifier() and retry).
  // kFailedPrecondition for an exactly-once group (use Lease).
  absl::StatusOr<std::vector<Delivery>> Fetch(absl::string_view consumer, int max);

  // Acks each token alone (see AckResult); valid ones are durable when
  // this returns. Shared: the message is deleted for the group. Ordered:
  // the partition's committed offset moves past the message. An error
  // Status (not a refusal) means nothing was applied: the durable write
  // failed (retry) or the group is gone (kNotFound).
  absl::StatusOr<AckResult> Ack(absl::Span<const std::string> tokens) {
    return AckRefs(TokenRefs(tokens));
  }

  // Gives deliveries back: kRequeue redelivers them (delivery count + 1,
  // after backoff; dead-lettered when max_deliveries is reached);
  // kDeadLetter moves them to the dead-letter topic now (durable there and
  // marked done here when this returns).
  absl::StatusOr<AckResult> Nack(absl::Span<const std::string> tokens, NackAction action) {
    return NackRefs(TokenRefs(tokens), action);
  }

  // Fetch, Ack and Nack for a client that never sees the tokens (the
  // WebSocket's delivery tags): the service keeps each delivery's handle
  // and settles by it. FetchHandles leaves Delivery::token empty; the
  // handles must come from this group's fetches (they are checked to be
  // the group's and current, not verified as a client's token text is).
  // Refusals carry an empty token; their index says which.
  absl::StatusOr<std::vector<Delivery>> FetchHandles(absl::string_view consumer, int max);
  absl::StatusOr<AckResult> AckHandles(absl::Span<const DeliveryToken> handles) {
    return AckRefs(TokenRefs(handles));
  }
  absl::StatusOr<AckResult> NackHandles(absl::Span<const DeliveryToken> handles,
                                        NackAction action) {
    return NackRefs(TokenRefs(handles), action);
  }

  // Ordered mode: joins or leaves the group (a rebalance with a new
  // generation when membership changes). Shared mode: only bookkeeping
  // for Describe; Leave releases the consumer's leases.
  virtual absl::Status Join(absl::string_view consumer) = 0;
  virtual absl::Status Leave(absl::string_view consumer) = 0;
  // Keeps the consumer's session alive without fetching.
  virtual absl::Status Heartbeat(absl::string_view consumer) = 0;

  // ---- the 2PC coordinator (exactly-once groups; works on any group)

  // Fetch for a participant; allowed on exactly-once groups. Release the
  // leases with Nack(kRequeue) (abort) or delete them with Ack (done).
  absl::StatusOr<std::vector<Delivery>> Lease(absl::string_view participant, int max) {
    return FetchImpl(participant, max, /*token_text=*/true, /*alone_from=*/0);
  }
  // Pins leases once a COMMIT decision covers them: they never time out
  // and refuse Nack; only Ack (or AckPositions) ends them.
  absl::StatusOr<AckResult> Pin(absl::Span<const std::string> tokens) {
    return PinRefs(TokenRefs(tokens));
  }
  // Lease and Pin for the coordinator, which keeps handles (see
  // FetchHandles): LeaseHandles leaves Delivery::token empty; settle its
  // deliveries with PinHandles, AckHandles and NackHandles.
  //
  // `alone_from` > 0 (shared groups): a due redelivery whose delivery
  // count reaches alone_from is leased alone, before anything else, so
  // that a message whose transactions keep failing fails in one of its
  // own, and its batch-mates commit without it.
  absl::StatusOr<std::vector<Delivery>> LeaseHandles(absl::string_view participant, int max,
                                                     int alone_from = 0) {
    return FetchImpl(participant, max, /*token_text=*/false, alone_from);
  }
  absl::StatusOr<AckResult> PinHandles(absl::Span<const DeliveryToken> handles) {
    return PinRefs(TokenRefs(handles));
  }
  // Calls `done` once the records at `positions` are durable in the
  // topic's logs (OK), or with the first error that keeps one from being:
  // at once when they are, else from a thread that synced them (`done`
  // must be quick). The coordinator writes no decision, and releases no
  // lease, of records a crash could still take away. Thread-safe.
  void WhenDurable(absl::Span<const MessagePosition> positions, Log::DurableCallback done) const;

  // Marks messages done by position, with or without a lease, idempotently
  // and durably: for the coordinator's recovery, whose tokens died with a
  // restart. Ordered mode commits each partition past its highest one.
  virtual absl::Status AckPositions(absl::Span<const MessagePosition> positions) = 0;

  // ---- operators and the service

  // Moves the group (every partition, or only `partition` when >= 0) to
  // `to`: earliest, latest, an offset (clamped to the log's bounds) or the
  // first message at or after a time. Every outstanding delivery becomes
  // stale. Durable on return.
  virtual absl::Status Reset(const Position& to, int partition = -1) = 0;

  // Applies every deadline due at the clock's now (expired leases are
  // redelivered or dead-lettered, idle ordered consumers leave), retries
  // pending dead-letterings, and persists the lazily kept `dispatched`
  // cursor (redeliveries' counts are durable before they go out).
  virtual absl::Status Tick() = 0;

  virtual GroupDescription Describe() const = 0;

  // Per partition: every offset below it is done for this group (for
  // reclaiming space: the registry trims the log below the minimum over
  // the topic's groups).
  virtual std::vector<int64_t> DoneFloors() const = 0;

  // When the next deadline falls (for a waiter's timer), if any.
  virtual std::optional<int64_t> NextDeadlineMs() const = 0;

  // Waits for in-flight work to finish, then makes every call fail with
  // kNotFound. The registry calls it before deleting the group.
  virtual void Close() = 0;

 protected:
  explicit ConsumerGroup(GroupContext ctx) : ctx_(std::move(ctx)) {}

  // The log a mode reads partition `p` from: an exactly-once group sees
  // records once written (Topic::written_partition), since the coordinator
  // decides nothing before they are durable (WhenDurable); any other group
  // once durable.
  Log* PartitionLog(int p) const {
    return ctx_.config.guarantee == Guarantee::kExactlyOnce ? ctx_.topic->written_partition(p)
                                                            : ctx_.topic->partition(p);
  }

  // What each mode implements behind the calls above. FetchImpl serves
  // Fetch and Lease (and their Handles forms: `token_text` false leaves
  // Delivery::token empty; `alone_from`: see LeaseHandles, 0 for off);
  // AckRefs, NackRefs and PinRefs take the tokens as texts or as handles.
  virtual absl::StatusOr<std::vector<Delivery>> FetchImpl(absl::string_view consumer, int max,
                                                          bool token_text, int alone_from) = 0;
  virtual absl::StatusOr<AckResult> AckRefs(const TokenRefs& tokens) = 0;
  virtual absl::StatusOr<AckResult> NackRefs(const TokenRefs& tokens, NackAction action) = 0;
  virtual absl::StatusOr<AckResult> PinRefs(const TokenRefs& tokens) = 0;

  // Decodes `text` and checks that it is a token of this group for an
  // existing partition: kInvalidArgument otherwise. A token of this group
  // from an earlier boot epoch is kFailedPrecondition (stale: deliveries
  // are void after a restart).
  absl::StatusOr<DeliveryToken> CheckToken(absl::string_view text) const;
  // CheckToken's checks of a token already decoded (a handle).
  absl::Status CheckHandle(const DeliveryToken& t) const;
  DeliveryToken MakeHandle(int partition, int64_t offset, uint64_t sequence, int32_t deliveries,
                           uint32_t generation) const;
  std::string EncodeToken(const DeliveryToken& t) const;

  // The offset that `position` names in `log` (clamped to its bounds).
  static absl::StatusOr<int64_t> ResolvePosition(const Log& log, const Position& position);

  // The wait before redelivering a message delivered `deliveries` times.
  int64_t Backoff(int32_t deliveries) const;

  static absl::Status CheckFetchArgs(absl::string_view consumer, int max);
  static absl::Status CheckTokenCount(size_t n);
  // Reads exactly the records at `offsets` (ascending) of `log`.
  static absl::StatusOr<std::vector<Record>> ReadOffsets(const Log& log,
                                                         absl::Span<const int64_t> offsets);

  int partition_count() const { return ctx_.topic->partition_count(); }

  const GroupContext ctx_;
  GroupNotifier notifier_;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_CONSUMER_GROUP_H_
