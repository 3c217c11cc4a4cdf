#include "broker/consumer_group.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "schema/status_macros.h"

namespace once::broker {

absl::Status AckResult::ToStatus() const {
  if (refused.empty()) return absl::OkStatus();
  const TokenRefusal* first_invalid = nullptr;
  for (const TokenRefusal& r : refused) {
    if (absl::IsInvalidArgument(r.status)) {
      first_invalid = &r;
      break;
    }
  }
  const TokenRefusal& quoted = first_invalid != nullptr ? *first_invalid : refused.front();
  std::string message =
      absl::StrCat(refused.size(), " token(s) refused, ", applied, " applied; token #",
                   quoted.index, ": ", quoted.status.message());
  if (first_invalid != nullptr) return absl::InvalidArgumentError(message);
  return absl::FailedPreconditionError(message);
}

absl::StatusOr<std::vector<Delivery>> ConsumerGroup::Fetch(absl::string_view consumer, int max) {
  ONCE_RETURN_IF_ERROR(CheckDirectFetch(ctx_.config, topic_name(), name()));
  return FetchImpl(consumer, max, /*token_text=*/true, /*alone_from=*/0);
}

absl::StatusOr<std::vector<Delivery>> ConsumerGroup::FetchHandles(absl::string_view consumer,
                                                                  int max) {
  ONCE_RETURN_IF_ERROR(CheckDirectFetch(ctx_.config, topic_name(), name()));
  return FetchImpl(consumer, max, /*token_text=*/false, /*alone_from=*/0);
}

void ConsumerGroup::WhenDurable(absl::Span<const MessagePosition> positions,
                                Log::DurableCallback done) const {
  // Per partition, the offset after its highest record.
  absl::flat_hash_map<int, int64_t> ends;
  for (const MessagePosition& m : positions) {
    int64_t& end = ends[m.partition];
    end = std::max(end, m.offset + 1);
  }
  struct Join {
    absl::Mutex mu;
    size_t left ABSL_GUARDED_BY(mu) = 0;
    absl::Status status ABSL_GUARDED_BY(mu);
    Log::DurableCallback done;
  };
  auto join = std::make_shared<Join>();
  join->done = std::move(done);
  {
    absl::MutexLock lock(&join->mu);
    join->left = ends.size() + 1;  // + this call, so that `done` runs once, last
  }
  auto arrive = [join](absl::Status s) {
    absl::Status status;
    {
      absl::MutexLock lock(&join->mu);
      if (join->status.ok()) join->status = std::move(s);
      if (--join->left > 0) return;
      status = join->status;
    }
    std::move(join->done)(std::move(status));
  };
  for (const auto& [partition, end] : ends) {
    Log* log = ctx_.topic->partition(partition);
    if (log == nullptr) {
      arrive(absl::InvalidArgumentError(
          absl::StrCat("topic \"", topic_name(), "\" has no partition ", partition)));
      continue;
    }
    log->WhenDurable(end, [arrive](absl::Status s) mutable { arrive(std::move(s)); });
  }
  arrive(absl::OkStatus());
}

absl::StatusOr<DeliveryToken> ConsumerGroup::CheckToken(absl::string_view text) const {
  ONCE_ASSIGN_OR_RETURN(DeliveryToken t, ctx_.codec->Decode(text));
  ONCE_RETURN_IF_ERROR(CheckHandle(t));
  return t;
}

absl::Status ConsumerGroup::CheckHandle(const DeliveryToken& t) const {
  if (t.incarnation != ctx_.incarnation) {
    return absl::InvalidArgumentError(
        absl::StrCat("delivery token belongs to another group (incarnation ", t.incarnation,
                     "), not to group \"", ctx_.name, "\" of topic \"", topic_name(), "\""));
  }
  if (t.partition < 0 || t.partition >= partition_count()) {
    return absl::InvalidArgumentError(absl::StrCat("delivery token names partition ", t.partition,
                                                   " but topic \"", topic_name(), "\" has ",
                                                   partition_count()));
  }
  if (t.boot_epoch != ctx_.boot_epoch) {
    return absl::FailedPreconditionError(
        absl::StrCat("stale delivery token for ", topic_name(), "/", t.partition, "/", t.offset,
                     ": it was issued before the broker restarted (deliveries are void after a "
                     "restart; the message is delivered again unless it was acked)"));
  }
  return absl::OkStatus();
}

DeliveryToken ConsumerGroup::MakeHandle(int partition, int64_t offset, uint64_t sequence,
                                        int32_t deliveries, uint32_t generation) const {
  DeliveryToken t;
  t.incarnation = ctx_.incarnation;
  t.boot_epoch = ctx_.boot_epoch;
  t.generation = generation;
  t.partition = partition;
  t.offset = offset;
  t.sequence = sequence;
  t.delivery_count = deliveries;
  return t;
}

std::string ConsumerGroup::EncodeToken(const DeliveryToken& t) const {
  return ctx_.codec->Encode(t);
}

absl::StatusOr<int64_t> ConsumerGroup::ResolvePosition(const Log& log, const Position& p) {
  const int64_t first = log.FirstOffset();
  const int64_t next = log.NextOffset();
  switch (p.kind) {
    case PositionKind::kEarliest:
      return first;
    case PositionKind::kLatest:
      return next;
    case PositionKind::kOffset:
      return std::clamp(p.value, first, next);
    case PositionKind::kTime: {
      ONCE_ASSIGN_OR_RETURN(int64_t at, log.OffsetForTime(p.value));
      return std::clamp(at, first, next);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown position kind ", static_cast<int>(p.kind)));
}

absl::Status ConsumerGroup::CheckFetchArgs(absl::string_view consumer, int max) {
  ONCE_RETURN_IF_ERROR(ValidateConsumerId(consumer));
  if (max < 1 || max > kMaxFetch) {
    return absl::InvalidArgumentError(
        absl::StrCat("fetch max must be in 1..", kMaxFetch, ", not ", max));
  }
  return absl::OkStatus();
}

absl::Status ConsumerGroup::CheckTokenCount(size_t n) {
  if (n > kMaxTokensPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxTokensPerCall, " tokens per call, not ", n));
  }
  return absl::OkStatus();
}

// Reads exactly the records at `offsets` (ascending) of `log`.
absl::StatusOr<std::vector<Record>> ConsumerGroup::ReadOffsets(const Log& log,
                                                               absl::Span<const int64_t> offsets) {
  std::vector<Record> out;
  out.reserve(offsets.size());
  size_t i = 0;
  while (i < offsets.size()) {
    size_t j = i + 1;
    while (j < offsets.size() && offsets[j] == offsets[j - 1] + 1) ++j;
    // [offsets[i], offsets[j-1]] is a run; read it, possibly in pieces.
    int64_t next = offsets[i];
    const int64_t end = offsets[j - 1] + 1;
    while (next < end) {
      ReadLimits limits;
      limits.max_records = static_cast<size_t>(end - next);
      limits.max_bytes = std::numeric_limits<size_t>::max();
      ONCE_ASSIGN_OR_RETURN(std::vector<Record> got, log.Read(next, limits));
      if (got.empty()) {
        return absl::InternalError(
            absl::StrCat("log read at offset ", next, " returned nothing below ", end));
      }
      for (Record& r : got) {
        if (r.offset != next) {
          return absl::InternalError(
              absl::StrCat("log read expected offset ", next, " and got ", r.offset));
        }
        out.push_back(std::move(r));
        if (++next == end) break;
      }
    }
    i = j;
  }
  return out;
}

int64_t ConsumerGroup::Backoff(int32_t deliveries) const {
  const GroupConfig& c = ctx_.config;
  if (c.backoff_base_ms <= 0 || deliveries <= 0) return 0;
  int64_t wait = c.backoff_base_ms;
  for (int32_t i = 1; i < deliveries && wait < c.backoff_max_ms; ++i) wait *= 2;
  return std::min(wait, c.backoff_max_ms);
}

}  // namespace once::broker
