// Writing text into JSON strings by hand: the delivery frames are built
// without a DOM (see ws_frames.h), and a delivery's value is most of each
// frame's bytes. So the common case, text with nothing to escape, is
// scanned 16 bytes at a time, and checking UTF-8 and escaping are one pass
// over the value instead of two.
#ifndef ONCE_COORDINATOR_JSON_ESCAPE_H_
#define ONCE_COORDINATOR_JSON_ESCAPE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace once::coordinator {

// Appends `s` as the inside of a JSON string (without the quotes): '"',
// '\\' and control characters escaped, everything else copied. Returns
// false, with `out` as it was, when `s` is not well-formed UTF-8 (the
// caller then writes it some other way, e.g. as base64).
bool AppendJsonEscapedIfUtf8(std::string* out, absl::string_view s);

// As AppendJsonEscapedIfUtf8, for any bytes: when `s` is not well-formed
// UTF-8, its bytes of 0x80 and above each become U+FFFD, so that the
// output stays valid JSON.
void AppendJsonEscaped(std::string* out, absl::string_view s);

// True when `bytes` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(absl::string_view bytes);

// The length of the well-formed UTF-8 sequence that starts at `p`, which
// has `available` bytes (at least 1): 1 to 4, or 0 when the bytes there
// are not one (a stray continuation byte, a truncated sequence, an
// overlong form, a surrogate or a code point past U+10FFFF).
size_t Utf8SequenceLength(const unsigned char* p, size_t available);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_JSON_ESCAPE_H_
