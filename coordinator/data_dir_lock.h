// DataDirLock: keeps a second onced off a data directory. It holds an
// exclusive flock(2) on <data_dir>/LOCK for its lifetime and writes the
// holder's pid into the file, so that the refusal can say who holds it.
//
// flock locks belong to the open file description: the kernel drops the
// lock when the process dies, however it dies, so a crash never leaves a
// stale lock behind (the file and its old pid may stay; they mean
// nothing without the lock).
#ifndef ONCE_COORDINATOR_DATA_DIR_LOCK_H_
#define ONCE_COORDINATOR_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::coordinator {

class DataDirLock {
 public:
  // Creates `data_dir` when missing and locks its LOCK file.
  // kFailedPrecondition naming the directory and the holder's pid when
  // another process holds it; other errors name the path and errno.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(absl::string_view data_dir);

  // Releases the lock (the file stays).
  ~DataDirLock();

  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  DataDirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  const int fd_;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_DATA_DIR_LOCK_H_
