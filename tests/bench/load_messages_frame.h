// Reading a batched delivery frame ({"type":"messages","subscription":N,
// "messages":[...]}, schema/ws_protocol.md) without building a JSON DOM:
// the driver shares the machine's 2 cores with onced, and a DOM of every
// frame (seven fields per delivery) cost the consumers more than the
// service's own delivery path did. The frame is still parsed in full and
// checked (boost::json's parser); only what the driver uses is kept.
#ifndef ONCE_TESTS_BENCH_LOAD_MESSAGES_FRAME_H_
#define ONCE_TESTS_BENCH_LOAD_MESSAGES_FRAME_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace once::load {

// True when `frame` starts as the service writes a "messages" frame (its
// "type" first); such a frame goes to ForEachDelivery, any other through
// the DOM.
bool LooksLikeMessagesFrame(absl::string_view frame);

// Calls `delivery(value, token, tag)` for each element of the frame's
// "messages" array, in order: `token` its "delivery_token" (empty when
// none), `tag` its "delivery_tag" (0 when none). An element without a
// string "value" and either of those is passed with `ok` false.
// kInvalidArgument when the
// frame is not valid JSON, or its "type" is not "messages", or it has no
// "messages" array.
absl::Status ForEachDelivery(
    absl::string_view frame,
    absl::FunctionRef<void(bool ok, absl::string_view value, absl::string_view token, uint64_t tag)>
        delivery);

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_MESSAGES_FRAME_H_
