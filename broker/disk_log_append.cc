// Appends and durability of the disk log: the group commit that combines
// concurrent appends into one write and one fdatasync, and the syncs.
#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/disk_log_impl.h"
#include "broker/fsync_histogram.h"
#include "broker/segment.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

// A batch buffer that grew past this is freed after use rather than kept.
constexpr size_t kMaxRetainedBatchBytes = 8 << 20;

// The longest a group-commit combiner waits for appenders to join its sync.
constexpr absl::Duration kMaxGroupWait = absl::Microseconds(500);

}  // namespace

void DiskLogImpl::Publish(Segment* segment, int64_t size, int64_t next_offset) {
  // Segment first, then the global limit: a reader that loads the limit and
  // then a segment's readable size finds every record below the limit.
  segment->Publish(size);
  if (next_offset > readable_offset_.load(std::memory_order_relaxed)) {
    readable_offset_.store(next_offset, std::memory_order_release);
  }
}

void DiskLogImpl::Fail(const absl::Status& cause) {
  if (failure_.ok()) {
    failure_ = cause;
    failed_.store(true, std::memory_order_release);
    spdlog::error("disk log {}: refusing further writes: {}", options_.dir, cause.ToString());
    WakeWaiters();
  }
}

void DiskLogImpl::SetDurableLocked(int64_t offset) {
  durable_offset_ = std::max(durable_offset_, offset);
  durable_.store(durable_offset_, std::memory_order_release);
}

void DiskLogImpl::WakeWaiters() { sync_round_.Bump(); }

absl::Status DiskLogImpl::FailureStatus() const {
  return absl::Status(failure_.code(),
                      absl::StrCat("disk log ", options_.dir,
                                   " refuses writes until reopened after an earlier failure: ",
                                   failure_.message()));
}

absl::StatusOr<int64_t> DiskLogImpl::Append(absl::Span<const Record> records) {
  if (records.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("Append to ", options_.dir, ": empty batch"));
  }
  PendingAppend me;
  me.records = records;
  if (options_.fsync == FsyncPolicy::kAlways) {
    CombineAppend(&me);
  } else {
    PendingAppend* const group[] = {&me};
    int64_t end = 0;
    bool sync_due = false;
    absl::Status written = Write(group, &end, &sync_due);
    if (written.ok() && me.status.ok() && sync_due) written = WaitDurable(end);
    if (me.status.ok()) me.status = written;
  }
  ONCE_RETURN_IF_ERROR(me.status);
  appends_.fetch_add(1, std::memory_order_relaxed);
  return me.first;
}

void DiskLogImpl::AppendAsync(std::vector<Record> records, AsyncStart start_on,
                              AppendCallback done) {
  if (options_.fsync != FsyncPolicy::kAlways || !options_.executor || records.empty()) {
    // No executor, or nothing to wait for but a write (or an interval's
    // sync): Append, then the callback.
    Log::AppendAsync(std::move(records), start_on, std::move(done));
    return;
  }
  auto* me = new PendingAppend;
  me->owned = std::move(records);
  me->records = me->owned;
  me->callback = std::move(done);
  bool start = false;
  {
    absl::MutexLock lock(&queue_mu_);
    queue_.push_back(me);
    start = !combining_;
    combining_ = true;
  }
  if (!start) return;  // the running combiner takes it
  if (start_on == AsyncStart::kExecutor) {
    options_.executor([this] { CombineOnExecutor(); });
    return;
  }
  // The first group runs here, as Append's would: an idle log's append
  // costs no hand-off. What queued meanwhile goes on on the executor.
  if (CombineGroup()) options_.executor([this] { CombineOnExecutor(); });
}

void DiskLogImpl::CombineOnExecutor() {
  while (CombineGroup()) {
  }
}

void DiskLogImpl::CombineAppend(PendingAppend* me) {
  bool combiner = false;
  {
    absl::MutexLock lock(&queue_mu_);
    queue_.push_back(me);
    combiner = !combining_;
    combining_ = true;
  }
  while (!combiner) {
    // The round is read before the flags: a combiner that sets one after
    // this bumps the round, so the wait cannot miss it.
    const uint32_t round = combine_round_.Load();
    if (me->done.load(std::memory_order_acquire)) return;
    combiner = me->lead.load(std::memory_order_acquire);
    if (!combiner) combine_round_.Wait(round);
  }
  // `me` is first in the queue now: the group taken next covers it.
  if (CombineGroup()) {
    // An AppendAsync queued first: the executor carries on, this caller
    // returns.
    options_.executor([this] { CombineOnExecutor(); });
  }
}

bool DiskLogImpl::CombineGroup() {
  std::vector<PendingAppend*> group;
  {
    absl::MutexLock lock(&queue_mu_);
    // Wait, briefly, for the appenders the last group settled, which are on
    // their way back with their next batch. Without this, appenders split
    // into two cohorts that alternate (one queues while the other's sync
    // runs), and each fdatasync covers only half of them. The wait ends as
    // soon as as many appends as were active queued, and is bounded by half
    // the last group's write and sync (and kMaxGroupWait): waiting longer
    // costs more than a late appender loses by joining the next group. A
    // drop in load (or paced publishers that happened to meet) costs at
    // most one such wait before the estimate adapts. Real time, not
    // options_.clock: this bounds a wait, it stamps nothing.
    auto gathered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
      return queue_.size() >= expected_group_;
    };
    if (!gathered()) {
      queue_mu_.AwaitWithTimeout(absl::Condition(&gathered),
                                 std::min(last_group_duration_ / 2, kMaxGroupWait));
    }
    group.swap(queue_);
  }
  const absl::Time start = absl::Now();
  int64_t end = 0;
  bool sync_due = false;
  absl::Status status = Write(group, &end, &sync_due);
  if (status.ok() && end > 0) {
    if (options_.on_written) options_.on_written();
    status = WaitDurable(end);
  }
  // The syncs answer the waiters they made durable (LeadSync, Roll); a
  // failed write fails them here.
  if (!status.ok()) AnswerDurableWaiters();
  const absl::Duration took = absl::Now() - start;
  bool more_queued = false;
  {
    absl::MutexLock lock(&queue_mu_);
    // The appenders active now: this group, and those that queued while it
    // was written and synced (counted before the callbacks below queue
    // their next appends, which are this group's appenders again).
    expected_group_ = group.size() + queue_.size();
    last_group_duration_ = took;
    more_queued = !queue_.empty();
  }
  // Settle the group. Once `done` is set its owner may return and free the
  // PendingAppend: nothing touches it after that.
  bool sleepers = false;
  std::vector<PendingAppend*> callbacks;
  for (PendingAppend* p : group) {
    if (p->status.ok()) p->status = status;
    if (p->async()) {
      if (p->status.ok()) appends_.fetch_add(1, std::memory_order_relaxed);
      callbacks.push_back(p);
    } else {
      sleepers = true;
      p->done.store(true, std::memory_order_release);
    }
  }
  if (!callbacks.empty()) {
    auto settle = [callbacks = std::move(callbacks)] {
      for (PendingAppend* p : callbacks) {
        absl::StatusOr<int64_t> result =
            p->status.ok() ? absl::StatusOr<int64_t>(p->first) : absl::StatusOr<int64_t>(p->status);
        std::move(p->callback)(std::move(result));
        delete p;
      }
    };
    if (more_queued && options_.executor) {
      // Appends wait for the next group: it starts now, and the callbacks
      // (answers to requests, say) run beside it, counted for the
      // destructor.
      {
        absl::MutexLock lock(&queue_mu_);
        ++settling_;
      }
      options_.executor([this, settle = std::move(settle)]() mutable {
        settle();
        absl::MutexLock lock(&queue_mu_);
        --settling_;
      });
    } else {
      settle();
    }
  }
  bool continue_here = false;
  {
    absl::MutexLock lock(&queue_mu_);
    if (queue_.empty()) {
      combining_ = false;
    } else if (queue_.front()->async()) {
      continue_here = true;
    } else {
      queue_.front()->lead.store(true, std::memory_order_release);
      sleepers = true;
    }
  }
  // One futex wake for every Append settled or made the combiner.
  if (sleepers) combine_round_.Bump();
  return continue_here;
}

absl::Status DiskLogImpl::Write(absl::Span<PendingAppend* const> group, int64_t* end,
                                bool* sync_due) {
  absl::MutexLock lock(&append_mu_);
  if (failed_.load(std::memory_order_acquire)) {
    absl::MutexLock sync_lock(&sync_mu_);
    return FailureStatus();
  }
  int64_t next = next_offset_.load(std::memory_order_relaxed);
  batch_.Clear();
  for (PendingAppend* p : group) {
    const size_t bytes_before = batch_.bytes.size();
    const size_t frames_before = batch_.frames.size();
    for (size_t i = 0; i < p->records.size() && p->status.ok(); ++i) {
      p->status = batch_.Add(p->records[i], next + static_cast<int64_t>(i));
    }
    if (!p->status.ok()) {
      // Refused alone (a record too large to frame): the others go on.
      batch_.bytes.resize(bytes_before);
      batch_.frames.resize(frames_before);
      continue;
    }
    p->first = next;
    next += static_cast<int64_t>(p->records.size());
  }
  *end = next;
  if (batch_.frames.empty()) {
    *end = 0;  // nothing to write or sync
    return absl::OkStatus();
  }
  if (active_->size() > 0 &&
      active_->size() + static_cast<int64_t>(batch_.bytes.size()) > options_.segment_bytes) {
    ONCE_RETURN_IF_ERROR(Roll());
  }
  absl::Status written = active_->Append(batch_);
  if (batch_.bytes.capacity() > kMaxRetainedBatchBytes) batch_ = FrameBatch();
  if (!written.ok()) {
    if (active_->broken()) {
      absl::MutexLock sync_lock(&sync_mu_);
      Fail(written);
    }
    return written;
  }
  next_offset_.store(next, std::memory_order_release);
  absl::MutexLock sync_lock(&sync_mu_);
  if (written_segment_.get() != active_.get()) written_segment_ = active_;
  written_size_ = active_->size();
  written_offset_ = next;
  switch (options_.fsync) {
    case FsyncPolicy::kAlways:
      break;
    case FsyncPolicy::kInterval:
      Publish(active_.get(), written_size_, next);
      *sync_due = !leading_.load(std::memory_order_acquire) &&
                  options_.clock->NowMs() - last_sync_ms_ >= options_.fsync_interval_ms;
      break;
    case FsyncPolicy::kNever:
      Publish(active_.get(), written_size_, next);
      break;
  }
  return absl::OkStatus();
}

absl::Status DiskLogImpl::Roll() {
  const std::shared_ptr<Segment> old = active_;
  // The sealed segment must be complete on disk before the next segment
  // exists: recovery treats any damage in a sealed segment as corruption,
  // never as a torn tail. This is the one fdatasync done under append_mu_,
  // once per segment_bytes.
  // A sealed segment keeps no reserved blocks past its end.
  absl::Status released = old->ReleaseReserve();
  if (!released.ok()) {
    spdlog::warn("disk log {}: {}", options_.dir, released.ToString());
  }
  const absl::Time sync_start = absl::Now();
  absl::Status synced = old->Sync();
  FsyncHistogram::Global().Observe(absl::Now() - sync_start);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&sync_mu_);
    if (!synced.ok()) {
      Fail(synced);
      return FailureStatus();
    }
    SetDurableLocked(old->next_offset());
    Publish(old.get(), old->size(), old->next_offset());
    last_sync_ms_ = options_.clock->NowMs();
  }
  WakeWaiters();  // the roll's sync covered them
  AnswerDurableWaiters();
  absl::Status indexed = old->WriteIndexFile();
  if (!indexed.ok()) {
    // Only an accelerator: the next open rebuilds it from the log.
    spdlog::warn("disk log {}: writing {} failed: {}", options_.dir, old->index_path(),
                 indexed.ToString());
  }
  ONCE_ASSIGN_OR_RETURN(
      std::unique_ptr<Segment> created,
      Segment::Create(options_.dir, old->next_offset(), options_.index_interval_bytes));
  std::shared_ptr<Segment> next = std::move(created);
  ReserveAhead(next.get());
  absl::Status dir_synced = SyncDir(options_.dir);
  if (!dir_synced.ok()) {
    // The new file may or may not survive a crash, and it cannot be created
    // again: stop here rather than write records a crash could lose.
    absl::MutexLock lock(&sync_mu_);
    Fail(dir_synced);
    return FailureStatus();
  }
  {
    absl::MutexLock lock(&segments_mu_);
    segments_.push_back(next);
  }
  active_ = std::move(next);
  return absl::OkStatus();
}

absl::Status DiskLogImpl::WaitDurable(int64_t offset) {
  for (;;) {
    // The round is read before the checks: whatever changes after them
    // bumps it, so the wait below cannot miss it.
    const uint32_t round = sync_round_.Load();
    if (durable_.load(std::memory_order_acquire) >= offset) return absl::OkStatus();
    if (failed_.load(std::memory_order_acquire)) {
      absl::MutexLock lock(&sync_mu_);
      return FailureStatus();
    }
    bool idle = false;
    if (leading_.compare_exchange_strong(idle, true, std::memory_order_acq_rel)) {
      LeadSync();
      continue;
    }
    sync_round_.Wait(round);
  }
}

void DiskLogImpl::LeadSync() {
  sync_mu_.Lock();
  // Everything written so far is covered by this sync.
  const std::shared_ptr<Segment> segment = written_segment_;
  const int64_t size = written_size_;
  const int64_t target = written_offset_;
  const bool needed = target > durable_offset_ && failure_.ok();
  if (needed) last_sync_ms_ = options_.clock->NowMs();
  sync_mu_.Unlock();
  if (needed) {
    const absl::Time start = absl::Now();
    absl::Status s = segment->Sync();
    const absl::Duration took = absl::Now() - start;
    syncs_.fetch_add(1, std::memory_order_relaxed);
    FsyncHistogram::Global().Observe(took);
    absl::MutexLock lock(&sync_mu_);
    if (s.ok()) {
      SetDurableLocked(target);
      if (options_.fsync == FsyncPolicy::kAlways) Publish(segment.get(), size, target);
    } else {
      Fail(s);
    }
  }
  leading_.store(false, std::memory_order_release);
  WakeWaiters();
  if (needed) AnswerDurableWaiters();
}

void DiskLogImpl::WhenDurable(int64_t offset, DurableCallback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&sync_mu_);
    // Under kInterval and kNever a written record is as durable as the
    // policy makes it (and readable).
    if (options_.fsync == FsyncPolicy::kAlways && durable_offset_ < offset) {
      if (failure_.ok()) {
        durable_waiters_.push_back({offset, std::move(done)});
        return;
      }
      status = FailureStatus();
    }
  }
  std::move(done)(status);
}

void DiskLogImpl::AnswerDurableWaiters(bool closing) {
  std::vector<DurableCallback> durable;
  std::vector<std::pair<DurableCallback, absl::Status>> failed;
  {
    absl::MutexLock lock(&sync_mu_);
    if (durable_waiters_.empty()) return;
    std::vector<DurableWaiter> waiting;
    for (DurableWaiter& w : durable_waiters_) {
      if (w.offset <= durable_offset_) {
        durable.push_back(std::move(w.done));
      } else if (!failure_.ok()) {
        failed.emplace_back(std::move(w.done), FailureStatus());
      } else if (closing) {
        failed.emplace_back(
            std::move(w.done),
            absl::UnavailableError(absl::StrCat("disk log ", options_.dir, " closed before offset ",
                                                w.offset, " was durable")));
      } else {
        waiting.push_back(std::move(w));
      }
    }
    durable_waiters_.swap(waiting);
  }
  for (DurableCallback& done : durable) std::move(done)(absl::OkStatus());
  for (auto& [done, status] : failed) std::move(done)(std::move(status));
}

absl::Status DiskLogImpl::Sync() {
  int64_t target;
  {
    absl::MutexLock lock(&sync_mu_);
    if (!failure_.ok()) return FailureStatus();
    target = written_offset_;
  }
  return WaitDurable(target);
}

}  // namespace once::broker
