#include "coordinator/data_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace once::coordinator {
namespace {

absl::Status ErrnoError(absl::string_view what, absl::string_view path, int err) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// The pid written in the lock file, or "unknown".
std::string ReadHolder(int fd) {
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "unknown";
  std::string pid(absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n))));
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(absl::string_view data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(std::string(data_dir)), ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the data directory ", data_dir, ": ", ec.message()));
  }
  const std::string path = (std::filesystem::path(std::string(data_dir)) / "LOCK").string();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot open the lock file", path, errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = err == EWOULDBLOCK ? ReadHolder(fd) : "";
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("the data directory ", data_dir, " is in use by another onced (pid ", holder,
                       " holds ", path, "); stop it or choose another --data-dir"));
    }
    return ErrnoError("cannot lock", path, err);
  }
  // Ours now: record who holds it.
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    close(fd);
    return ErrnoError("cannot write the pid into", path, err);
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(path, fd));
}

DataDirLock::~DataDirLock() {
  // Closing the descriptor releases the flock.
  close(fd_);
}

}  // namespace once::coordinator
