#include "broker/disk_log.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/file.h"
#include "broker/fsync_histogram.h"
#include "broker/segment.h"
#include "broker/wake_word.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

// A batch buffer that grew past this is freed after use rather than kept.
constexpr size_t kMaxRetainedBatchBytes = 8 << 20;

// The longest a group-commit combiner waits for appenders to join its sync.
constexpr absl::Duration kMaxGroupWait = absl::Microseconds(500);

absl::Status ValidateOptions(const DiskLogOptions& o) {
  if (o.dir.empty()) return absl::InvalidArgumentError("DiskLogOptions.dir is empty");
  if (o.segment_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiskLogOptions.segment_bytes must be > 0, got ", o.segment_bytes));
  }
  if (o.index_interval_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DiskLogOptions.index_interval_bytes must be > 0, got ", o.index_interval_bytes));
  }
  if (o.fsync == FsyncPolicy::kInterval && o.fsync_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiskLogOptions.fsync_interval_ms must be > 0 with fsync=interval, got ",
                     o.fsync_interval_ms));
  }
  if (o.fsync != FsyncPolicy::kAlways && o.fsync != FsyncPolicy::kInterval &&
      o.fsync != FsyncPolicy::kNever) {
    return absl::InvalidArgumentError(
        absl::StrCat("DiskLogOptions.fsync has unknown value ", static_cast<int>(o.fsync)));
  }
  if (o.clock == nullptr) return absl::InvalidArgumentError("DiskLogOptions.clock is null");
  return absl::OkStatus();
}

std::string ParentDir(const std::string& dir) {
  size_t end = dir.size();
  while (end > 1 && dir[end - 1] == '/') --end;
  const size_t slash = dir.rfind('/', end - 1);
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return dir.substr(0, slash);
}

// Size of the file at `path`, or 0 when it cannot be opened (used only to
// report how many bytes were dropped).
int64_t FileSizeOrZero(const std::string& path) {
  absl::StatusOr<File> f = File::Open(path, File::Mode::kReadOnly);
  if (!f.ok()) return 0;
  absl::StatusOr<int64_t> size = f->Size();
  return size.ok() ? *size : 0;
}

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
// segment's readable size are advanced together under sync_mu_.
class DiskLogImpl final : public DiskLog {
 public:
  explicit DiskLogImpl(DiskLogOptions options) : options_(std::move(options)) {}

  ~DiskLogImpl() override {
    absl::Status s = Sync();
    if (!s.ok()) spdlog::error("disk log {}: sync at close failed: {}", options_.dir, s.ToString());
  }

  absl::Status Recover();

  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override;
  absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const override;
  absl::Status TrimBefore(int64_t offset) override;
  absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                int64_t retention_bytes) override;
  absl::StatusOr<int64_t> OffsetForTime(int64_t time_ms) const override;
  absl::Status Sync() override;
  int64_t FirstOffset() const override { return first_offset_.load(std::memory_order_acquire); }
  // What readers can see: under kAlways a written record is readable (and
  // counted here) only once durable, so that a group never plans a read of
  // an offset that Read would not yet return. Append uses next_offset_.
  int64_t NextOffset() const override { return readable_offset_.load(std::memory_order_acquire); }
  LogStats Stats() const override;
  const RecoveryReport& recovery_report() const override { return report_; }
  const DiskLogOptions& options() const override { return options_; }

 private:
  // One Append call (a record batch) on its way to the log.
  struct PendingAppend {
    absl::Span<const Record> records;
    int64_t first = -1;   // the batch's first offset, once written
    absl::Status status;  // set before `done`
    std::atomic<bool> done{false};
    std::atomic<bool> lead{false};  // made the combiner of the next group
  };
  // kAlways: queues `me` and waits until a combiner wrote and synced it,
  // or until `me` is made the combiner.
  void CombineAppend(PendingAppend* me) ABSL_LOCKS_EXCLUDED(queue_mu_, append_mu_, sync_mu_);
  // The combiner's round: gathers the queued appends, writes and syncs
  // them, settles each and hands the role on.
  void CombineGroup() ABSL_LOCKS_EXCLUDED(queue_mu_, append_mu_, sync_mu_);
  // The serialized part of Append: encodes and writes the batches of
  // `group` as one write (an encoding error fails only its own batch), and
  // publishes them unless the policy is kAlways. `*end` is the offset after
  // the last record written.
  absl::Status Write(absl::Span<PendingAppend* const> group, int64_t* end, bool* sync_due)
      ABSL_LOCKS_EXCLUDED(append_mu_, sync_mu_);
  absl::Status Roll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_);
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
  absl::Status RangeError(int64_t offset) const;
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
  std::atomic<int64_t> next_offset_{0};  // written under append_mu_

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

  // Group commit (kAlways): the appends waiting for the combiner, whether
  // one is active, how many appends the next group should gather (see
  // CombineGroup) and how long the last group took to write and sync.
  absl::Mutex queue_mu_ ABSL_ACQUIRED_BEFORE(append_mu_);
  std::vector<PendingAppend*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool combining_ ABSL_GUARDED_BY(queue_mu_) = false;
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

absl::Status DiskLogImpl::DropSegmentFiles(const std::vector<int64_t>& bases,
                                           int64_t* dropped_bytes) {
  // Newest first: a crash part way leaves the older ones, still in order.
  for (auto it = bases.rbegin(); it != bases.rend(); ++it) {
    const std::string log = JoinPath(options_.dir, Segment::LogFileName(*it));
    const std::string index = JoinPath(options_.dir, Segment::IndexFileName(*it));
    *dropped_bytes += FileSizeOrZero(log);
    ONCE_RETURN_IF_ERROR(RemoveFile(log));
    absl::Status s = RemoveFile(index);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    spdlog::error("disk log {}: removed {} after the corruption before it", options_.dir, log);
  }
  return SyncDir(options_.dir);
}

absl::Status DiskLogImpl::Recover() {
  const std::string& dir = options_.dir;
  ONCE_ASSIGN_OR_RETURN(const bool exists, PathExists(dir));
  if (!exists) {
    ONCE_RETURN_IF_ERROR(CreateDirs(dir));
    ONCE_RETURN_IF_ERROR(SyncDir(ParentDir(dir)));
  }
  ONCE_ASSIGN_OR_RETURN(const std::vector<std::string> names, ListDir(dir));
  std::vector<int64_t> bases;
  for (const std::string& name : names) {
    int64_t base;
    if (Segment::ParseLogFileName(name, &base)) bases.push_back(base);
  }
  std::sort(bases.begin(), bases.end());
  // Leftovers: index files whose segment is gone (a removal that crashed
  // between the two unlinks) and temporary index files.
  for (const std::string& name : names) {
    bool stray = absl::EndsWith(name, ".index.tmp");
    if (!stray && absl::EndsWith(name, ".index")) {
      int64_t base;
      const std::string log_name = name.substr(0, name.size() - 6) + ".log";
      stray = Segment::ParseLogFileName(log_name, &base) &&
              !std::binary_search(bases.begin(), bases.end(), base);
    }
    if (stray) {
      absl::Status s = RemoveFile(JoinPath(dir, name));
      if (!s.ok()) spdlog::warn("disk log {}: {}", dir, s.ToString());
    }
  }

  std::vector<std::shared_ptr<Segment>> kept;
  if (bases.empty()) {
    ONCE_ASSIGN_OR_RETURN(std::unique_ptr<Segment> seg,
                          Segment::Create(dir, 0, options_.index_interval_bytes));
    ONCE_RETURN_IF_ERROR(SyncDir(dir));
    kept.push_back(std::move(seg));
  }
  const bool truncate_corruption = options_.on_corruption == CorruptionPolicy::kTruncate;
  for (size_t i = 0; i < bases.size(); ++i) {
    const bool last = i + 1 == bases.size();
    ONCE_ASSIGN_OR_RETURN(std::unique_ptr<Segment> seg,
                          Segment::Open(dir, bases[i], options_.index_interval_bytes));
    // Segments must continue one another.
    if (!kept.empty() && bases[i] != kept.back()->next_offset()) {
      const std::string what = absl::StrCat(
          seg->log_path(), " starts at offset ", bases[i], " but the segment before it (",
          kept.back()->log_path(), ") ends at offset ", kept.back()->next_offset(),
          bases[i] > kept.back()->next_offset() ? ": records are missing" : ": records overlap");
      if (!truncate_corruption) return absl::DataLossError(what);
      spdlog::error("disk log {}: {}; dropping it and every later segment", dir, what);
      report_.corruption = what;
      ONCE_RETURN_IF_ERROR(DropSegmentFiles(
          std::vector<int64_t>(bases.begin() + static_cast<ptrdiff_t>(i), bases.end()),
          &report_.dropped_corrupt_bytes));
      break;
    }

    bool scan_needed = last || options_.verify_sealed_segments;
    bool index_rebuilt = false;
    if (!last) {
      std::string why_not;
      ONCE_ASSIGN_OR_RETURN(const bool loaded, seg->LoadIndex(&why_not));
      if (!loaded) {
        spdlog::warn("disk log {}: rebuilding {} from the log: {}", dir, seg->index_path(),
                     why_not);
        scan_needed = true;
        index_rebuilt = true;
      }
    }
    if (scan_needed) {
      ONCE_ASSIGN_OR_RETURN(const SegmentScan scan, seg->Scan());
      if (scan.damaged) {
        // The torn-tail rule (record_format.md): damage in the last segment
        // that a torn write can produce, with no intact record after it, is
        // the end of a write that a crash interrupted; anything else is
        // corruption.
        const bool torn = last && scan.could_be_torn && scan.next_valid_position < 0;
        const int64_t cut = scan.file_size - scan.valid_bytes;
        if (torn) {
          spdlog::warn(
              "disk log {}: cutting a torn write of {} bytes at byte {} from the end of {} ({})",
              dir, cut, scan.valid_bytes, seg->log_path(), scan.damage);
          ONCE_RETURN_IF_ERROR(seg->TruncateTo(scan.valid_bytes));
          report_.truncated_bytes = cut;
          report_.truncated_file = seg->log_path();
        } else {
          std::string what = absl::StrCat(seg->log_path(), ": corrupt record at byte ",
                                          scan.valid_bytes, ": ", scan.damage);
          if (scan.next_valid_position >= 0) {
            absl::StrAppend(&what, "; an intact record (offset ", scan.next_valid_offset,
                            ") follows at byte ", scan.next_valid_position);
          }
          if (!last) absl::StrAppend(&what, " (a sealed segment: it cannot have a torn tail)");
          if (!truncate_corruption) return absl::DataLossError(what);
          spdlog::error("disk log {}: {}; cutting the log there ({} bytes of this segment)", dir,
                        what, cut);
          report_.corruption = what;
          ONCE_RETURN_IF_ERROR(DropSegmentFiles(
              std::vector<int64_t>(bases.begin() + static_cast<ptrdiff_t>(i) + 1, bases.end()),
              &report_.dropped_corrupt_bytes));
          ONCE_RETURN_IF_ERROR(seg->TruncateTo(scan.valid_bytes));
          report_.dropped_corrupt_bytes += cut;
          kept.push_back(std::move(seg));
          break;
        }
      }
    }
    if (index_rebuilt && !last) {
      ++report_.rebuilt_indexes;
      absl::Status s = seg->WriteIndexFile();
      if (!s.ok()) spdlog::warn("disk log {}: could not rewrite the index: {}", dir, s.ToString());
    }
    kept.push_back(std::move(seg));
  }

  // The active segment's index lives in memory (it is rebuilt by the scan
  // at every open); a file left from when it was sealed is stale.
  std::shared_ptr<Segment> active = kept.back();
  absl::Status s = active->RemoveIndexFile();
  if (!s.ok()) spdlog::warn("disk log {}: {}", dir, s.ToString());
  // What recovery found may still be only in the page cache of a process
  // that died; readers will see it, so make it durable first.
  ONCE_RETURN_IF_ERROR(active->Sync());
  ONCE_RETURN_IF_ERROR(SyncDir(dir));

  for (const auto& seg : kept) seg->Publish(seg->size());
  const int64_t next = active->next_offset();
  first_offset_.store(kept.front()->base_offset(), std::memory_order_release);
  next_offset_.store(next, std::memory_order_release);
  readable_offset_.store(next, std::memory_order_release);
  report_.segments = static_cast<int64_t>(kept.size());
  {
    absl::MutexLock lock(&sync_mu_);
    written_segment_ = active;
    written_size_ = active->size();
    written_offset_ = next;
    SetDurableLocked(next);
    last_sync_ms_ = options_.clock->NowMs();
  }
  {
    absl::MutexLock lock(&append_mu_);
    active_ = active;
  }
  {
    absl::MutexLock lock(&segments_mu_);
    segments_ = std::move(kept);
  }
  return absl::OkStatus();
}

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
  CombineGroup();
}

void DiskLogImpl::CombineGroup() {
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
  if (status.ok() && end > 0) status = WaitDurable(end);
  const absl::Duration took = absl::Now() - start;
  // Settle the group. Once `done` is set its owner may return and free the
  // PendingAppend: nothing touches it after that.
  for (PendingAppend* p : group) {
    if (p->status.ok()) p->status = status;
    p->done.store(true, std::memory_order_release);
  }
  {
    absl::MutexLock lock(&queue_mu_);
    // The appenders active now: this group, and those that queued while it
    // was written and synced.
    expected_group_ = group.size() + queue_.size();
    last_group_duration_ = took;
    if (queue_.empty()) {
      combining_ = false;
    } else {
      queue_.front()->lead.store(true, std::memory_order_release);
    }
  }
  combine_round_.Bump();
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

absl::Status DiskLogImpl::RangeError(int64_t offset) const {
  const int64_t first = FirstOffset();
  const int64_t next = NextOffset();
  if (offset < first) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset,
                                              " is below the first retained offset ", first, " of ",
                                              options_.dir, " (next offset ", next, ")"));
  }
  return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ", options_.dir,
                                            " (next offset ", next, ", first offset ", first, ")"));
}

absl::StatusOr<std::vector<Record>> DiskLogImpl::Read(int64_t offset, ReadLimits limits) const {
  if (offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Read from ", options_.dir, ": offset ", offset, " is negative"));
  }
  if (limits.max_records == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Read from ", options_.dir, ": ReadLimits.max_records is 0"));
  }
  // The limit first: every record below it is then in a published segment.
  const int64_t limit = readable_offset_.load(std::memory_order_acquire);
  if (offset < FirstOffset() || offset > NextOffset()) return RangeError(offset);
  std::vector<Record> out;
  size_t bytes = 0;
  int64_t cur = offset;
  while (cur < limit) {
    std::shared_ptr<Segment> segment;
    {
      absl::ReaderMutexLock lock(&segments_mu_);
      auto it = std::upper_bound(
          segments_.begin(), segments_.end(), cur,
          [](int64_t o, const std::shared_ptr<Segment>& s) { return o < s->base_offset(); });
      if (it != segments_.begin()) segment = *std::prev(it);
    }
    if (segment == nullptr) {
      // Trimmed while we read.
      if (out.empty()) return RangeError(cur);
      break;
    }
    ONCE_ASSIGN_OR_RETURN(const Segment::ReadResult r,
                          segment->Read(cur, limit, limits, &out, &bytes));
    if (r.full || r.next_offset <= cur) break;
    cur = r.next_offset;
  }
  return out;
}

absl::StatusOr<int64_t> DiskLogImpl::OffsetForTime(int64_t time_ms) const {
  const int64_t limit = readable_offset_.load(std::memory_order_acquire);
  std::vector<std::shared_ptr<Segment>> segments;
  {
    absl::ReaderMutexLock lock(&segments_mu_);
    segments = segments_;
  }
  for (const auto& segment : segments) {
    if (segment->base_offset() >= limit) break;
    ONCE_ASSIGN_OR_RETURN(const std::optional<int64_t> found, segment->FindTime(time_ms, limit));
    if (found.has_value()) return *found;
  }
  return limit;
}

absl::Status DiskLogImpl::RemoveSegments(const std::vector<std::shared_ptr<Segment>>& victims) {
  // Strictly oldest first, each removal durable before the next: a crash
  // then leaves a contiguous run of segments, never a gap that recovery
  // would have to call corruption.
  for (const auto& segment : victims) {
    ONCE_RETURN_IF_ERROR(segment->RemoveFiles());
    ONCE_RETURN_IF_ERROR(SyncDir(options_.dir));
    spdlog::info("disk log {}: removed {} (offsets {}..{})", options_.dir, segment->log_path(),
                 segment->base_offset(), segment->next_offset() - 1);
  }
  return absl::OkStatus();
}

absl::Status DiskLogImpl::TrimBefore(int64_t offset) {
  absl::MutexLock remove_lock(&remove_mu_);
  std::vector<std::shared_ptr<Segment>> victims;
  {
    absl::MutexLock lock(&segments_mu_);
    // Never the last (active) segment.
    size_t n = 0;
    while (n + 1 < segments_.size() && segments_[n]->next_offset() <= offset) ++n;
    victims.assign(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(n));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(n));
    first_offset_.store(segments_.front()->base_offset(), std::memory_order_release);
  }
  return RemoveSegments(victims);
}

absl::Status DiskLogImpl::EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                           int64_t retention_bytes) {
  absl::MutexLock remove_lock(&remove_mu_);
  std::vector<std::shared_ptr<Segment>> victims;
  {
    absl::MutexLock lock(&segments_mu_);
    int64_t total = 0;
    for (const auto& segment : segments_) total += segment->size();
    size_t n = 0;
    while (n + 1 < segments_.size()) {
      const Segment& s = *segments_[n];
      const bool expired = retention_ms >= 0 && (s.max_timestamp() == kNoTimestamp ||
                                                 now_ms - s.max_timestamp() > retention_ms);
      const bool over = retention_bytes >= 0 && total > retention_bytes;
      if (!expired && !over) break;
      total -= s.size();
      ++n;
    }
    victims.assign(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(n));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(n));
    first_offset_.store(segments_.front()->base_offset(), std::memory_order_release);
  }
  return RemoveSegments(victims);
}

LogStats DiskLogImpl::Stats() const {
  LogStats stats;
  {
    absl::ReaderMutexLock lock(&segments_mu_);
    for (const auto& segment : segments_) stats.size_bytes += segment->size();
    stats.segments = static_cast<int64_t>(segments_.size());
  }
  stats.first_offset = FirstOffset();
  stats.next_offset = NextOffset();
  stats.appends = appends_.load(std::memory_order_relaxed);
  stats.syncs = syncs_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DiskLog>> DiskLog::Open(DiskLogOptions options) {
  ONCE_RETURN_IF_ERROR(ValidateOptions(options));
  auto log = std::make_unique<DiskLogImpl>(std::move(options));
  ONCE_RETURN_IF_ERROR(log->Recover());
  return std::unique_ptr<DiskLog>(std::move(log));
}

}  // namespace once::broker
