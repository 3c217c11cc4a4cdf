// The unit of storage: one message as a producer sent it, plus what the log
// assigns (offset) and the topic stamps (timestamp).
#ifndef ONCE_BROKER_RECORD_H_
#define ONCE_BROKER_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace once::broker {

struct Header {
  std::string key;
  std::string value;

  friend bool operator==(const Header&, const Header&) = default;
};

// Bits of Record::flags. Stored on disk: never renumber.
enum RecordFlag : uint8_t {
  kRecordHasKey = 1 << 0,       // `key` was given (an empty key is still a key)
  kRecordValueBinary = 1 << 1,  // the producer sent value_b64: deliver it so
};

struct Record {
  int64_t offset = 0;        // assigned by the log on append; ignored in input
  int64_t timestamp_ms = 0;  // wall-clock ms when the topic accepted it
  uint8_t flags = 0;         // RecordFlag bits
  std::string key;
  std::string idempotency_key;  // empty: none
  std::vector<Header> headers;
  std::string value;

  bool has_key() const { return (flags & kRecordHasKey) != 0; }

  // Bytes this record costs against a budget or a max-message limit: the
  // payload and metadata the producer controls, not framing.
  size_t PayloadBytes() const {
    size_t n = key.size() + idempotency_key.size() + value.size();
    for (const Header& h : headers) n += h.key.size() + h.value.size();
    return n;
  }

  friend bool operator==(const Record&, const Record&) = default;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_RECORD_H_
