// SharedGroup: Fetch and Lease (reserving, making redelivery counts
// durable, reading the records). The rest is in broker/group_shared.cc and
// broker/group_shared_settle.cc.
#include "broker/group_shared.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {

absl::StatusOr<std::vector<Delivery>> SharedGroup::FetchImpl(absl::string_view consumer, int max,
                                                             bool token_text, int alone_from) {
  ONCE_RETURN_IF_ERROR(CheckFetchArgs(consumer, max));
  const int64_t now = ctx_.clock->NowMs();
  std::vector<Reserved> reserved;
  bool changed = false;
  bool dead_letters_due = false;
  {
    absl::MutexLock lock(&mu_);
    ONCE_RETURN_IF_ERROR(EnterLocked());
    changed = ExpireLocked(now);
    const uint32_t cid = TouchConsumerLocked(consumer, now);
    const int64_t capacity = ctx_.config.prefetch - leases_.HeldBy(cid);
    if (capacity < max) prefetch_full_ = true;
    int64_t want = std::min<int64_t>(max, capacity);
    const int n = static_cast<int>(parts_.size());
    // Per partition: the next redelivery candidate and the fresh range.
    struct Source {
      absl::btree_map<int64_t, Retry>::iterator retry;
      int64_t fresh_end = 0;
    };
    std::vector<Source> sources(n);
    for (int p = 0; p < n; ++p) {
      Partition& part = parts_[p];
      CatchUpWithRetentionLocked(part);
      sources[p].retry = part.retry.begin();
      sources[p].fresh_end = part.log->NextOffset();
      if (!part.dead.empty()) dead_letters_due = true;
    }
    // A due redelivery that reaches alone_from goes out alone (the first
    // found, in this fetch's round-robin order), and nothing else does.
    for (int i = 0; alone_from > 0 && want > 0 && i < n; ++i) {
      const int p = (round_robin_ + i) % n;
      Partition& part = parts_[p];
      auto it = std::find_if(part.retry.begin(), part.retry.end(), [&](const auto& entry) {
        return entry.second.not_before_ms <= now && entry.second.deliveries + 1 >= alone_from;
      });
      if (it == part.retry.end()) continue;
      reserved.push_back({p, it->first, it->second.deliveries + 1, 0});
      part.retry.erase(it);
      want = 0;
    }
    // Round-robin, one message per partition per turn, starting one
    // partition further at each fetch so that small fetches spread too.
    std::vector<std::vector<int64_t>> retried(n);
    bool progress = true;
    while (want > 0 && progress) {
      progress = false;
      for (int i = 0; i < n && want > 0; ++i) {
        const int p = (round_robin_ + i) % n;
        Partition& part = parts_[p];
        Source& src = sources[p];
        while (src.retry != part.retry.end() && src.retry->second.not_before_ms > now) {
          ++src.retry;
        }
        if (src.retry != part.retry.end()) {
          reserved.push_back({p, src.retry->first, src.retry->second.deliveries + 1, 0});
          retried[p].push_back(src.retry->first);
          ++src.retry;
        } else if ((part.cursor = part.done.NextAbsent(part.cursor)) < src.fresh_end) {
          reserved.push_back({p, part.cursor, 1, 0});
          ++part.cursor;
        } else {
          continue;
        }
        --want;
        progress = true;
      }
    }
    if (n > 0) round_robin_ = (round_robin_ + 1) % n;
    for (int p = 0; p < n; ++p) {
      for (int64_t o : retried[p]) parts_[p].retry.erase(o);
    }
    for (Reserved& r : reserved) {
      r.sequence = ++sequence_;
      leases_.Add(::once::broker::Lease{r.partition, r.offset, cid, r.deliveries, r.sequence,
                                        now + ctx_.config.ack_timeout_ms, LeaseState::kActive,
                                        LeaseState::kActive});
      if (r.deliveries >= 2) parts_[r.partition].dirty_counts[r.offset] = r.deliveries;
    }
    if (!reserved.empty()) ++inflight_;
  }
  if (changed) notifier_.Notify();
  if (dead_letters_due) {
    if (absl::Status s = DrainDeadLetters(); !s.ok()) {
      spdlog::warn("group \"{}\" of topic \"{}\": dead-lettering failed: {}", name(), topic_name(),
                   s.ToString());
    }
  }
  if (reserved.empty()) return std::vector<Delivery>();
  absl::Status count_status = PersistRedeliveryCounts(&reserved);
  if (reserved.empty()) {
    absl::MutexLock lock(&mu_);
    --inflight_;
    return count_status;
  }

  // Read the records without the lock. Reserved entries are grouped by
  // partition in ascending offset order for ReadOffsets.
  std::vector<Reserved> sorted = reserved;
  std::sort(sorted.begin(), sorted.end(), [](const Reserved& a, const Reserved& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::vector<Delivery> out;
  out.reserve(sorted.size());
  absl::Status read_status;
  std::vector<MessagePosition> gone;  // trimmed by retention meanwhile
  std::vector<const Reserved*> unread;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    std::vector<int64_t> offsets;
    while (j < sorted.size() && sorted[j].partition == sorted[i].partition) {
      offsets.push_back(sorted[j].offset);
      ++j;
    }
    const int p = sorted[i].partition;
    absl::StatusOr<std::vector<Record>> records = ReadOffsets(*parts_[p].log, offsets);
    if (records.ok()) {
      for (size_t k = 0; k < records->size(); ++k) {
        const Reserved& r = sorted[i + k];
        Delivery d;
        d.partition = p;
        d.record = std::move((*records)[k]);
        d.delivery_count = r.deliveries;
        d.handle = MakeHandle(p, r.offset, r.sequence, r.deliveries, 0);
        if (token_text) d.token = EncodeToken(d.handle);
        out.push_back(std::move(d));
      }
    } else if (absl::IsOutOfRange(records.status())) {
      for (size_t k = i; k < j; ++k) gone.push_back({p, sorted[k].offset});
    } else {
      read_status = absl::Status(
          records.status().code(),
          absl::StrCat("reading ", topic_name(), "/", p, ": ", records.status().message()));
      for (size_t k = i; k < j; ++k) unread.push_back(&sorted[k]);
    }
    i = j;
  }
  {
    absl::MutexLock lock(&mu_);
    --inflight_;
    for (const MessagePosition& m : gone) {
      // Retention removed them between the reservation and the read; a
      // later fetch skips what lies below the log's start.
      leases_.Remove(m.partition, m.offset);
      CatchUpWithRetentionLocked(parts_[m.partition]);
    }
    for (const Reserved* r : unread) GiveBackLocked(*r);
  }
  if (read_status.ok()) read_status = count_status;
  if (!read_status.ok() && out.empty()) return read_status;
  if (!read_status.ok()) {
    spdlog::warn("group \"{}\": fetch returns {} of the messages it reserved: {}", name(),
                 out.size(), read_status.ToString());
  }
  return out;
}

absl::Status SharedGroup::PersistRedeliveryCounts(std::vector<Reserved>* reserved) {
  if (!durable()) return absl::OkStatus();
  const bool any = std::any_of(reserved->begin(), reserved->end(),
                               [](const Reserved& r) { return r.deliveries >= 2; });
  if (!any) return absl::OkStatus();
  // Writes every dirty count of the group (ours among them) and the
  // dispatch cursors, in one transaction shared with concurrent writers.
  // A count missing from dirty_counts here was written by a commit that
  // has completed, so on success all of ours are durable.
  absl::Status s = SettleDone({}, /*dead_lettered=*/false);
  if (s.ok()) return s;
  s = absl::Status(s.code(), absl::StrCat("group \"", name(), "\" of topic \"", topic_name(),
                                          "\": recording redelivery counts: ", s.message()));
  absl::MutexLock lock(&mu_);
  std::vector<Reserved> first_deliveries;
  for (const Reserved& r : *reserved) {
    if (r.deliveries >= 2) {
      GiveBackLocked(r);
    } else {
      first_deliveries.push_back(r);
    }
  }
  reserved->swap(first_deliveries);
  return s;
}

void SharedGroup::GiveBackLocked(const Reserved& r) {
  const ::once::broker::Lease* l = leases_.Find(r.partition, r.offset);
  if (l == nullptr || l->sequence != r.sequence) return;
  leases_.Remove(r.partition, r.offset);
  Partition& part = parts_[r.partition];
  part.retry[r.offset] = Retry{r.deliveries - 1, 0};
  UndoDirtyCount(r.offset, r.deliveries, part.dirty_counts);
}

}  // namespace once::broker
