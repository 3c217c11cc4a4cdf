// The disk backend of Log: a directory of segment files for one partition.
// The on-disk format is documented in broker/record_format.md.
#ifndef ONCE_BROKER_DISK_LOG_H_
#define ONCE_BROKER_DISK_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "broker/broker.h"
#include "broker/log.h"
#include "broker/topic_config.h"

namespace once::broker {

struct DiskLogOptions {
  std::string dir;  // the partition's directory; created when missing
  // kAlways: Append returns once its records are on stable storage
  // (concurrent appenders share one fdatasync). kInterval: an Append that
  // finds fsync_interval_ms elapsed since the last sync syncs (and waits);
  // the owner also calls Sync() periodically. kNever: only Sync(), segment
  // rolls and close sync.
  FsyncPolicy fsync = FsyncPolicy::kAlways;
  int64_t fsync_interval_ms = 100;  // > 0 with kInterval
  // Roll to a new segment before an append that would take the active one
  // past this many bytes (a single batch larger than this gets a segment of
  // its own). > 0.
  int64_t segment_bytes = 64 << 20;
  int64_t index_interval_bytes = 4096;  // one sparse index entry per this many bytes; > 0
  CorruptionPolicy on_corruption = CorruptionPolicy::kRefuse;
  // Open always checks every record of the last segment. Sealed segments are
  // checked cheaply (their index, and their first and last records) unless
  // this is set, which CRC-checks every record of every segment. Damage a
  // cheap check misses is still caught, with kDataLoss, by the Read that
  // reaches it.
  bool verify_sealed_segments = false;
  Clock* clock = SystemClock();  // not owned; for kInterval
  // kAlways: where AppendAsync's group commits run (write, fdatasync,
  // callbacks), e.g. a thread pool. It must run every task it is given
  // while the log is open: the log's destructor waits for them. Without
  // one, AppendAsync is Append followed by its callback.
  std::function<void(absl::AnyInvocable<void()>)> executor;
  // kAlways: called after each group commit's write and before its
  // fdatasync, outside the log's locks: what it wrote can be read with
  // ReadWritten now (the broker wakes exactly-once groups with it). Quick,
  // and must not append to this log.
  std::function<void()> on_written;
};

// What Open found and did; also logged.
struct RecoveryReport {
  int64_t truncated_bytes = 0;        // torn tail cut from the last segment
  std::string truncated_file;         // which file (path), when truncated_bytes > 0
  int64_t dropped_corrupt_bytes = 0;  // CorruptionPolicy::kTruncate only
  std::string corruption;             // what kTruncate cut, and where; empty if nothing
  int64_t segments = 0;               // segment files kept
  int64_t rebuilt_indexes = 0;        // sealed segments whose .index was rebuilt
};

class DiskLog : public Log {
 public:
  // Opens or creates the log in options.dir and recovers it: a torn record
  // at the end of the last segment is truncated (and reported); damage
  // elsewhere fails with kDataLoss naming the file and byte position unless
  // options.on_corruption says to truncate there. kInvalidArgument names a
  // bad option. The rules are in broker/record_format.md ("Recovery").
  //
  // The log syncs what it holds when destroyed; no call may be running then.
  static absl::StatusOr<std::unique_ptr<DiskLog>> Open(DiskLogOptions options);

  virtual const RecoveryReport& recovery_report() const = 0;
  virtual const DiskLogOptions& options() const = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_DISK_LOG_H_
