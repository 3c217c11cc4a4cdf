#include "broker/disk_log.h"
#include "broker/disk_log_impl.h"

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

}  // namespace

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
      if (scan.reserved_bytes > 0) {
        // Zeros the segment reserved ahead of its records (Segment::Reserve):
        // cut, so that the file ends where its records do.
        spdlog::debug("disk log {}: cutting {} reserved bytes from the end of {}", dir,
                      scan.reserved_bytes, seg->log_path());
        ONCE_RETURN_IF_ERROR(seg->TruncateTo(scan.valid_bytes));
      }
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
    ReserveAhead(active.get());
    active_ = active;
  }
  {
    absl::MutexLock lock(&segments_mu_);
    segments_ = std::move(kept);
  }
  return absl::OkStatus();
}

absl::Status DiskLogImpl::RangeError(int64_t offset, int64_t end) const {
  const int64_t first = FirstOffset();
  if (offset < first) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset,
                                              " is below the first retained offset ", first, " of ",
                                              options_.dir, " (next offset ", end, ")"));
  }
  return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ", options_.dir,
                                            " (next offset ", end, ", first offset ", first, ")"));
}

absl::StatusOr<std::vector<Record>> DiskLogImpl::Read(int64_t offset, ReadLimits limits) const {
  return ReadUpTo(offset, limits, /*written=*/false);
}

absl::StatusOr<std::vector<Record>> DiskLogImpl::ReadWritten(int64_t offset,
                                                             ReadLimits limits) const {
  return ReadUpTo(offset, limits, /*written=*/true);
}

absl::StatusOr<std::vector<Record>> DiskLogImpl::ReadUpTo(int64_t offset, ReadLimits limits,
                                                          bool written) const {
  if (offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Read from ", options_.dir, ": offset ", offset, " is negative"));
  }
  if (limits.max_records == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Read from ", options_.dir, ": ReadLimits.max_records is 0"));
  }
  // The limit first: every record below it is then in a published segment
  // (or, written, below its size()).
  const int64_t limit = written ? next_offset_.load(std::memory_order_acquire)
                                : readable_offset_.load(std::memory_order_acquire);
  if (offset < FirstOffset() || offset > limit) return RangeError(offset, limit);
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
      if (out.empty()) return RangeError(cur, limit);
      break;
    }
    ONCE_ASSIGN_OR_RETURN(const Segment::ReadResult r,
                          segment->Read(cur, limit, limits, &out, &bytes, written));
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

absl::StatusOr<std::unique_ptr<DiskLog>> DiskLog::Open(DiskLogOptions options) {
  ONCE_RETURN_IF_ERROR(ValidateOptions(options));
  auto log = std::make_unique<DiskLogImpl>(std::move(options));
  ONCE_RETURN_IF_ERROR(log->Recover());
  return std::unique_ptr<DiskLog>(std::move(log));
}

}  // namespace once::broker
