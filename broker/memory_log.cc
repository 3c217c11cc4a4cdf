#include "broker/memory_log.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "schema/coding.h"

namespace once::broker {

bool MemoryBudget::TryAcquire(int64_t bytes) {
  int64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ - used) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void MemoryBudget::Release(int64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

namespace {

// Entry::charge and the encoding's u32 lengths bound one record.
constexpr int64_t kMaxRecordCharge = std::numeric_limits<uint32_t>::max();

// A FIFO of trivially copyable T in fixed-size chunks: O(1) push_back,
// pop_front and index, one allocation per kChunk elements (std::deque's
// 512-byte blocks would mean one per ~20 entries). Keeps one emptied chunk
// for reuse. Not thread-safe: MemoryLog guards it.
template <typename T>
class ChunkedQueue {
 public:
  static_assert(std::is_trivially_copyable_v<T>);
  static constexpr size_t kChunk = 4096;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const T& operator[](size_t i) const {
    const size_t at = head_ + i;
    return chunks_[at / kChunk][at % kChunk];
  }
  const T& front() const { return (*this)[0]; }

  void push_back(const T& value) {
    const size_t at = head_ + size_;
    if (at == chunks_.size() * kChunk) {
      chunks_.push_back(spare_ != nullptr ? std::move(spare_) : std::make_unique<T[]>(kChunk));
    }
    chunks_[at / kChunk][at % kChunk] = value;
    ++size_;
  }

  void pop_front() {
    --size_;
    if (++head_ == kChunk) {
      spare_ = std::move(chunks_.front());
      chunks_.pop_front();
      head_ = 0;
    }
  }

  // First index i in [0, size) for which pred(element i) is false, for a
  // pred that is true on a prefix.
  template <typename Pred>
  size_t PartitionPoint(Pred pred) const {
    size_t lo = 0;
    size_t hi = size_;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (pred((*this)[mid])) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

 private:
  std::deque<std::unique_ptr<T[]>> chunks_;
  std::unique_ptr<T[]> spare_;
  size_t head_ = 0;  // index of the first element in chunks_.front()
  size_t size_ = 0;
};

// Bump allocation of record bytes in blocks, freed from the front as the
// oldest records go. So an append costs a memcpy, not a malloc per string,
// and trimming frees whole blocks.
//
// Emptied blocks are kept for reuse, up to kMaxSpareBlocks (2 MiB per log,
// outside the budget, which counts live records): a log that is appended to
// and trimmed at a steady pace then allocates nothing. Without them, the
// allocator hands freed memory back to the kernel and every block is faulted
// in again, page by page, which costs more than the appends themselves
// (measured: several µs per fault on our VMs).
// Not thread-safe: MemoryLog guards it.
class Arena {
 public:
  static constexpr size_t kBlockBytes = 64 << 10;
  static constexpr size_t kMaxSpareBlocks = 32;

  // `n` bytes, valid until ReleaseBefore drops their block.
  char* Allocate(size_t n) {
    if (blocks_.empty() || blocks_.back().capacity - blocks_.back().used < n) NewBlock(n);
    Block& b = blocks_.back();
    char* p = b.bytes.get() + b.used;
    b.used += n;
    return p;
  }

  // Frees the blocks before the one holding `p`, the oldest bytes still in
  // use; nullptr frees everything.
  void ReleaseBefore(const char* p) {
    while (!blocks_.empty() && (p == nullptr || !blocks_.front().Contains(p))) {
      Block& b = blocks_.front();
      if (b.capacity == kBlockBytes && spares_.size() < kMaxSpareBlocks) {
        b.used = 0;
        spares_.push_back(std::move(b));
      }
      blocks_.pop_front();
    }
  }

 private:
  struct Block {
    std::unique_ptr<char[]> bytes;
    size_t capacity = 0;
    size_t used = 0;
    bool Contains(const char* p) const {
      // std::less: a total order even across unrelated allocations.
      std::less<const char*> lt;
      return !lt(p, bytes.get()) && lt(p, bytes.get() + used);
    }
  };

  void NewBlock(size_t n) {
    // Records over a quarter block get a block of their own, so the space a
    // block wastes at its end stays under a quarter of it.
    if (n > kBlockBytes / 4) {
      blocks_.push_back(Block{std::make_unique_for_overwrite<char[]>(n), n, 0});
    } else if (!spares_.empty()) {
      blocks_.push_back(std::move(spares_.back()));
      spares_.pop_back();
    } else {
      blocks_.push_back(Block{std::make_unique_for_overwrite<char[]>(kBlockBytes), kBlockBytes, 0});
    }
  }

  std::deque<Block> blocks_;
  std::vector<Block> spares_;
};

// The in-memory encoding of a record's fields (never on disk, so not
// versioned): flags u8, then u32 length + bytes for key and idempotency key,
// u32 header count, per header u32 length + bytes for key and value, and
// u32 length + bytes for the value. The offset is implicit and the
// timestamp lives in the Entry.
size_t EncodedSize(const Record& r) {
  size_t n = 1 + 4 + r.key.size() + 4 + r.idempotency_key.size() + 4 + 4 + r.value.size();
  for (const Header& h : r.headers) n += 4 + h.key.size() + 4 + h.value.size();
  return n;
}

char* PutBytes(char* p, const std::string& s) {
  EncodeFixed32(p, static_cast<uint32_t>(s.size()));
  std::memcpy(p + 4, s.data(), s.size());
  return p + 4 + s.size();
}

void Encode(const Record& r, char* p) {
  *p++ = static_cast<char>(r.flags);
  p = PutBytes(p, r.key);
  p = PutBytes(p, r.idempotency_key);
  EncodeFixed32(p, static_cast<uint32_t>(r.headers.size()));
  p += 4;
  for (const Header& h : r.headers) {
    p = PutBytes(p, h.key);
    p = PutBytes(p, h.value);
  }
  PutBytes(p, r.value);
}

const char* GetBytes(const char* p, std::string* s) {
  const uint32_t n = DecodeFixed32(p);
  s->assign(p + 4, n);
  return p + 4 + n;
}

// Decodes what Encode wrote; the bytes are ours, so they are trusted.
void Decode(const char* p, Record* r) {
  r->flags = static_cast<uint8_t>(*p++);
  p = GetBytes(p, &r->key);
  p = GetBytes(p, &r->idempotency_key);
  const uint32_t headers = DecodeFixed32(p);
  p += 4;
  r->headers.resize(headers);
  for (Header& h : r->headers) {
    p = GetBytes(p, &h.key);
    p = GetBytes(p, &h.value);
  }
  GetBytes(p, &r->value);
}

// One record of a MemoryLog: 24 bytes besides its encoded fields.
struct Entry {
  const char* data;      // Encode()d fields, in the Arena
  uint32_t charge;       // MemoryCharge() when appended: what popping it releases
  int64_t timestamp_ms;  // kept here for retention and OffsetForTime
};

class MemoryLog final : public Log {
 public:
  explicit MemoryLog(MemoryBudget* budget) : budget_(budget) {}

  ~MemoryLog() override { budget_->Release(size_bytes_); }

  MemoryLog(const MemoryLog&) = delete;
  MemoryLog& operator=(const MemoryLog&) = delete;

  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override {
    if (records.empty()) return absl::InvalidArgumentError("append of an empty batch");
    int64_t charge = 0;
    for (const Record& r : records) {
      // Entry::charge and the encoding's u32 lengths bound a record; the
      // topic's max_message_bytes (<= 64 MiB) keeps far below this.
      if (MemoryCharge(r) > kMaxRecordCharge) {
        return absl::InvalidArgumentError(
            absl::StrCat("a record of ", r.PayloadBytes(), " bytes is too large for a memory log"));
      }
      charge += MemoryCharge(r);
    }
    if (!budget_->TryAcquire(charge)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "memory budget full: a batch of ", records.size(), " records needs ", charge,
          " bytes and ", budget_->used(), " of ", budget_->limit(),
          " bytes are in use; consume (or trim) messages, or raise memory_budget_bytes"));
    }
    absl::MutexLock lock(&mu_);
    const int64_t first = NextOffsetLocked();
    for (const Record& r : records) {
      char* p = arena_.Allocate(EncodedSize(r));
      Encode(r, p);
      entries_.push_back(Entry{p, static_cast<uint32_t>(MemoryCharge(r)), r.timestamp_ms});
    }
    size_bytes_ += charge;
    ++appends_;
    return first;
  }

  absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const override {
    absl::ReaderMutexLock lock(&mu_);
    if (absl::Status s = CheckRangeLocked(offset); !s.ok()) return s;
    const int64_t next = NextOffsetLocked();
    std::vector<Record> out;
    out.reserve(static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(limits.max_records), next - offset)));
    size_t bytes = 0;
    for (size_t i = static_cast<size_t>(offset - first_offset_); i < entries_.size(); ++i) {
      if (out.size() >= limits.max_records) break;
      const Entry& e = entries_[i];
      const size_t b = e.charge - static_cast<size_t>(kMemoryRecordOverheadBytes);  // PayloadBytes
      // The first record always goes, so an oversized one stays readable.
      if (!out.empty() && bytes + b > limits.max_bytes) break;
      Record& r = out.emplace_back();
      r.offset = first_offset_ + static_cast<int64_t>(i);
      r.timestamp_ms = e.timestamp_ms;
      Decode(e.data, &r);
      bytes += b;
    }
    return out;
  }

  absl::Status TrimBefore(int64_t offset) override {
    int64_t freed = 0;
    {
      absl::MutexLock lock(&mu_);
      if (offset > NextOffsetLocked()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot trim before offset ", offset, ": past the next offset ", NextOffsetLocked()));
      }
      while (first_offset_ < offset) freed += PopFrontLocked();
    }
    budget_->Release(freed);
    return absl::OkStatus();
  }

  absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                int64_t retention_bytes) override {
    int64_t freed = 0;
    {
      absl::MutexLock lock(&mu_);
      while (!entries_.empty()) {
        const bool too_old =
            retention_ms >= 0 && entries_.front().timestamp_ms < now_ms - retention_ms;
        const bool too_big = retention_bytes >= 0 && size_bytes_ > retention_bytes;
        if (!too_old && !too_big) break;
        freed += PopFrontLocked();
      }
    }
    budget_->Release(freed);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> OffsetForTime(int64_t time_ms) const override {
    absl::ReaderMutexLock lock(&mu_);
    const size_t i =
        entries_.PartitionPoint([time_ms](const Entry& e) { return e.timestamp_ms < time_ms; });
    return first_offset_ + static_cast<int64_t>(i);
  }

  absl::Status Sync() override { return absl::OkStatus(); }

  int64_t FirstOffset() const override {
    absl::ReaderMutexLock lock(&mu_);
    return first_offset_;
  }

  int64_t NextOffset() const override {
    absl::ReaderMutexLock lock(&mu_);
    return NextOffsetLocked();
  }

  LogStats Stats() const override {
    absl::ReaderMutexLock lock(&mu_);
    LogStats s;
    s.first_offset = first_offset_;
    s.next_offset = NextOffsetLocked();
    s.size_bytes = size_bytes_;
    s.appends = appends_;
    return s;
  }

 private:
  int64_t NextOffsetLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return first_offset_ + static_cast<int64_t>(entries_.size());
  }

  absl::Status CheckRangeLocked(int64_t offset) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    if (offset < first_offset_) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset, " is below the first retained offset ", first_offset_,
                       " (next offset ", NextOffsetLocked(), ")"));
    }
    if (offset > NextOffsetLocked()) {
      return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the next offset ",
                                                NextOffsetLocked(), " (first retained offset ",
                                                first_offset_, ")"));
    }
    return absl::OkStatus();
  }

  // Drops the oldest record; returns its charge, which the caller releases
  // to the budget once the lock is dropped.
  int64_t PopFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t charge = entries_.front().charge;
    entries_.pop_front();
    ++first_offset_;
    size_bytes_ -= charge;
    arena_.ReleaseBefore(entries_.empty() ? nullptr : entries_.front().data);
    return charge;
  }

  MemoryBudget* const budget_;
  mutable absl::Mutex mu_;
  Arena arena_ ABSL_GUARDED_BY(mu_);
  ChunkedQueue<Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t first_offset_ ABSL_GUARDED_BY(mu_) = 0;
  // Sum of the entries' charges: exactly what this log holds of the
  // budget.
  int64_t size_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t appends_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<Log> NewMemoryLog(MemoryBudget* budget) {
  return std::make_unique<MemoryLog>(budget);
}

}  // namespace once::broker
