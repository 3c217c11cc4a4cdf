#include "broker/group_settle.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace once::broker {

std::string MessageName(absl::string_view topic, int partition, int64_t offset) {
  return absl::StrCat(topic, "/", partition, "/", offset);
}

absl::Status DuplicateInCall(absl::string_view topic, const DeliveryToken& t) {
  return absl::FailedPreconditionError(
      absl::StrCat("message ", MessageName(topic, t.partition, t.offset),
                   " appears more than once in this call; only the first counts"));
}

absl::Status PinnedRefusal(absl::string_view topic, const DeliveryToken& t) {
  return absl::FailedPreconditionError(
      absl::StrCat("message ", MessageName(topic, t.partition, t.offset),
                   " is pinned by a commit decision: it can only be acked"));
}

void JudgeTokens(const TokenRefs& tokens,
                 absl::FunctionRef<absl::StatusOr<DeliveryToken>(absl::string_view)> decode,
                 absl::FunctionRef<absl::Status(const DeliveryToken&)> check,
                 absl::FunctionRef<absl::Status(const DeliveryToken&)> judge,
                 absl::FunctionRef<void(size_t index, const DeliveryToken&)> accept,
                 absl::string_view topic, AckResult* result) {
  absl::flat_hash_set<std::pair<int, int64_t>> accepted;
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StatusOr<DeliveryToken> t = tokens.handles() ? tokens.handle(i) : decode(tokens.text(i));
    absl::Status status = t.status();
    if (status.ok() && tokens.handles()) status = check(*t);
    if (status.ok()) status = judge(*t);
    // Judging changes nothing, so a second token for an accepted message
    // would pass too: only the first may settle it.
    if (status.ok() && !accepted.emplace(t->partition, t->offset).second) {
      status = DuplicateInCall(topic, *t);
    }
    if (!status.ok()) {
      result->refused.push_back(
          {i, tokens.handles() ? std::string() : tokens.text(i), std::move(status)});
      continue;
    }
    accept(i, *t);
  }
}

absl::Status CheckPosition(const Topic& topic, const MessagePosition& m) {
  if (m.partition < 0 || m.partition >= topic.partition_count()) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", m.partition, " is out of range for topic \"", topic.name(),
                     "\" (", topic.partition_count(), " partitions)"));
  }
  const Log* log = topic.partition(m.partition);
  if (m.offset < 0 || log == nullptr || m.offset >= log->NextOffset()) {
    return absl::InvalidArgumentError(absl::StrCat("offset ", m.offset, " of ", topic.name(), "/",
                                                   m.partition, " is not in the log"));
  }
  return absl::OkStatus();
}

void TakeDueDeadLetters(int partition, int64_t now_ms, PendingDeadLetters& pending,
                        std::vector<DeadLetter>* letters, std::vector<MessagePosition>* items) {
  for (auto& [offset, letter] : pending) {
    if (letter.in_progress || letter.retry_at_ms > now_ms) continue;
    letter.in_progress = true;
    letters->push_back({partition, offset, letter.deliveries, letter.reason});
    items->push_back({partition, offset});
  }
}

void ReleaseDeadLetter(int64_t offset, int64_t retry_at_ms, PendingDeadLetters& pending) {
  auto it = pending.find(offset);
  if (it == pending.end()) return;  // a reset forgot it meanwhile
  it->second.in_progress = false;
  it->second.retry_at_ms = retry_at_ms;
}

int64_t DeadLetterRetryAt(int64_t now_ms, const GroupConfig& config) {
  return now_ms + std::max(kDeadLetterRetryMs, config.backoff_base_ms);
}

void AddDirtyCounts(const DirtyCounts& dirty, PartitionUpdate* u) {
  for (auto it = dirty.lower_bound(u->done_floor); it != dirty.end(); ++it) {
    u->set_counts.emplace_back(it->first, it->second);
  }
}

void ForgetWrittenCounts(const PartitionUpdate& u, DirtyCounts& dirty) {
  for (const auto& [offset, deliveries] : u.set_counts) {
    auto it = dirty.find(offset);
    if (it != dirty.end() && it->second == deliveries) dirty.erase(it);
  }
}

void UndoDirtyCount(int64_t offset, int32_t deliveries, DirtyCounts& dirty) {
  // A count of 2 or more was made durable before its delivery went out,
  // so the store has it already; writing it again is merely redundant.
  if (deliveries - 1 >= 2) {
    dirty[offset] = deliveries - 1;
  } else {
    dirty.erase(offset);
  }
}

}  // namespace once::broker
