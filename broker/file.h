// A small RAII wrapper over a POSIX file descriptor, and the few directory
// operations the disk log needs. Every failure is an absl::Status naming the
// operation, the path and the errno text; nothing throws.
#ifndef ONCE_BROKER_FILE_H_
#define ONCE_BROKER_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::broker {

class File {
 public:
  enum class Mode {
    kReadOnly,   // an existing file, read only
    kReadWrite,  // an existing file, read and written
    kCreateNew,  // a new file (kAlreadyExists if present), read and written
  };

  // Opens `path`. The descriptor is close-on-exec. Not O_APPEND: Linux's
  // pwrite ignores its offset under O_APPEND, and WriteAt needs it.
  static absl::StatusOr<File> Open(std::string path, Mode mode);

  File() = default;
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  // Closes the descriptor; an error there is logged, not returned (call
  // Close() first to see it).
  ~File();

  // Writes all of `data` at the end of the file, retrying short writes and
  // EINTR. On error some prefix of `data` may have been written: the caller
  // decides whether to Truncate it away. Not safe concurrently with another
  // Append or Truncate on the same File; safe concurrently with ReadAt and
  // Sync.
  absl::Status Append(absl::string_view data);

  // Writes all of `data` at byte `offset` (pwrite), over whatever is there
  // and extending the file when it ends before. Same retries, partial
  // writes and thread-safety as Append.
  absl::Status WriteAt(int64_t offset, absl::string_view data);

  // Writes `length` zero bytes at `offset` (real writes, not a hole or an
  // unwritten extent: see Segment::Reserve for why).
  absl::Status WriteZerosAt(int64_t offset, int64_t length);

  // Starts writing back the dirty pages of [offset, offset + length)
  // without waiting (sync_file_range SYNC_FILE_RANGE_WRITE): a later Sync
  // then finds less to write. Durability still comes from Sync alone.
  absl::Status StartWriteback(int64_t offset, int64_t length);

  // Reads up to `n` bytes at `offset` into `dst` and returns how many were
  // read: fewer than `n` only at end of file. Thread-safe (pread).
  absl::StatusOr<size_t> ReadAt(int64_t offset, size_t n, char* dst) const;

  // fdatasync: the data written so far (and the size) reach stable storage.
  // Thread-safe.
  absl::Status Sync() const;

  // Reserves disk blocks for [offset, offset + length) without changing the
  // file's size (fallocate with FALLOC_FL_KEEP_SIZE): a later write there
  // allocates nothing, so its fdatasync has less metadata to commit.
  // kUnimplemented where the file system cannot do it.
  absl::Status Preallocate(int64_t offset, int64_t length);

  // Cuts (or extends with zeros) the file to `size` bytes; blocks reserved
  // beyond `size` by Preallocate are released. Not durable until Sync().
  absl::Status Truncate(int64_t size);

  // The current size, from fstat. Thread-safe.
  absl::StatusOr<int64_t> Size() const;

  // Closes the descriptor and reports a failure. Idempotent.
  absl::Status Close();

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  File(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
};

// Creates `dir` and any missing parents (mode 0755). OK when it exists.
absl::Status CreateDirs(const std::string& dir);

// fsync on the directory itself, so that entries created, renamed or removed
// in it survive a crash.
absl::Status SyncDir(const std::string& dir);

// Names (not paths) of the entries of `dir`, without "." and "..", sorted.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir);

// Unlinks `path`; kNotFound when it does not exist.
absl::Status RemoveFile(const std::string& path);

// rename(2): atomically replaces `to`. Durable once the directory is synced.
absl::Status RenameFile(const std::string& from, const std::string& to);

// Whether `path` exists (any type). Errors other than ENOENT are returned.
absl::StatusOr<bool> PathExists(const std::string& path);

// Returns `dir` + "/" + `name`.
std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace once::broker

#endif  // ONCE_BROKER_FILE_H_
