#include "broker/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

absl::Status ErrnoError(int err, absl::string_view op, absl::string_view path) {
  return absl::ErrnoToStatus(err, absl::StrCat(op, " ", path));
}

}  // namespace

absl::StatusOr<File> File::Open(std::string path, Mode mode) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case Mode::kReadOnly:
      flags |= O_RDONLY;
      break;
    case Mode::kReadWrite:
      flags |= O_RDWR;
      break;
    case Mode::kCreateNew:
      flags |= O_RDWR | O_CREAT | O_EXCL;
      break;
  }
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, "open", path);
  return File(std::move(path), fd);
}

File::File(File&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    Close().IgnoreError();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

File::~File() {
  absl::Status s = Close();
  if (!s.ok()) spdlog::warn("{}", s.ToString());
}

absl::Status File::Append(absl::string_view data) {
  struct stat st;
  if (::fstat(fd_, &st) < 0) return ErrnoError(errno, "fstat", path_);
  return WriteAt(static_cast<int64_t>(st.st_size), data);
}

absl::Status File::WriteAt(int64_t offset, absl::string_view data) {
  const char* p = data.data();
  size_t left = data.size();
  off_t at = static_cast<off_t>(offset);
  while (left > 0) {
    ssize_t n = ::pwrite(fd_, p, left, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("write of ", left, " bytes at byte ", at, " of"),
                        path_);
    }
    p += n;
    at += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status File::WriteZerosAt(int64_t offset, int64_t length) {
  static constexpr size_t kChunk = 64 << 10;
  static const char kZeros[kChunk] = {};
  while (length > 0) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(length, kChunk));
    absl::Status s = WriteAt(offset, absl::string_view(kZeros, n));
    if (!s.ok()) return s;
    offset += static_cast<int64_t>(n);
    length -= static_cast<int64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status File::StartWriteback(int64_t offset, int64_t length) {
  int r;
  do {
    r = ::sync_file_range(fd_, static_cast<off64_t>(offset), static_cast<off64_t>(length),
                          SYNC_FILE_RANGE_WRITE);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoError(errno, "sync_file_range", path_);
  return absl::OkStatus();
}

absl::StatusOr<size_t> File::ReadAt(int64_t offset, size_t n, char* dst) const {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd_, dst + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read of ", n, " bytes at byte ", offset, " of"),
                        path_);
    }
    if (r == 0) break;  // end of file
    done += static_cast<size_t>(r);
  }
  return done;
}

absl::Status File::Sync() const {
  int r;
  do {
    r = ::fdatasync(fd_);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoError(errno, "fdatasync", path_);
  return absl::OkStatus();
}

absl::Status File::Preallocate(int64_t offset, int64_t length) {
  int r;
  do {
    r = ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length));
  } while (r < 0 && errno == EINTR);
  if (r == 0) return absl::OkStatus();
  if (errno == EOPNOTSUPP || errno == ENOSYS) {
    return absl::UnimplementedError(absl::StrCat("fallocate is not supported for ", path_));
  }
  return ErrnoError(errno, absl::StrCat("reserve ", length, " bytes at ", offset, " of"), path_);
}

absl::Status File::Truncate(int64_t size) {
  int r;
  do {
    r = ::ftruncate(fd_, static_cast<off_t>(size));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoError(errno, absl::StrCat("truncate to ", size, " bytes of"), path_);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> File::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) < 0) return ErrnoError(errno, "fstat", path_);
  return static_cast<int64_t>(st.st_size);
}

absl::Status File::Close() {
  if (fd_ < 0) return absl::OkStatus();
  int fd = fd_;
  fd_ = -1;
  // Linux releases the descriptor even when close fails (also on EINTR), so
  // it is never retried.
  if (::close(fd) < 0) return ErrnoError(errno, "close", path_);
  return absl::OkStatus();
}

absl::Status CreateDirs(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("CreateDirs: empty directory path");
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty() || partial == "/") continue;
    if (::mkdir(partial.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError(errno, "mkdir", partial);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) return ErrnoError(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  int fd;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(errno, "open directory", dir);
  int r;
  do {
    r = ::fsync(fd);
  } while (r < 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (r < 0) return ErrnoError(err, "fsync directory", dir);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError(errno, "opendir", dir);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError(err, "readdir", dir);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) < 0) return ErrnoError(errno, "unlink", path);
  return absl::OkStatus();
}

absl::Status RenameFile(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0) {
    return ErrnoError(errno, "rename", absl::StrCat(from, " to ", to));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PathExists(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoError(errno, "stat", path);
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

}  // namespace once::broker
