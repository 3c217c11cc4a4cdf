#include "tests/bench/load_messages_frame.h"

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json/basic_parser_impl.hpp"

namespace once::load {
namespace {

namespace json = boost::json;
using ec_t = boost::system::error_code;

// Depths: 1 the frame, 2 its "messages" array (or another field's value),
// 3 a delivery object, deeper: inside a delivery's fields (headers).
class Handler {
 public:
  static constexpr size_t max_object_size = static_cast<size_t>(-1);
  static constexpr size_t max_array_size = static_cast<size_t>(-1);
  static constexpr size_t max_key_size = static_cast<size_t>(-1);
  static constexpr size_t max_string_size = static_cast<size_t>(-1);

  explicit Handler(
      absl::FunctionRef<void(bool, absl::string_view, absl::string_view, uint64_t)> delivery)
      : delivery_(delivery) {}

  bool saw_type_messages() const { return type_is_messages_; }
  bool saw_messages_array() const { return messages_array_; }

  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_array_begin(ec_t&) {
    ++depth_;
    if (depth_ == 3 && in_messages_) NotADelivery();
    if (depth_ == 2 && field_ == Field::kMessages) {
      messages_array_ = true;
      in_messages_ = true;
    }
    return true;
  }
  bool on_array_end(size_t, ec_t&) {
    if (depth_ == 2) in_messages_ = false;
    --depth_;
    return true;
  }
  bool on_object_begin(ec_t&) {
    ++depth_;
    if (depth_ == 3 && in_messages_) {
      has_value_ = false;
      has_token_ = false;
      tag_ = 0;
    }
    return true;
  }
  bool on_object_end(size_t, ec_t&) {
    if (depth_ == 3 && in_messages_) {
      delivery_(has_value_ && (has_token_ || tag_ > 0), value_, token_, tag_);
    }
    --depth_;
    return true;
  }
  bool on_key_part(json::string_view s, size_t, ec_t&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, size_t, ec_t&) {
    const absl::string_view key = Whole(&key_, s);
    field_ = Field::kOther;
    if (depth_ == 1) {
      if (key == "type") field_ = Field::kType;
      if (key == "messages") field_ = Field::kMessages;
    } else if (depth_ == 3 && in_messages_) {
      if (key == "value") field_ = Field::kValue;
      if (key == "delivery_token") field_ = Field::kToken;
      if (key == "delivery_tag") field_ = Field::kTag;
    }
    key_.clear();
    return true;
  }
  bool on_string_part(json::string_view s, size_t, ec_t&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, size_t, ec_t&) {
    const absl::string_view text = Whole(&part_, s);
    // Strings at depth 1 and 3 are field values; deeper ones (headers)
    // and array elements are not ours.
    if (depth_ == 2 && in_messages_) {
      NotADelivery();
    } else if (depth_ == 1 && field_ == Field::kType) {
      type_is_messages_ = text == "messages";
    } else if (depth_ == 3 && in_messages_ && field_ == Field::kValue) {
      value_.assign(text.data(), text.size());
      has_value_ = true;
    } else if (depth_ == 3 && in_messages_ && field_ == Field::kToken) {
      token_.assign(text.data(), text.size());
      has_token_ = true;
    }
    part_.clear();
    return true;
  }
  bool on_number_part(json::string_view, ec_t&) { return true; }
  bool on_int64(int64_t v, json::string_view, ec_t&) {
    if (depth_ == 3 && in_messages_ && field_ == Field::kTag && v > 0) {
      tag_ = static_cast<uint64_t>(v);
    }
    return Scalar();
  }
  bool on_uint64(uint64_t, json::string_view, ec_t&) { return Scalar(); }
  bool on_double(double, json::string_view, ec_t&) { return Scalar(); }
  bool on_bool(bool, ec_t&) { return Scalar(); }
  bool on_null(ec_t&) { return Scalar(); }
  bool on_comment_part(json::string_view, ec_t&) { return true; }
  bool on_comment(json::string_view, ec_t&) { return true; }

 private:
  enum class Field { kOther, kType, kMessages, kValue, kToken, kTag };

  // A key or string that may have come in parts (on_*_part gathered
  // them in `*parts`): `last` alone, or the parts with `last` appended.
  static absl::string_view Whole(std::string* parts, json::string_view last) {
    if (parts->empty()) return absl::string_view(last.data(), last.size());
    parts->append(last.data(), last.size());
    return *parts;
  }

  // An element of "messages" that is not an object.
  void NotADelivery() { delivery_(false, {}, {}, 0); }
  bool Scalar() {
    if (depth_ == 2 && in_messages_) NotADelivery();
    return true;
  }

  absl::FunctionRef<void(bool, absl::string_view, absl::string_view, uint64_t)> delivery_;
  int depth_ = 0;
  Field field_ = Field::kOther;  // the last key's meaning
  bool type_is_messages_ = false;
  bool messages_array_ = false;
  bool in_messages_ = false;
  bool has_value_ = false;
  bool has_token_ = false;
  uint64_t tag_ = 0;  // 0: none
  // Reused across deliveries: no allocation once they are large enough.
  std::string key_, part_, value_, token_;
};

}  // namespace

bool LooksLikeMessagesFrame(absl::string_view frame) {
  return absl::StartsWith(frame, "{\"type\":\"messages\",");
}

absl::Status ForEachDelivery(
    absl::string_view frame,
    absl::FunctionRef<void(bool ok, absl::string_view value, absl::string_view token, uint64_t tag)>
        delivery) {
  json::basic_parser<Handler> parser(json::parse_options(), delivery);
  ec_t ec;
  const size_t consumed = parser.write_some(false, frame.data(), frame.size(), ec);
  if (ec || consumed != frame.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unparsable messages frame near byte ", consumed, ": ", ec.message()));
  }
  if (!parser.handler().saw_type_messages() || !parser.handler().saw_messages_array()) {
    return absl::InvalidArgumentError("not a messages frame with a \"messages\" array");
  }
  return absl::OkStatus();
}

}  // namespace once::load
