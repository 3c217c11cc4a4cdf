// ForwardingLog: a Log that hands every call to another Log. The base of
// the decorators that change only a few calls: PartitionedTopic's fencing
// and written views, tests' fault injection.
#ifndef ONCE_BROKER_FORWARDING_LOG_H_
#define ONCE_BROKER_FORWARDING_LOG_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "broker/log.h"
#include "broker/record.h"

namespace once::broker {

class ForwardingLog : public Log {
 public:
  // `inner` is not owned and must outlive this log.
  explicit ForwardingLog(Log* inner) : inner_(inner) {}

  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override {
    return inner_->Append(records);
  }
  void AppendAsync(std::vector<Record> records, AsyncStart start, AppendCallback done) override {
    inner_->AppendAsync(std::move(records), start, std::move(done));
  }
  absl::StatusOr<std::vector<Record>> Read(int64_t offset, ReadLimits limits) const override {
    return inner_->Read(offset, limits);
  }
  absl::Status TrimBefore(int64_t offset) override { return inner_->TrimBefore(offset); }
  absl::Status EnforceRetention(int64_t now_ms, int64_t retention_ms,
                                int64_t retention_bytes) override {
    return inner_->EnforceRetention(now_ms, retention_ms, retention_bytes);
  }
  absl::StatusOr<int64_t> OffsetForTime(int64_t time_ms) const override {
    return inner_->OffsetForTime(time_ms);
  }
  absl::Status Sync() override { return inner_->Sync(); }
  int64_t FirstOffset() const override { return inner_->FirstOffset(); }
  int64_t NextOffset() const override { return inner_->NextOffset(); }
  LogStats Stats() const override { return inner_->Stats(); }
  int64_t WrittenOffset() const override { return inner_->WrittenOffset(); }
  absl::StatusOr<std::vector<Record>> ReadWritten(int64_t offset,
                                                  ReadLimits limits) const override {
    return inner_->ReadWritten(offset, limits);
  }
  void WhenDurable(int64_t offset, DurableCallback done) override {
    inner_->WhenDurable(offset, std::move(done));
  }

 protected:
  Log* inner() const { return inner_; }

 private:
  Log* const inner_;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_FORWARDING_LOG_H_
