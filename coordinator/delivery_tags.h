// DeliveryTags: the deliveries of one WebSocket subscription with delivery
// tags (schema/ws_protocol.md), by tag. Each delivery gets the next tag of
// the subscription (1, 2, 3 ...: an AMQP delivery tag), and the service
// keeps its handle (broker::Delivery::handle) here until the client acks
// or nacks the tag, or the subscription ends and what is left is released.
// The client then never holds or sends a token: an ack names numbers, or
// every tag up to one number.
//
// Holds only what is outstanding: a tag acked, nacked or taken is gone.
// Not thread-safe (the session's strand owns it).
#ifndef ONCE_COORDINATOR_DELIVERY_TAGS_H_
#define ONCE_COORDINATOR_DELIVERY_TAGS_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "broker/group_token.h"

namespace once::coordinator {

class DeliveryTags {
 public:
  using Entry = std::pair<uint64_t, broker::DeliveryToken>;  // tag, handle

  // Records `handle` under the next tag and returns that tag.
  uint64_t Add(const broker::DeliveryToken& handle) {
    outstanding_.emplace_hint(outstanding_.end(), next_tag_, handle);
    return next_tag_++;
  }
  // The tag the next Add returns: every tag below it was handed out.
  uint64_t next_tag() const { return next_tag_; }
  size_t size() const { return outstanding_.size(); }

  // The handle of `tag`, removed; nullopt when it is not outstanding.
  std::optional<broker::DeliveryToken> Take(uint64_t tag) {
    auto it = outstanding_.find(tag);
    if (it == outstanding_.end()) return std::nullopt;
    broker::DeliveryToken handle = it->second;
    outstanding_.erase(it);
    return handle;
  }
  // Removes every outstanding tag <= `tag` and appends them to `out`, in
  // ascending order.
  void TakeThrough(uint64_t tag, std::vector<Entry>* out) {
    auto end = outstanding_.upper_bound(tag);
    for (auto it = outstanding_.begin(); it != end; ++it) out->push_back(*it);
    outstanding_.erase(outstanding_.begin(), end);
  }
  // Removes every outstanding tag and returns their handles.
  std::vector<broker::DeliveryToken> TakeAll() {
    std::vector<broker::DeliveryToken> handles;
    handles.reserve(outstanding_.size());
    for (const auto& [tag, handle] : outstanding_) handles.push_back(handle);
    outstanding_.clear();
    return handles;
  }

 private:
  absl::btree_map<uint64_t, broker::DeliveryToken> outstanding_;
  uint64_t next_tag_ = 1;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_DELIVERY_TAGS_H_
