#include "broker/segment.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/record_format.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

constexpr size_t kOffsetDigits = 20;
constexpr absl::string_view kLogSuffix = ".log";
constexpr absl::string_view kIndexSuffix = ".index";
constexpr absl::string_view kTempSuffix = ".tmp";

// The .index layout (see record_format.md, "Index file").
constexpr uint32_t kIndexMagic = 0x5844494F;  // the bytes 'O' 'I' 'D' 'X'
constexpr uint32_t kIndexVersion = 1;
constexpr size_t kIndexHeaderSize = 56;
constexpr size_t kIndexCrcPos = 52;
constexpr size_t kIndexEntrySize = 24;

// Reads of the .log go through a buffer. A scan reads big chunks from the
// start; a Read starts small (it may want one record) and doubles each time
// it needs more, up to kMaxChunk.
constexpr size_t kMaxChunk = 1 << 20;
constexpr size_t kScanChunk = kMaxChunk;
constexpr size_t kReadChunk = 16 << 10;

void PutFixed64Signed(std::string* dst, int64_t v) { PutFixed64(dst, static_cast<uint64_t>(v)); }
int64_t DecodeSigned64(const char* p) { return static_cast<int64_t>(DecodeFixed64(p)); }

// Walks the frames of a .log between two positions through a read buffer.
// Every frame returned is complete and its CRC checked.
class FrameCursor {
 public:
  enum class Step { kFrame, kEnd, kDamaged };

  FrameCursor(const File& file, int64_t position, int64_t end, size_t chunk)
      : file_(file), next_(position), end_(end), chunk_(chunk) {}

  // Moves to the next frame. kFrame: header(), frame() and position()
  // describe it. kEnd: `end` reached exactly. kDamaged: damage() says what
  // is wrong with the bytes at position().
  absl::StatusOr<Step> Next() {
    position_ = next_;
    if (position_ >= end_) return Step::kEnd;
    const int64_t left = end_ - position_;
    if (left < static_cast<int64_t>(kFrameHeaderSize)) {
      damage_ = absl::StrCat("incomplete frame header (", left, " of ", kFrameHeaderSize,
                             " bytes before the end)");
      return Step::kDamaged;
    }
    ONCE_ASSIGN_OR_RETURN(absl::string_view head, View(position_, kFrameHeaderSize));
    if (head.size() < kFrameHeaderSize) return Short();
    absl::Status s = ParseFrameHeader(head, &header_);
    if (!s.ok()) {
      damage_ = std::string(s.message());
      return Step::kDamaged;
    }
    if (static_cast<int64_t>(header_.frame_size()) > left) {
      damage_ = absl::StrCat("frame of ", header_.frame_size(), " bytes runs past the end (", left,
                             " bytes left)");
      return Step::kDamaged;
    }
    ONCE_ASSIGN_OR_RETURN(frame_, View(position_, header_.frame_size()));
    if (frame_.size() < header_.frame_size()) return Short();
    s = VerifyFrameCrc(header_, frame_);
    if (!s.ok()) {
      damage_ = std::string(s.message());
      return Step::kDamaged;
    }
    next_ = position_ + static_cast<int64_t>(frame_.size());
    return Step::kFrame;
  }

  const FrameHeader& header() const { return header_; }
  // Valid until the next call of Next().
  absl::string_view frame() const { return frame_; }
  absl::string_view body() const { return frame_.substr(kFrameHeaderSize); }
  int64_t position() const { return position_; }
  int64_t next_position() const { return next_; }
  const std::string& damage() const { return damage_; }

 private:
  // The file ended before `end` (it shrank under us, or `end` was wrong).
  Step Short() {
    damage_ = "unexpected end of file";
    return Step::kDamaged;
  }

  // Returns up to `n` bytes at `pos` from the buffer, refilling it when they
  // are not all there; fewer than `n` only when the file is shorter.
  absl::StatusOr<absl::string_view> View(int64_t pos, size_t n) {
    if (pos < buf_pos_ ||
        pos + static_cast<int64_t>(n) > buf_pos_ + static_cast<int64_t>(buf_len_)) {
      // Callers never ask past `end_`, so neither does the read: bytes
      // beyond it may be unpublished.
      size_t want = std::max(n, chunk_);
      want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(want), end_ - pos));
      if (buf_cap_ < want) {
        buf_.reset(new char[want]);  // not zero-filled: it is read into
        buf_cap_ = want;
      }
      ONCE_ASSIGN_OR_RETURN(buf_len_, file_.ReadAt(pos, want, buf_.get()));
      buf_pos_ = pos;
      chunk_ = std::min(chunk_ * 2, kMaxChunk);
    }
    const size_t at = static_cast<size_t>(pos - buf_pos_);
    return absl::string_view(buf_.get() + at, std::min(n, buf_len_ - at));
  }

  const File& file_;
  int64_t next_;
  const int64_t end_;
  size_t chunk_;
  std::unique_ptr<char[]> buf_;
  size_t buf_cap_ = 0;
  int64_t buf_pos_ = 0;
  size_t buf_len_ = 0;
  int64_t position_ = 0;
  FrameHeader header_;
  absl::string_view frame_;
  std::string damage_;
};

// Looks for an intact frame (header, CRC and body checked) starting at any
// byte in (from, end) whose offset is at least `min_offset`. Used only after
// damage was found, to tell a torn tail (nothing valid after it) from
// corruption in the middle (intact records after it).
absl::Status FindIntactFrameAfter(const File& file, int64_t from, int64_t end, int64_t min_offset,
                                  int64_t* position, int64_t* offset) {
  *position = -1;
  *offset = -1;
  std::string buf(kScanChunk + kFrameHeaderSize, '\0');
  std::string frame;
  for (int64_t chunk_start = from + 1; chunk_start + static_cast<int64_t>(kFrameHeaderSize) <= end;
       chunk_start += kScanChunk) {
    const size_t want =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(buf.size()), end - chunk_start));
    ONCE_ASSIGN_OR_RETURN(size_t got, file.ReadAt(chunk_start, want, buf.data()));
    // Candidates start in [chunk_start, chunk_start + kScanChunk); the extra
    // header bytes let the last of them be parsed without a second read.
    const size_t limit = std::min(got, kScanChunk + kFrameHeaderSize);
    for (size_t i = 0; i + kFrameHeaderSize <= limit && i < kScanChunk; ++i) {
      const char* p = buf.data() + i;
      if (static_cast<uint8_t>(p[4]) != (kFrameMagic & 0xff) ||
          static_cast<uint8_t>(p[5]) != (kFrameMagic >> 8)) {
        continue;
      }
      FrameHeader header;
      if (!ParseFrameHeader(absl::string_view(p, kFrameHeaderSize), &header).ok()) continue;
      const int64_t at = chunk_start + static_cast<int64_t>(i);
      if (header.offset < min_offset) continue;
      if (at + static_cast<int64_t>(header.frame_size()) > end) continue;
      frame.resize(header.frame_size());
      ONCE_ASSIGN_OR_RETURN(size_t n, file.ReadAt(at, frame.size(), frame.data()));
      if (n != frame.size()) continue;
      if (!VerifyFrameCrc(header, frame).ok()) continue;
      if (!DecodeFrameBody(header, absl::string_view(frame).substr(kFrameHeaderSize), nullptr)
               .ok()) {
        continue;
      }
      *position = at;
      *offset = header.offset;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// Whether [from, to) of `file` holds only zero bytes.
absl::StatusOr<bool> AllZeros(const File& file, int64_t from, int64_t to) {
  std::string chunk(kScanChunk, '\0');
  while (from < to) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(to - from, kScanChunk));
    ONCE_ASSIGN_OR_RETURN(const size_t got, file.ReadAt(from, want, chunk.data()));
    if (got == 0) return true;  // shorter than it was: nothing more to look at
    if (std::any_of(chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(got),
                    [](char c) { return c != 0; })) {
      return false;
    }
    from += static_cast<int64_t>(got);
  }
  return true;
}

}  // namespace

absl::Status FrameBatch::Add(const Record& record, int64_t offset) {
  const size_t position = bytes.size();
  ONCE_RETURN_IF_ERROR(AppendFrame(record, offset, &bytes));
  frames.push_back(Frame{offset, record.timestamp_ms, position});
  return absl::OkStatus();
}

std::string Segment::LogFileName(int64_t base_offset) {
  return absl::StrFormat("%020d%s", base_offset, kLogSuffix);
}

std::string Segment::IndexFileName(int64_t base_offset) {
  return absl::StrFormat("%020d%s", base_offset, kIndexSuffix);
}

bool Segment::ParseLogFileName(absl::string_view name, int64_t* base_offset) {
  if (name.size() != kOffsetDigits + kLogSuffix.size()) return false;
  if (name.substr(kOffsetDigits) != kLogSuffix) return false;
  absl::string_view digits = name.substr(0, kOffsetDigits);
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(digits, base_offset) && *base_offset >= 0;
}

Segment::Segment(std::string dir, int64_t base_offset, int64_t index_interval_bytes, File log)
    : dir_(std::move(dir)),
      base_offset_(base_offset),
      index_interval_bytes_(index_interval_bytes),
      log_path_(JoinPath(dir_, LogFileName(base_offset))),
      index_path_(JoinPath(dir_, IndexFileName(base_offset))),
      log_(std::move(log)),
      next_offset_(base_offset) {}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Create(const std::string& dir,
                                                         int64_t base_offset,
                                                         int64_t index_interval_bytes) {
  ONCE_ASSIGN_OR_RETURN(
      File log, File::Open(JoinPath(dir, LogFileName(base_offset)), File::Mode::kCreateNew));
  return std::unique_ptr<Segment>(
      new Segment(dir, base_offset, index_interval_bytes, std::move(log)));
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Open(const std::string& dir, int64_t base_offset,
                                                       int64_t index_interval_bytes) {
  ONCE_ASSIGN_OR_RETURN(
      File log, File::Open(JoinPath(dir, LogFileName(base_offset)), File::Mode::kReadWrite));
  return std::unique_ptr<Segment>(
      new Segment(dir, base_offset, index_interval_bytes, std::move(log)));
}

void Segment::ResetState() {
  absl::MutexLock lock(&index_mu_);
  index_.clear();
  last_index_position_ = 0;
  last_frame_position_ = -1;
  size_.store(0, std::memory_order_release);
  next_offset_.store(base_offset_, std::memory_order_release);
  max_timestamp_.store(kNoTimestamp, std::memory_order_release);
  readable_size_.store(0, std::memory_order_release);
}

void Segment::NoteFrame(int64_t offset, int64_t timestamp_ms, int64_t position) {
  const int64_t max_ts = max_timestamp_.load(std::memory_order_relaxed);
  // The first frame is covered by the implicit entry {base, 0}; after it, a
  // frame gets an entry when it starts index_interval_bytes or more past the
  // previous entry. Append and Scan both use this rule, so an index rebuilt
  // from the .log equals the one built while writing.
  if (position > 0 && position - last_index_position_ >= index_interval_bytes_) {
    index_.push_back(IndexEntry{offset, position, max_ts});
    last_index_position_ = position;
  }
  last_frame_position_ = position;
  if (timestamp_ms > max_ts) max_timestamp_.store(timestamp_ms, std::memory_order_release);
}

absl::StatusOr<SegmentScan> Segment::Scan() {
  ResetState();
  SegmentScan scan;
  ONCE_ASSIGN_OR_RETURN(scan.file_size, log_.Size());
  FrameCursor cursor(log_, 0, scan.file_size, kScanChunk);
  int64_t expected = base_offset_;
  {
    absl::MutexLock lock(&index_mu_);
    while (true) {
      ONCE_ASSIGN_OR_RETURN(FrameCursor::Step step, cursor.Next());
      if (step == FrameCursor::Step::kEnd) break;
      if (step == FrameCursor::Step::kDamaged) {
        scan.damaged = true;
        scan.damage = cursor.damage();
        break;
      }
      const FrameHeader& h = cursor.header();
      if (h.offset != expected) {
        scan.damaged = true;
        scan.damage = absl::StrCat("record has offset ", h.offset, ", expected ", expected);
        scan.could_be_torn = false;
        break;
      }
      absl::Status body = DecodeFrameBody(h, cursor.body(), nullptr);
      if (!body.ok()) {
        scan.damaged = true;
        scan.damage = std::string(body.message());
        scan.could_be_torn = false;
        break;
      }
      NoteFrame(h.offset, h.timestamp_ms, cursor.position());
      ++expected;
      ++scan.records;
    }
  }
  scan.valid_bytes = scan.damaged ? cursor.position() : scan.file_size;
  scan.next_offset = expected;
  size_.store(scan.valid_bytes, std::memory_order_release);
  next_offset_.store(expected, std::memory_order_release);
  if (scan.damaged && scan.could_be_torn) {
    ONCE_ASSIGN_OR_RETURN(const bool zeros, AllZeros(log_, scan.valid_bytes, scan.file_size));
    if (zeros) {
      scan.damaged = false;
      scan.damage.clear();
      scan.reserved_bytes = scan.file_size - scan.valid_bytes;
    }
  }
  if (scan.damaged) {
    ONCE_RETURN_IF_ERROR(FindIntactFrameAfter(log_, scan.valid_bytes, scan.file_size, expected,
                                              &scan.next_valid_position, &scan.next_valid_offset));
  }
  return scan;
}

absl::StatusOr<bool> Segment::LoadIndex(std::string* why_not) {
  ResetState();
  ONCE_ASSIGN_OR_RETURN(const int64_t log_size, log_.Size());
  absl::StatusOr<File> index_file = File::Open(index_path_, File::Mode::kReadOnly);
  if (absl::IsNotFound(index_file.status())) {
    *why_not = "the index file is missing";
    return false;
  }
  if (!index_file.ok()) return index_file.status();
  ONCE_ASSIGN_OR_RETURN(const int64_t index_size, index_file->Size());
  // A valid index has at most one entry per frame, and a frame is at least
  // kFrameHeaderSize + kMinFrameBodySize bytes.
  const int64_t max_entries =
      log_size / static_cast<int64_t>(kFrameHeaderSize + kMinFrameBodySize) + 1;
  if (index_size < static_cast<int64_t>(kIndexHeaderSize) ||
      index_size > static_cast<int64_t>(kIndexHeaderSize) +
                       max_entries * static_cast<int64_t>(kIndexEntrySize)) {
    *why_not = absl::StrCat("the index file has an impossible size of ", index_size, " bytes");
    return false;
  }
  std::string data(static_cast<size_t>(index_size), '\0');
  ONCE_ASSIGN_OR_RETURN(size_t got, index_file->ReadAt(0, data.size(), data.data()));
  if (got != data.size()) {
    *why_not = "the index file shrank while being read";
    return false;
  }
  const char* p = data.data();
  if (DecodeFixed32(p) != kIndexMagic) {
    *why_not = "the index file has a bad magic number";
    return false;
  }
  if (DecodeFixed32(p + 4) != kIndexVersion) {
    *why_not = absl::StrCat("the index file has unknown version ", DecodeFixed32(p + 4));
    return false;
  }
  const uint32_t count = DecodeFixed32(p + 48);
  if (data.size() != kIndexHeaderSize + size_t{count} * kIndexEntrySize) {
    *why_not = absl::StrCat("the index file's size does not match its ", count, " entries");
    return false;
  }
  uint32_t crc = crc32c::Value(p, kIndexCrcPos);
  crc = crc32c::Extend(crc, p + kIndexHeaderSize, data.size() - kIndexHeaderSize);
  if (MaskCrc(crc) != DecodeFixed32(p + kIndexCrcPos)) {
    *why_not = "the index file's checksum does not match";
    return false;
  }
  const int64_t base = DecodeSigned64(p + 8);
  const int64_t indexed_size = DecodeSigned64(p + 16);
  const int64_t next_offset = DecodeSigned64(p + 24);
  const int64_t max_timestamp = DecodeSigned64(p + 32);
  const int64_t last_frame = DecodeSigned64(p + 40);
  if (base != base_offset_) {
    *why_not = absl::StrCat("the index file is for base offset ", base);
    return false;
  }
  if (indexed_size != log_size) {
    *why_not = absl::StrCat("the index file describes ", indexed_size,
                            " bytes of log, the log has ", log_size, " (stale)");
    return false;
  }
  const bool empty = log_size == 0;
  if (empty != (next_offset == base_offset_) || empty != (last_frame < 0) ||
      next_offset < base_offset_ || last_frame >= log_size) {
    *why_not = "the index file's summary is inconsistent";
    return false;
  }
  std::vector<IndexEntry> entries;
  entries.reserve(count);
  IndexEntry prev{base_offset_, 0, kNoTimestamp};
  for (uint32_t i = 0; i < count; ++i) {
    const char* e = p + kIndexHeaderSize + size_t{i} * kIndexEntrySize;
    IndexEntry entry{DecodeSigned64(e), DecodeSigned64(e + 8), DecodeSigned64(e + 16)};
    if (entry.offset <= prev.offset || entry.offset >= next_offset ||
        entry.position - prev.position < index_interval_bytes_ || entry.position > last_frame ||
        entry.max_timestamp_before < prev.max_timestamp_before ||
        entry.max_timestamp_before > max_timestamp) {
      *why_not = absl::StrCat("index entry ", i, " is out of order or out of range");
      return false;
    }
    entries.push_back(entry);
    prev = entry;
  }
  // The index agrees with the log's ends: the first frame has the base
  // offset, and the last one has next_offset - 1 and ends the file.
  if (!empty) {
    std::string frame_buf;
    for (const int64_t position : {int64_t{0}, last_frame}) {
      FrameCursor cursor(log_, position, log_size, kReadChunk);
      ONCE_ASSIGN_OR_RETURN(FrameCursor::Step step, cursor.Next());
      if (step != FrameCursor::Step::kFrame) {
        *why_not = absl::StrCat("the record at byte ", position, " is damaged: ", cursor.damage());
        return false;
      }
      const int64_t want = position == 0 ? base_offset_ : next_offset - 1;
      if (cursor.header().offset != want) {
        *why_not = absl::StrCat("the record at byte ", position, " has offset ",
                                cursor.header().offset, ", the index says ", want);
        return false;
      }
      if (position == last_frame && cursor.next_position() != log_size) {
        *why_not = absl::StrCat("the last record at byte ", last_frame, " does not end the log");
        return false;
      }
    }
  }
  {
    absl::MutexLock lock(&index_mu_);
    index_ = std::move(entries);
    last_index_position_ = index_.empty() ? 0 : index_.back().position;
    last_frame_position_ = last_frame;
  }
  size_.store(log_size, std::memory_order_release);
  next_offset_.store(next_offset, std::memory_order_release);
  max_timestamp_.store(max_timestamp, std::memory_order_release);
  return true;
}

absl::Status Segment::TruncateTo(int64_t size) {
  ONCE_RETURN_IF_ERROR(log_.Truncate(size));
  return log_.Sync();
}

absl::Status Segment::WriteIndexFile() const {
  std::string data;
  {
    absl::MutexLock lock(&index_mu_);
    data.reserve(kIndexHeaderSize + index_.size() * kIndexEntrySize);
    PutFixed32(&data, kIndexMagic);
    PutFixed32(&data, kIndexVersion);
    PutFixed64Signed(&data, base_offset_);
    PutFixed64Signed(&data, size());
    PutFixed64Signed(&data, next_offset());
    PutFixed64Signed(&data, max_timestamp());
    PutFixed64Signed(&data, last_frame_position_);
    PutFixed32(&data, static_cast<uint32_t>(index_.size()));
    PutFixed32(&data, 0);  // the CRC, filled in below
    for (const IndexEntry& e : index_) {
      PutFixed64Signed(&data, e.offset);
      PutFixed64Signed(&data, e.position);
      PutFixed64Signed(&data, e.max_timestamp_before);
    }
  }
  uint32_t crc = crc32c::Value(data.data(), kIndexCrcPos);
  crc = crc32c::Extend(crc, data.data() + kIndexHeaderSize, data.size() - kIndexHeaderSize);
  EncodeFixed32(data.data() + kIndexCrcPos, MaskCrc(crc));

  // Written aside and renamed, so a crash leaves the old index or the new
  // one, never half of one (a half one would be caught by the CRC anyway).
  const std::string temp = absl::StrCat(index_path_, kTempSuffix);
  absl::Status removed = RemoveFile(temp);
  if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  {
    ONCE_ASSIGN_OR_RETURN(File file, File::Open(temp, File::Mode::kCreateNew));
    ONCE_RETURN_IF_ERROR(file.Append(data));
    ONCE_RETURN_IF_ERROR(file.Sync());
    ONCE_RETURN_IF_ERROR(file.Close());
  }
  return RenameFile(temp, index_path_);
}

absl::Status Segment::RemoveIndexFile() const {
  absl::Status s = RemoveFile(index_path_);
  if (absl::IsNotFound(s)) return absl::OkStatus();
  return s;
}

void Segment::ReserveThrough(int64_t end) {
  if (reserve_ == Reserve::kNone) return;
  // kZeros refills when less than half the reserve is left, so that a
  // record's write never extends the file; kAllocate when a write passes
  // the reserved end.
  const int64_t refill_at = reserve_ == Reserve::kZeros ? end + reserve_bytes_ / 2 : end;
  if (refill_at <= reserved_end_) return;
  const int64_t from = std::max(reserved_end_, size());
  const int64_t to = end + reserve_bytes_;
  absl::Status reserved = reserve_ == Reserve::kZeros ? log_.WriteZerosAt(from, to - from)
                                                      : log_.Preallocate(from, to - from);
  if (reserved.ok() && reserve_ == Reserve::kZeros) {
    // The zeros' writeback runs beside the appends; a record's fdatasync
    // finds them written or under way rather than writing them all itself.
    reserved = log_.StartWriteback(from, to - from);
  }
  if (reserved.ok()) {
    reserved_end_ = to;
    return;
  }
  if (!absl::IsUnimplemented(reserved)) spdlog::warn("{}", reserved.ToString());
  reserve_ = Reserve::kNone;
  // Part of it may be there: ReleaseReserve cuts whatever is (zeros that
  // stay are harmless anyway: Scan reads them as reserve).
  reserved_end_ = to;
}

absl::Status Segment::Append(const FrameBatch& batch) {
  if (batch.frames.empty()) return absl::OkStatus();
  const int64_t start = size();
  const int64_t end = start + static_cast<int64_t>(batch.bytes.size());
  ReserveThrough(end);
  absl::Status written = log_.WriteAt(start, batch.bytes);
  if (!written.ok()) {
    // A partial frame must not stay at the end: the next batch would follow
    // garbage, which recovery would call corruption. Cut it back (with the
    // reserve behind it).
    reserved_end_ = start;
    absl::Status cut = log_.Truncate(start);
    if (!cut.ok()) {
      broken_.store(true, std::memory_order_release);
      return absl::Status(written.code(),
                          absl::StrCat(written.message(), "; then cutting the partial write off ",
                                       log_path_, " failed too: ", cut.message()));
    }
    return written;
  }
  {
    absl::MutexLock lock(&index_mu_);
    for (const FrameBatch::Frame& f : batch.frames) {
      NoteFrame(f.offset, f.timestamp_ms, start + static_cast<int64_t>(f.position));
    }
  }
  size_.store(end, std::memory_order_release);
  next_offset_.store(batch.frames.back().offset + 1, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status Segment::ReleaseReserve() {
  if (reserved_end_ <= size()) return absl::OkStatus();
  reserved_end_ = size();
  return log_.Truncate(size());
}

absl::Status Segment::RemoveFiles() const {
  ONCE_RETURN_IF_ERROR(RemoveFile(log_path_));
  return RemoveIndexFile();
}

void Segment::Publish(int64_t readable_size) {
  if (readable_size > readable_size_.load(std::memory_order_relaxed)) {
    readable_size_.store(readable_size, std::memory_order_release);
  }
}

std::vector<IndexEntry> Segment::IndexEntries() const {
  absl::MutexLock lock(&index_mu_);
  return index_;
}

IndexEntry Segment::Seek(int64_t offset) const {
  absl::ReaderMutexLock lock(&index_mu_);
  auto it = std::upper_bound(index_.begin(), index_.end(), offset,
                             [](int64_t o, const IndexEntry& e) { return o < e.offset; });
  if (it == index_.begin()) return IndexEntry{base_offset_, 0, kNoTimestamp};
  return *std::prev(it);
}

absl::StatusOr<Segment::ReadResult> Segment::Read(int64_t offset, int64_t limit_offset,
                                                  const ReadLimits& limits,
                                                  std::vector<Record>* out, size_t* bytes,
                                                  bool written) const {
  ReadResult result;
  result.next_offset = offset;
  // size() moves only after a write completed (Append).
  const int64_t end = written ? size() : readable_size();
  const IndexEntry start = Seek(offset);
  FrameCursor cursor(log_, start.position, end, kReadChunk);
  int64_t expected = start.offset;
  while (expected < limit_offset) {
    ONCE_ASSIGN_OR_RETURN(FrameCursor::Step step, cursor.Next());
    if (step == FrameCursor::Step::kEnd) break;
    if (step == FrameCursor::Step::kDamaged) {
      return absl::DataLossError(absl::StrCat(log_path_, ": corrupt record at byte ",
                                              cursor.position(), ": ", cursor.damage()));
    }
    const FrameHeader& h = cursor.header();
    if (h.offset != expected) {
      return absl::DataLossError(absl::StrCat(log_path_, ": record at byte ", cursor.position(),
                                              " has offset ", h.offset, ", expected ", expected));
    }
    ++expected;
    if (h.offset < offset) continue;
    Record record;
    absl::Status s = DecodeFrameBody(h, cursor.body(), &record);
    if (!s.ok()) {
      return absl::DataLossError(absl::StrCat(log_path_, ": corrupt record at byte ",
                                              cursor.position(), ": ", s.message()));
    }
    const size_t payload = record.PayloadBytes();
    if (!out->empty() && *bytes + payload > limits.max_bytes) {
      result.full = true;
      return result;
    }
    *bytes += payload;
    out->push_back(std::move(record));
    result.next_offset = h.offset + 1;
    if (out->size() >= limits.max_records) {
      result.full = true;
      return result;
    }
  }
  result.next_offset = std::max(result.next_offset, std::min(expected, limit_offset));
  return result;
}

absl::StatusOr<std::optional<int64_t>> Segment::FindTime(int64_t time_ms,
                                                         int64_t limit_offset) const {
  if (max_timestamp() < time_ms) return std::nullopt;
  IndexEntry start{base_offset_, 0, kNoTimestamp};
  {
    // The last entry before which every timestamp is still below time_ms:
    // the first match cannot lie before it.
    absl::ReaderMutexLock lock(&index_mu_);
    auto it =
        std::lower_bound(index_.begin(), index_.end(), time_ms,
                         [](const IndexEntry& e, int64_t t) { return e.max_timestamp_before < t; });
    if (it != index_.begin()) start = *std::prev(it);
  }
  FrameCursor cursor(log_, start.position, readable_size(), kReadChunk);
  int64_t expected = start.offset;
  while (expected < limit_offset) {
    ONCE_ASSIGN_OR_RETURN(FrameCursor::Step step, cursor.Next());
    if (step == FrameCursor::Step::kEnd) break;
    if (step == FrameCursor::Step::kDamaged) {
      return absl::DataLossError(absl::StrCat(log_path_, ": corrupt record at byte ",
                                              cursor.position(), ": ", cursor.damage()));
    }
    const FrameHeader& h = cursor.header();
    if (h.offset != expected) {
      return absl::DataLossError(absl::StrCat(log_path_, ": record at byte ", cursor.position(),
                                              " has offset ", h.offset, ", expected ", expected));
    }
    if (h.timestamp_ms >= time_ms) return h.offset;
    ++expected;
  }
  return std::nullopt;
}

}  // namespace once::broker
