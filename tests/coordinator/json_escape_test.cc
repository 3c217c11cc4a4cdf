// coordinator/json_escape.h against byte-at-a-time references: every
// special byte at every position of the 16- and 8-byte scans, every kind of
// malformed UTF-8, and random mixtures; valid output must parse back
// (boost::json) to the input.
#include "coordinator/json_escape.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

// Well-formed UTF-8 per RFC 3629's table, written without the code under
// test.
bool ReferenceIsUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  auto in = [&](size_t k, unsigned lo, unsigned hi) { return k < n && p[k] >= lo && p[k] <= hi; };
  while (i < n) {
    const unsigned c = p[i];
    if (c <= 0x7F) {
      i += 1;
    } else if (c >= 0xC2 && c <= 0xDF && in(i + 1, 0x80, 0xBF)) {
      i += 2;
    } else if (c == 0xE0 && in(i + 1, 0xA0, 0xBF) && in(i + 2, 0x80, 0xBF)) {
      i += 3;
    } else if (((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) && in(i + 1, 0x80, 0xBF) &&
               in(i + 2, 0x80, 0xBF)) {
      i += 3;
    } else if (c == 0xED && in(i + 1, 0x80, 0x9F) && in(i + 2, 0x80, 0xBF)) {
      i += 3;
    } else if (c == 0xF0 && in(i + 1, 0x90, 0xBF) && in(i + 2, 0x80, 0xBF) &&
               in(i + 3, 0x80, 0xBF)) {
      i += 4;
    } else if (c >= 0xF1 && c <= 0xF3 && in(i + 1, 0x80, 0xBF) && in(i + 2, 0x80, 0xBF) &&
               in(i + 3, 0x80, 0xBF)) {
      i += 4;
    } else if (c == 0xF4 && in(i + 1, 0x80, 0x8F) && in(i + 2, 0x80, 0xBF) &&
               in(i + 3, 0x80, 0xBF)) {
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

// JSON escaping of a string known to be UTF-8, one byte at a time.
std::string ReferenceEscape(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
  return out;
}

// Checks one input against the references: the result, what was
// appended, and that `out`'s earlier content stays.
void ExpectMatchesReference(const std::string& s) {
  std::string out = "prefix";
  const bool utf8 = AppendJsonEscapedIfUtf8(&out, s);
  ASSERT_EQ(utf8, ReferenceIsUtf8(s)) << "input of " << s.size() << " bytes";
  if (!utf8) {
    EXPECT_EQ(out, "prefix");
    return;
  }
  EXPECT_EQ(out, "prefix" + ReferenceEscape(s));
  const boost::json::value parsed = boost::json::parse("\"" + out.substr(6) + "\"");
  EXPECT_EQ(std::string(parsed.as_string()), s);
}

TEST(JsonEscapeTest, PlainTextIsCopied) {
  std::string out;
  EXPECT_TRUE(
      AppendJsonEscapedIfUtf8(&out, "hello, world: 0123456789 abcdefghijklmnopqrstuvwxyz~\x7f"));
  EXPECT_EQ(out, "hello, world: 0123456789 abcdefghijklmnopqrstuvwxyz~\x7f");
  out.clear();
  EXPECT_TRUE(AppendJsonEscapedIfUtf8(&out, ""));
  EXPECT_EQ(out, "");
}

TEST(JsonEscapeTest, EscapesQuotesBackslashesAndControlCharacters) {
  std::string out;
  EXPECT_TRUE(
      AppendJsonEscapedIfUtf8(&out, std::string("a\"b\\c\nd\te\rf\bg\fh\x01i\x1fj\0k", 21)));
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd\\te\\rf\\bg\\fh\\u0001i\\u001fj\\u0000k");
}

TEST(JsonEscapeTest, MultiByteSequencesAreCopied) {
  // 2, 3 and 4 bytes, the highest code point, and escapes beside them.
  const std::string s = "caf\xC3\xA9 \xE2\x82\xAC\"\xF0\x9F\x98\x80\n\xF4\x8F\xBF\xBF";
  std::string out;
  EXPECT_TRUE(AppendJsonEscapedIfUtf8(&out, s));
  EXPECT_EQ(out, "caf\xC3\xA9 \xE2\x82\xAC\\\"\xF0\x9F\x98\x80\\n\xF4\x8F\xBF\xBF");
}

TEST(JsonEscapeTest, RefusesMalformedUtf8AndLeavesOutputAsItWas) {
  const std::vector<std::string> malformed = {
      "\x80",                  // a continuation byte alone
      "ab\xBF",                // another, after text
      "\xC3",                  // truncated 2-byte sequence
      "\xE2\x82",              // truncated 3-byte sequence
      "\xF0\x9F\x98",          // truncated 4-byte sequence
      "\xC0\xAF",              // overlong '/'
      "\xE0\x80\xAF",          // overlong, 3 bytes
      "\xF0\x80\x80\xAF",      // overlong, 4 bytes
      "\xED\xA0\x80",          // a surrogate (U+D800)
      "\xF4\x90\x80\x80",      // past U+10FFFF
      "\xF8\x88\x80\x80\x80",  // a 5-byte form
      "\xFF",                  // never in UTF-8
      "\xC3(",                 // a lead byte followed by ASCII
  };
  for (const std::string& bad : malformed) {
    // At the start, behind a 16-byte clean run, and behind escapes.
    for (const std::string& s : {bad, std::string(16, 'x') + bad, "\"\\\n" + bad + "tail"}) {
      std::string out = "kept";
      EXPECT_FALSE(AppendJsonEscapedIfUtf8(&out, s)) << testing::PrintToString(s);
      EXPECT_EQ(out, "kept");
    }
  }
}

TEST(JsonEscapeTest, EverySpecialByteAtEveryPositionOfTheScans) {
  // Lengths around the 16- and 8-byte steps; each special byte (or
  // multi-byte sequence) placed at each position.
  const std::vector<std::string> specials = {
      "\"",   "\\",       "\n",           std::string(1, '\0'),
      "\x1f", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
      "\x80", "\xE2\x82"};
  for (size_t length : {1u, 7u, 8u, 9u, 15u, 16u, 17u, 31u, 32u, 33u, 40u}) {
    for (const std::string& special : specials) {
      for (size_t at = 0; at < length; ++at) {
        std::string s(length, 'a');
        s.replace(at, 1, special);
        ExpectMatchesReference(s);
      }
    }
  }
}

TEST(JsonEscapeTest, RandomMixturesMatchTheReferences) {
  std::mt19937 rng(20261126);
  const std::vector<std::string> pieces = {"a",
                                           "Z",
                                           " ",
                                           "0",
                                           "\"",
                                           "\\",
                                           "\n",
                                           "\x01",
                                           "\x7f",
                                           "\xC3\xA9",
                                           "\xE2\x82\xAC",
                                           "\xF0\x9F\x98\x80",
                                           "\x80",
                                           "\xC3",
                                           "\xED\xA0\x80",
                                           std::string(20, 'p')};
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const int count = static_cast<int>(rng() % 40);
    for (int k = 0; k < count; ++k) s += pieces[rng() % pieces.size()];
    ExpectMatchesReference(s);
  }
}

TEST(JsonEscapeTest, AnyBytesBecomeValidJsonWithReplacementCharacters) {
  std::string out;
  AppendJsonEscaped(&out, "ok\"\xFF\x80z\n");
  EXPECT_EQ(out, "ok\\\"\xEF\xBF\xBD\xEF\xBF\xBDz\\n");
  out.clear();
  AppendJsonEscaped(&out, "caf\xC3\xA9");
  EXPECT_EQ(out, "caf\xC3\xA9");
}

TEST(JsonEscapeTest, IsValidUtf8Validates) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));
}

TEST(JsonEscapeTest, Utf8SequenceLengthNamesEachForm) {
  auto length = [](const std::string& s) {
    return Utf8SequenceLength(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  EXPECT_EQ(length("a"), 1u);
  EXPECT_EQ(length("\xC3\xA9z"), 2u);
  EXPECT_EQ(length("\xE2\x82\xAC"), 3u);
  EXPECT_EQ(length("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(length("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(length("\xBF"), 0u);
  EXPECT_EQ(length("\xED\xBF\xBF"), 0u);
}

}  // namespace
}  // namespace once::coordinator
