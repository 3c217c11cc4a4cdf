// The disk log's implementation class, shared by its two source files:
// disk_log.cc (opening, recovery, reads, trimming, retention) and
// disk_log_append.cc (appends, group commit, syncs). Not part of the API:
// include broker/disk_log.h.
#ifndef ONCE_BROKER_DISK_LOG_IMPL_H_
#define ONCE_BROKER_DISK_LOG_IMPL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "broker/disk_log.h"
#include "broker/segment.h"
#include "broker/wake_word.h"
#include "spdlog/spdlog.h"

namespace once::broker {

// Concurrency:
//  - append_mu_ serializes writers: offset assignment, encoding, the write()
//    of a batch and segment rolls. The write is I/O under this lock on
//    purpose (one writer at a time keeps frames contiguous); fdatasync is
//    never done under it, except the one sync of a roll.
//  - Group commit (kAlways) combines appenders: each Append queues itself
//    on queue_mu_ (held for a push) and sleeps; one of them, the combiner,
//    takes every queued append, writes them all with one write() and
//    covers them with one fdatasync, hands the combiner role to the first
//    append that queued meanwhile, and wakes its group with one futex wake
//    (combine_round_). So an append costs one sleep and one wake-up, and
//    the appenders never contend for append_mu_: on a 2-core machine, 16
//    appenders taking append_mu_ one after another each cost a chain of
//    context switches that took longer than the fdatasync they waited for.
//  - sync_mu_ guards what is written/durable. An appender that needs
//    durability (the combiner; under kInterval the one whose interval is
//    due; Sync()) waits until a sync covering its offsets has finished; if
//    none is running it becomes the leader (leading_), captures how far the
//    log is written, runs fdatasync without any lock, publishes the new
//    durable offset and bumps sync_round_, on which the others sleep.
//  - segments_mu_ guards the segment list, which readers search briefly and
//    then read from a shared_ptr without any lock (pread is thread-safe, and
//    a segment removed meanwhile stays readable until dropped).
//  - remove_mu_ serializes the removal of old segments so that they are
//    unlinked strictly oldest first (see RemoveSegments).
// Lock order: remove_mu_ -> segments_mu_; append_mu_ -> segments_mu_;
// append_mu_ -> sync_mu_. Segment's own lock is innermost.
//
// Visibility: readers see a record once its Append could return, i.e. once
// it is durable under the policy (kAlways: after the fdatasync that covers
// it; otherwise after its write). So a consumer never sees a record that a
// crash could then take away under kAlways. readable_offset_ and each
// segment's readable size are advanced together under sync_mu_. ReadWritten
// sees a record once written (next_offset_, segments' size(): both move
// after the write), for a reader that waits with WhenDurable before
// anything depends on it.
class DiskLogImpl final : public DiskLog {
 public:
  explicit DiskLogImpl(DiskLogOptions options) : options_(std::move(options)) {}

  ~DiskLogImpl() override {
    {
      // AppendAsync's group commits and callbacks may still run on the
      // executor.
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](DiskLogImpl* self) { return !self->combining_ && self->settling_ == 0; }, this));
    }
    absl::Status s = Sync();
    if (!s.ok()) spdlog::error("disk log {}: sync at close failed: {}", options_.dir, s.ToString());
    AnswerDurableWaiters(/*closing=*/true);
    // A closed log's files end where their records do (after a crash, the
    // next open cuts the reserve instead).
    absl::MutexLock lock(&append_mu_);
    if (active_ != nullptr) {
      s = active_->ReleaseReserve();
      if (!s.ok()) spdlog::warn("disk log {}: {}", options_.dir, s.ToString());
    }
  }

  absl::Status Recover();

  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override;
  void AppendAsync(std::vector<Record> records, AsyncStart start, AppendCallback done) override;
  absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const override;
  absl::Status TrimBefore(int64_t offset) override;
  absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                int64_t retention_bytes) override;
  absl::StatusOr<int64_t> OffsetForTime(int64_t time_ms) const override;
  absl::Status Sync() override;
  int64_t WrittenOffset() const override { return next_offset_.load(std::memory_order_acquire); }
  absl::StatusOr<std::vector<Record>> ReadWritten(int64_t offset, ReadLimits limits) const override;
  void WhenDurable(int64_t offset, DurableCallback done) override;
  int64_t FirstOffset() const override { return first_offset_.load(std::memory_order_acquire); }
  // What readers can see: under kAlways a written record is readable (and
  // counted here) only once durable, so that a group never plans a read of
  // an offset that Read would not yet return. Append uses next_offset_.
  int64_t NextOffset() const override { return readable_offset_.load(std::memory_order_acquire); }
  LogStats Stats() const override;
  const RecoveryReport& recovery_report() const override { return report_; }
  const DiskLogOptions& options() const override { return options_; }

 private:
  // One Append call (a record batch) on its way to the log. An Append's
  // lives on its caller's stack, which sleeps until `done`; an
  // AppendAsync's owns its records and is settled by calling `callback`
  // (and deleting it).
  struct PendingAppend {
    absl::Span<const Record> records;
    int64_t first = -1;   // the batch's first offset, once written
    absl::Status status;  // set before `done`
    std::atomic<bool> done{false};
    std::atomic<bool> lead{false};  // made the combiner of the next group
    std::vector<Record> owned;      // AppendAsync: what `records` views
    AppendCallback callback;        // AppendAsync: set; Append: empty
    bool async() const { return callback != nullptr; }
  };
  // kAlways: queues `me` and waits until a combiner wrote and synced it,
  // or until `me` is made the combiner.
  void CombineAppend(PendingAppend* me) ABSL_LOCKS_EXCLUDED(queue_mu_, append_mu_, sync_mu_);
  // The combiner's round: gathers the queued appends, writes and syncs
  // them, settles each and hands the role on: to the first queued Append,
  // or, when the first queued is an AppendAsync (no thread waits for it),
  // back to the caller by returning true.
  bool CombineGroup() ABSL_LOCKS_EXCLUDED(queue_mu_, append_mu_, sync_mu_);
  // Combines groups on the executor until the role passes to an Append or
  // nothing is queued.
  void CombineOnExecutor() ABSL_LOCKS_EXCLUDED(queue_mu_, append_mu_, sync_mu_);
  // The serialized part of Append: encodes and writes the batches of
  // `group` as one write (an encoding error fails only its own batch), and
  // publishes them unless the policy is kAlways. `*end` is the offset after
  // the last record written.
  absl::Status Write(absl::Span<PendingAppend* const> group, int64_t* end, bool* sync_due)
      ABSL_LOCKS_EXCLUDED(append_mu_, sync_mu_);
  absl::Status Roll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
  // How the active segment reserves space ahead of its writes (see
  // Segment::Reserve): a log that syncs every append writes zeros 1 MiB
  // ahead (its syncs then commit data only); the others allocate 4 MiB
  // ahead, which costs no bandwidth. Never past a segment's size, so a
  // partition holds at most that much reserve (released when sealed).
  void ReserveAhead(Segment* segment) const {
    if (options_.fsync == FsyncPolicy::kAlways) {
      segment->set_reserve(Segment::Reserve::kZeros,
                           std::min<int64_t>(options_.segment_bytes, int64_t{1} << 20));
    } else {
      segment->set_reserve(Segment::Reserve::kAllocate,
                           std::min<int64_t>(options_.segment_bytes, int64_t{4} << 20));
    }
  }
  // Returns once every offset below `offset` is durable (or the log failed).
  absl::Status WaitDurable(int64_t offset) ABSL_LOCKS_EXCLUDED(sync_mu_, append_mu_);
  // One sync, run by the caller holding leading_.
  void LeadSync() ABSL_LOCKS_EXCLUDED(sync_mu_, append_mu_);
  // Makes a new durable offset visible to waiters (without sync_mu_).
  void SetDurableLocked(int64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Wakes every WaitDurable caller to look again.
  void WakeWaiters();
  void Publish(Segment* segment, int64_t size, int64_t next_offset)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Marks the log failed: after a failed fdatasync the page cache can no
  // longer be trusted to match the disk, so nothing more is written.
  void Fail(const absl::Status& cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  absl::Status FailureStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Unlinks `victims` (already out of segments_), oldest first.
  absl::Status RemoveSegments(const std::vector<std::shared_ptr<Segment>>& victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(remove_mu_);
  absl::Status RangeError(int64_t offset, int64_t end) const;
  // Read and ReadWritten: up to readable_offset_ or next_offset_.
  absl::StatusOr<std::vector<Record>> ReadUpTo(int64_t offset, ReadLimits limits,
                                               bool written) const;
  // Answers the WhenDurable callers whose records are durable now, or can
  // no longer be (the log failed, or is `closing`), outside every lock.
  void AnswerDurableWaiters(bool closing = false) ABSL_LOCKS_EXCLUDED(sync_mu_);
  // Recovery helpers.
  absl::Status DropSegmentFiles(const std::vector<int64_t>& bases, int64_t* dropped_bytes);

  const DiskLogOptions options_;
  RecoveryReport report_;

  mutable absl::Mutex segments_mu_;
  // Ordered by base offset; the last one is the active segment.
  std::vector<std::shared_ptr<Segment>> segments_ ABSL_GUARDED_BY(segments_mu_);
  std::atomic<int64_t> first_offset_{0};

  absl::Mutex remove_mu_ ABSL_ACQUIRED_BEFORE(segments_mu_);

  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(sync_mu_, segments_mu_);
  std::shared_ptr<Segment> active_ ABSL_GUARDED_BY(append_mu_);
  FrameBatch batch_ ABSL_GUARDED_BY(append_mu_);
  // Written under append_mu_, after the segment's write: what Append
  // numbers from and what ReadWritten sees.
  std::atomic<int64_t> next_offset_{0};

  absl::Mutex sync_mu_;
  // How far the log is written: the segment holding the newest bytes, its
  // size and the offset after its last record.
  std::shared_ptr<Segment> written_segment_ ABSL_GUARDED_BY(sync_mu_);
  int64_t written_size_ ABSL_GUARDED_BY(sync_mu_) = 0;
  int64_t written_offset_ ABSL_GUARDED_BY(sync_mu_) = 0;
  int64_t durable_offset_ ABSL_GUARDED_BY(sync_mu_) = 0;  // all below are durable
  // durable_offset_ for readers without the lock (written under it).
  std::atomic<int64_t> durable_{0};
  // An appender is leading a sync (set and cleared by it alone).
  std::atomic<bool> leading_{false};
  // Bumped (and notified) whenever durable_, leading_ or failed_ changed:
  // what WaitDurable callers sleep on.
  WakeWord sync_round_;
  int64_t last_sync_ms_ ABSL_GUARDED_BY(sync_mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(sync_mu_);
  // WhenDurable callers waiting for durable_offset_ to reach `offset`.
  struct DurableWaiter {
    int64_t offset = 0;
    DurableCallback done;
  };
  std::vector<DurableWaiter> durable_waiters_ ABSL_GUARDED_BY(sync_mu_);

  // Group commit (kAlways): the appends waiting for the combiner, whether
  // one is active, how many appends the next group should gather (see
  // CombineGroup) and how long the last group took to write and sync.
  absl::Mutex queue_mu_ ABSL_ACQUIRED_BEFORE(append_mu_);
  std::vector<PendingAppend*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool combining_ ABSL_GUARDED_BY(queue_mu_) = false;
  // Callbacks of settled groups handed to the executor and not yet run.
  int settling_ ABSL_GUARDED_BY(queue_mu_) = 0;
  size_t expected_group_ ABSL_GUARDED_BY(queue_mu_) = 1;
  absl::Duration last_group_duration_ ABSL_GUARDED_BY(queue_mu_) = absl::ZeroDuration();
  // Bumped (and notified) when a group is settled: what queued appends
  // sleep on.
  WakeWord combine_round_;
  std::atomic<bool> failed_{false};

  std::atomic<int64_t> readable_offset_{0};
  std::atomic<int64_t> appends_{0};
  std::atomic<int64_t> syncs_{0};
};

}  // namespace once::broker

#endif  // ONCE_BROKER_DISK_LOG_IMPL_H_
