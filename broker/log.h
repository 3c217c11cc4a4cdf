// A Log is one partition's ordered, offset-addressed sequence of records: the
// broker's single storage primitive, with a memory and a disk backend.
#ifndef ONCE_BROKER_LOG_H_
#define ONCE_BROKER_LOG_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "broker/record.h"

namespace once::broker {

struct ReadLimits {
  // A read returns at most this many records...
  size_t max_records = 1000;
  // ...and stops before the record that would take it past this many
  // PayloadBytes(), except that the first record is always returned, so a
  // record larger than the limit can still be read.
  size_t max_bytes = 1 << 20;
};

struct LogStats {
  int64_t first_offset = 0;  // the lowest offset still readable
  int64_t next_offset = 0;   // the offset the next append gets
  int64_t size_bytes = 0;    // bytes held (memory) or on disk (disk)
  int64_t segments = 0;      // segment files (disk); 0 for memory
  int64_t appends = 0;       // Append calls that succeeded since open
  int64_t syncs = 0;         // fdatasync calls since open (disk)
};

class Log {
 public:
  virtual ~Log() = default;

  // Appends `records` in order with consecutive offsets from NextOffset(),
  // and returns the first one. Each record's `offset` is ignored and its
  // other fields are stored as given. Returns only once the records are as
  // durable as the log's policy says (disk, fsync=always: on stable storage;
  // concurrent appenders share one fdatasync). Errors: kResourceExhausted
  // when a memory log's budget is full (nothing is appended),
  // kInvalidArgument for an empty batch. Thread-safe.
  virtual absl::StatusOr<int64_t> Append(absl::Span<const Record> records) = 0;

  // What AppendAsync calls with Append's result.
  using AppendCallback = absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&>;

  // Where AppendAsync may run the group commit that an idle log starts.
  enum class AsyncStart {
    // On the calling thread, as Append would (no hand-off to another
    // thread); AppendAsync then returns after that group's fdatasync.
    kHere,
    // Never on the calling thread: for a caller that starts several logs'
    // appends whose fdatasyncs should overlap.
    kExecutor,
  };

  // Append without waiting: `done` is called once with what Append would
  // have returned, when Append would have returned it (so no earlier than
  // the records are durable under the policy). For a caller that has other
  // work than waiting for a sync: a request handler that answers from the
  // callback does not hold its thread while a group commit runs, and any
  // number of appends in flight share one fdatasync, not only as many as
  // there are threads to block. `done` may run on this thread before
  // AppendAsync returns, or on another thread; it must be quick and must
  // not block on this log (it may call AppendAsync). This default runs
  // Append and then `done`; the disk log under fsync=always with an
  // executor is asynchronous (see `start`).
  virtual void AppendAsync(std::vector<Record> records, AsyncStart start, AppendCallback done) {
    (void)start;
    absl::StatusOr<int64_t> first = Append(records);
    std::move(done)(std::move(first));
  }

  // Returns records from `offset` on, in order, within `limits`. An offset
  // equal to NextOffset() gives an empty result (nothing yet); one below
  // FirstOffset() (trimmed or past retention) or above NextOffset() gives
  // kOutOfRange with both bounds in the message. Thread-safe, and safe
  // concurrently with Append.
  virtual absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const = 0;

  // Drops what lies below `offset`: a memory log frees those records; a
  // disk log removes every segment whose records all lie below it (so
  // FirstOffset() may stay below `offset`). Never drops unread-by-contract
  // data above `offset`. Thread-safe.
  virtual absl::Status TrimBefore(int64_t offset) = 0;

  // Applies retention at `now_ms`: removes whole segments (disk) or the
  // oldest records (memory) older than `retention_ms` or beyond
  // `retention_bytes` of total size; a negative limit means none. The disk
  // backend never removes the segment being appended to. Thread-safe.
  virtual absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                        int64_t retention_bytes) = 0;

  // Returns the first offset whose record's timestamp is >= `time_ms`, or
  // NextOffset() when there is none. Thread-safe.
  virtual absl::StatusOr<int64_t> OffsetForTime(int64_t time_ms) const = 0;

  // Makes every appended record durable now, whatever the policy.
  virtual absl::Status Sync() = 0;

  // ---- Records written but not yet durable (the exactly-once path).
  //
  // Under fsync=always a disk log makes a record readable only once it is
  // on stable storage. A reader that can wait for that later may see it as
  // soon as it is written: the 2PC coordinator PREPAREs a batch while its
  // fdatasync runs, and writes the COMMIT decision only once WhenDurable
  // says the batch is durable (a crash before that loses the records and
  // the transaction, which nobody decided: presumed abort). Everywhere
  // else (memory logs, other policies) written and readable are the same.

  // The offset after the last record written; >= NextOffset().
  virtual int64_t WrittenOffset() const { return NextOffset(); }
  // Read up to WrittenOffset() instead of NextOffset().
  virtual absl::StatusOr<std::vector<Record>> ReadWritten(int64_t offset, ReadLimits limits) const {
    return Read(offset, limits);
  }
  // What WhenDurable calls: OK once every record below the offset is
  // durable under the policy, or the error that stops them from being (a
  // failed fdatasync, a closed log).
  using DurableCallback = absl::AnyInvocable<void(absl::Status) &&>;
  // Calls `done` once every record below `offset` is durable: at once when
  // they are, else from the thread that synced them (it must be quick and
  // must not block on this log). `offset` <= WrittenOffset(). Thread-safe.
  virtual void WhenDurable(int64_t offset, DurableCallback done) {
    (void)offset;
    std::move(done)(absl::OkStatus());
  }

  virtual int64_t FirstOffset() const = 0;
  virtual int64_t NextOffset() const = 0;
  virtual LogStats Stats() const = 0;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_LOG_H_
