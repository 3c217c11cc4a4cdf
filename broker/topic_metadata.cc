#include "broker/topic_metadata.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "boost/json.hpp"
#include "broker/partitioner.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "schema/status_macros.h"

namespace once::broker {

namespace {

namespace json = boost::json;

// Closes the descriptor it owns.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  // Closes now, reporting the error that a destructor would swallow.
  absl::Status Close(absl::string_view path) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("close ", path));
    return absl::OkStatus();
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open directory ", dir));
  if (::fsync(fd.get()) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("fsync ", dir));
  return fd.Close(dir);
}

absl::Status Damaged(absl::string_view file, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("topic metadata ", file, " is damaged: ", what));
}

absl::StatusOr<int64_t> GetInt(const json::object& obj, absl::string_view field,
                               absl::string_view file) {
  const json::value* v = obj.if_contains(json::string_view(field.data(), field.size()));
  if (v == nullptr) return Damaged(file, absl::StrCat("field \"", field, "\" is missing"));
  json::error_code ec;
  const int64_t n = v->to_number<int64_t>(ec);
  if (ec || !(v->is_int64() || v->is_uint64())) {
    return Damaged(file, absl::StrCat("field \"", field, "\" is not an integer"));
  }
  return n;
}

absl::StatusOr<std::string> GetString(const json::object& obj, absl::string_view field,
                                      absl::string_view file) {
  const json::value* v = obj.if_contains(json::string_view(field.data(), field.size()));
  if (v == nullptr) return Damaged(file, absl::StrCat("field \"", field, "\" is missing"));
  if (!v->is_string()) return Damaged(file, absl::StrCat("field \"", field, "\" is not a string"));
  const json::string& s = v->get_string();
  return std::string(s.data(), s.size());
}

// Decodes the JSON payload; the header was checked by the caller.
absl::StatusOr<TopicMetadata> DecodePayload(absl::string_view payload, absl::string_view file) {
  json::error_code ec;
  json::value root = json::parse(json::string_view(payload.data(), payload.size()), ec);
  if (ec) return Damaged(file, absl::StrCat("payload is not JSON: ", ec.message()));
  if (!root.is_object()) return Damaged(file, "payload is not a JSON object");
  const json::object& obj = root.get_object();

  TopicMetadata meta;
  TopicConfig& c = meta.config;
  ONCE_ASSIGN_OR_RETURN(meta.name, GetString(obj, "name", file));
  ONCE_ASSIGN_OR_RETURN(std::string partitioner, GetString(obj, "partitioner", file));
  if (partitioner != kPartitionerName) {
    return Damaged(file, absl::StrCat("unknown partitioner \"", partitioner,
                                      "\" (this build has \"", kPartitionerName, "\")"));
  }
  ONCE_ASSIGN_OR_RETURN(int64_t partitions, GetInt(obj, "partitions", file));
  if (partitions < 1 || partitions > kMaxPartitions) {
    return Damaged(file, absl::StrCat("partitions ", partitions, " is out of range"));
  }
  c.partitions = static_cast<int>(partitions);
  ONCE_ASSIGN_OR_RETURN(std::string backend, GetString(obj, "backend", file));
  absl::StatusOr<Backend> b = ParseBackend(backend);
  if (!b.ok()) return Damaged(file, b.status().message());
  c.backend = *b;
  ONCE_ASSIGN_OR_RETURN(std::string fsync, GetString(obj, "fsync", file));
  absl::StatusOr<FsyncPolicy> f = ParseFsyncPolicy(fsync);
  if (!f.ok()) return Damaged(file, f.status().message());
  c.fsync = *f;
  ONCE_ASSIGN_OR_RETURN(c.fsync_interval_ms, GetInt(obj, "fsync_interval_ms", file));
  ONCE_ASSIGN_OR_RETURN(c.retention_ms, GetInt(obj, "retention_ms", file));
  ONCE_ASSIGN_OR_RETURN(c.retention_bytes, GetInt(obj, "retention_bytes", file));
  ONCE_ASSIGN_OR_RETURN(c.max_message_bytes, GetInt(obj, "max_message_bytes", file));
  ONCE_ASSIGN_OR_RETURN(c.dedup_window_ms, GetInt(obj, "dedup_window_ms", file));
  ONCE_ASSIGN_OR_RETURN(c.dedup_max_entries, GetInt(obj, "dedup_max_entries", file));
  ONCE_ASSIGN_OR_RETURN(c.segment_bytes, GetInt(obj, "segment_bytes", file));
  ONCE_ASSIGN_OR_RETURN(meta.created_ms, GetInt(obj, "created_ms", file));

  if (absl::Status s = ValidateTopicName(meta.name); !s.ok()) return Damaged(file, s.message());
  if (absl::Status s = ValidateTopicConfig(c); !s.ok()) return Damaged(file, s.message());
  return meta;
}

}  // namespace

std::string EncodeTopicMetadata(const TopicMetadata& meta) {
  const TopicConfig& c = meta.config;
  json::object obj;
  obj["name"] = meta.name;
  obj["partitioner"] = kPartitionerName;
  obj["partitions"] = c.partitions;
  obj["backend"] = std::string(BackendName(c.backend));
  obj["fsync"] = std::string(FsyncPolicyName(c.fsync));
  obj["fsync_interval_ms"] = c.fsync_interval_ms;
  obj["retention_ms"] = c.retention_ms;
  obj["retention_bytes"] = c.retention_bytes;
  obj["max_message_bytes"] = c.max_message_bytes;
  obj["dedup_window_ms"] = c.dedup_window_ms;
  obj["dedup_max_entries"] = c.dedup_max_entries;
  obj["segment_bytes"] = c.segment_bytes;
  obj["created_ms"] = meta.created_ms;
  const std::string payload = json::serialize(obj);

  std::string out;
  out.reserve(kTopicMetadataHeaderSize + payload.size());
  PutFixed32(&out, kTopicMetadataMagic);
  PutFixed32(&out, kTopicMetadataVersion);
  PutFixed32(&out, static_cast<uint32_t>(payload.size()));
  // The CRC covers the header fields before it and the payload, so that a
  // flipped version or length is caught as well as damaged JSON.
  uint32_t crc = crc32c::Value(out.data(), out.size());
  crc = crc32c::Extend(crc, payload.data(), payload.size());
  PutFixed32(&out, crc);
  out.append(payload);
  return out;
}

absl::StatusOr<TopicMetadata> DecodeTopicMetadata(absl::string_view bytes, absl::string_view file) {
  if (bytes.size() < kTopicMetadataHeaderSize) {
    return Damaged(file, absl::StrCat("it has ", bytes.size(), " bytes, fewer than the ",
                                      kTopicMetadataHeaderSize, "-byte header"));
  }
  const uint32_t magic = DecodeFixed32(bytes.data());
  const uint32_t version = DecodeFixed32(bytes.data() + 4);
  const uint32_t length = DecodeFixed32(bytes.data() + 8);
  const uint32_t stored_crc = DecodeFixed32(bytes.data() + 12);
  if (magic != kTopicMetadataMagic) {
    return Damaged(file, absl::StrCat("bad magic 0x", absl::Hex(magic), " at offset 0"));
  }
  if (length > kTopicMetadataMaxPayload ||
      bytes.size() != kTopicMetadataHeaderSize + static_cast<size_t>(length)) {
    return Damaged(file, absl::StrCat("payload length ", length, " at offset 8 does not match the ",
                                      bytes.size(), "-byte file"));
  }
  uint32_t crc = crc32c::Value(bytes.data(), 12);
  crc = crc32c::Extend(crc, bytes.data() + kTopicMetadataHeaderSize, length);
  if (crc != stored_crc) {
    return Damaged(file, absl::StrCat("CRC mismatch (stored 0x", absl::Hex(stored_crc),
                                      ", computed 0x", absl::Hex(crc), ")"));
  }
  // Checked after the CRC: an intact file from a newer version is a
  // different problem from damage, and says so.
  if (version != kTopicMetadataVersion) {
    return Damaged(file, absl::StrCat("format version ", version,
                                      " is not supported (this build "
                                      "reads version ",
                                      kTopicMetadataVersion, ")"));
  }
  return DecodePayload(bytes.substr(kTopicMetadataHeaderSize), file);
}

absl::Status WriteTopicMetadata(const std::string& dir, const TopicMetadata& meta) {
  const std::string path = absl::StrCat(dir, "/", kTopicMetadataFileName);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const std::string bytes = EncodeTopicMetadata(meta);
  {
    ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return absl::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    ONCE_RETURN_IF_ERROR(WriteAll(fd.get(), bytes, tmp));
    // The data must be on disk before the rename makes it the metadata:
    // otherwise a crash could leave topic.meta naming an empty file.
    if (::fsync(fd.get()) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
    ONCE_RETURN_IF_ERROR(fd.Close(tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  return SyncDir(dir);
}

absl::StatusOr<TopicMetadata> ReadTopicMetadata(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kTopicMetadataFileName);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  const size_t max_size = kTopicMetadataHeaderSize + kTopicMetadataMaxPayload;
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > max_size) {
    return Damaged(path, absl::StrCat("it has ", st.st_size, " bytes, more than the ", max_size,
                                      " a metadata file can have"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;  // shrank under us: decoding reports the short file
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return DecodeTopicMetadata(bytes, path);
}

}  // namespace once::broker
