#include "coordinator/json_escape.h"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace once::coordinator {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// A byte that cannot be copied as it is: one JSON needs escaped (a control
// character, '"' or '\\') or the start of a multi-byte UTF-8 sequence.
constexpr bool IsSpecial(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80; }

// True when some byte of the 8 in `w` is special (SWAR, "Bit Twiddling
// Hacks": a byte below 0x20, equal to '"' or '\\', or with its top bit set).
bool WordHasSpecial(uint64_t w) {
  constexpr uint64_t kOnes = ~uint64_t{0} / 255;
  constexpr uint64_t kHigh = kOnes * 0x80;
  auto has_zero = [](uint64_t v) { return ((v - kOnes) & ~v & kHigh) != 0; };
  const bool below_space = ((w - kOnes * 0x20) & ~w & kHigh) != 0;
  return (w & kHigh) != 0 || below_space || has_zero(w ^ (kOnes * '"')) ||
         has_zero(w ^ (kOnes * '\\'));
}

// The first special byte at or after `p`, or `end`.
const unsigned char* SkipPlain(const unsigned char* p, const unsigned char* end) {
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // A signed compare: bytes of 0x80 and above are negative, so "below
    // 0x20" catches them too.
    const __m128i special =
        _mm_or_si128(_mm_cmplt_epi8(v, space),
                     _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
    const int mask = _mm_movemask_epi8(special);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    if (WordHasSpecial(w)) break;
    p += 8;
  }
  while (p < end && !IsSpecial(*p)) ++p;
  return p;
}

// Appends the escape of a byte below 0x80 that needs one.
void AppendEscape(std::string* out, unsigned char c) {
  switch (c) {
    case '"':
      out->append("\\\"");
      break;
    case '\\':
      out->append("\\\\");
      break;
    case '\b':
      out->append("\\b");
      break;
    case '\f':
      out->append("\\f");
      break;
    case '\n':
      out->append("\\n");
      break;
    case '\r':
      out->append("\\r");
      break;
    case '\t':
      out->append("\\t");
      break;
    default: {
      const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      out->append(u, sizeof(u));
    }
  }
}

}  // namespace

size_t Utf8SequenceLength(const unsigned char* p, size_t available) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t n;  // continuation bytes
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    n = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (available <= n) return 0;
  for (size_t i = 1; i <= n; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n + 1;
}

bool IsValidUtf8(absl::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* end = p + bytes.size();
  while (p < end) {
    // Eight ASCII bytes at a time: most payloads are ASCII text.
    while (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, sizeof(w));
      if ((w & 0x8080808080808080ULL) != 0) break;
      p += 8;
    }
    if (p >= end) break;
    const size_t n = Utf8SequenceLength(p, static_cast<size_t>(end - p));
    if (n == 0) return false;
    p += n;
  }
  return true;
}

bool AppendJsonEscapedIfUtf8(std::string* out, absl::string_view s) {
  const size_t mark = out->size();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  const unsigned char* run = p;  // the first byte not yet appended
  for (;;) {
    p = SkipPlain(p, end);
    if (p == end) break;
    if (*p >= 0x80) {
      const size_t n = Utf8SequenceLength(p, static_cast<size_t>(end - p));
      if (n == 0) {
        out->resize(mark);
        return false;
      }
      p += n;  // copied with its run
      continue;
    }
    out->append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
    AppendEscape(out, *p);
    run = ++p;
  }
  out->append(reinterpret_cast<const char*>(run), static_cast<size_t>(end - run));
  return true;
}

void AppendJsonEscaped(std::string* out, absl::string_view s) {
  if (AppendJsonEscapedIfUtf8(out, s)) return;
  // Only reachable for records not published through the API (its parser
  // validates UTF-8).
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x80) {
      out->append("\xEF\xBF\xBD");  // U+FFFD
    } else if (IsSpecial(b)) {
      AppendEscape(out, b);
    } else {
      out->push_back(c);
    }
  }
}

}  // namespace once::coordinator
