// A message as the participant SDK hands it to a consumer's handler.
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_MESSAGE_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_MESSAGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace once {

struct Message {
  // "topic/partition/offset": stable across redeliveries, the key of the
  // SDK's exactly-once and idempotence guards.
  std::string id;
  uint32_t partition = 0;
  uint64_t offset = 0;
  std::optional<std::string> key;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string value;    // the payload's bytes
  bool binary = false;  // published as "value_b64" (else UTF-8 "value")
  uint32_t delivery_count = 1;
  int64_t timestamp_ms = 0;  // 0: not given by the service
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_MESSAGE_H_
