#include "es/store/json.hpp"

#include "es/store/errors.hpp"

#include "rapidjson.hpp"

#include <cmath>

namespace es::json {

namespace {

using rj_value = rapidjson::Value;

/// Forwards SAX events to `Handler` and fails once nesting exceeds a limit.
template <class Handler>
class depth_guard {
public:
  depth_guard(Handler& next, size_t max_depth)
    : next_(next), max_depth_(max_depth) {
    // nop
  }

  bool Null() {
    return next_.Null();
  }
  bool Bool(bool b) {
    return next_.Bool(b);
  }
  bool Int(int i) {
    return next_.Int(i);
  }
  bool Uint(unsigned u) {
    return next_.Uint(u);
  }
  bool Int64(int64_t i) {
    return next_.Int64(i);
  }
  bool Uint64(uint64_t u) {
    return next_.Uint64(u);
  }
  bool Double(double d) {
    return next_.Double(d);
  }
  bool RawNumber(const char* str, rapidjson::SizeType len, bool copy) {
    return next_.RawNumber(str, len, copy);
  }
  bool String(const char* str, rapidjson::SizeType len, bool copy) {
    return next_.String(str, len, copy);
  }
  bool StartObject() {
    return enter() && next_.StartObject();
  }
  bool Key(const char* str, rapidjson::SizeType len, bool copy) {
    return next_.Key(str, len, copy);
  }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return next_.EndObject(n);
  }
  bool StartArray() {
    return enter() && next_.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return next_.EndArray(n);
  }

  bool too_deep() const noexcept {
    return too_deep_;
  }

private:
  bool enter() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  Handler& next_;
  size_t max_depth_;
  size_t depth_ = 0;
  bool too_deep_ = false;
};

/// A SAX handler that accepts everything: used for validation only.
struct null_handler
  : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, null_handler> {
  bool Default() {
    return true;
  }
};

caf::error parse_error(const rapidjson::Reader& reader, bool too_deep,
                       const parse_limits& limits) {
  if (too_deep)
    return make_store_error(store_errc::malformed_payload,
                            "JSON nested deeper than "
                              + std::to_string(limits.max_depth) + " levels");
  std::string msg = "invalid JSON at offset ";
  msg += std::to_string(reader.GetErrorOffset());
  msg += ": ";
  msg += rapidjson::GetParseError_En(reader.GetParseErrorCode());
  return make_store_error(store_errc::malformed_payload, std::move(msg));
}

caf::error check_size(std::string_view text, const parse_limits& limits) {
  if (text.size() > limits.max_bytes)
    return make_store_error(store_errc::payload_too_large,
                            "JSON text of " + std::to_string(text.size())
                              + " bytes exceeds the limit of "
                              + std::to_string(limits.max_bytes));
  // RapidJSON stops at a NUL byte as if the text ended there; JSON text
  // never contains one (inside strings it must be escaped).
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return make_store_error(store_errc::malformed_payload,
                            "invalid JSON at offset " + std::to_string(nul)
                              + ": NUL byte");
  return caf::none;
}

const rj_value& get(const void* ptr) {
  return *static_cast<const rj_value*>(ptr);
}

} // namespace

caf::error validate(std::string_view text, const parse_limits& limits,
                    bool require_object) {
  if (auto err = check_size(text, limits))
    return err;
  // Skip leading whitespace to check the first character cheaply.
  auto first = text.find_first_not_of(" \t\r\n");
  if (require_object && (first == std::string_view::npos || text[first] != '{'))
    return make_store_error(store_errc::malformed_payload,
                            "expected a JSON object");
  rapidjson::MemoryStream ms{text.data(), text.size()};
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in{
    ms};
  rapidjson::Reader reader;
  null_handler sink;
  depth_guard<null_handler> guard{sink, limits.max_depth};
  if (!reader.Parse<detail::untrusted_parse_flags>(in, guard))
    return parse_error(reader, guard.too_deep(), limits);
  return caf::none;
}

// -- writer -------------------------------------------------------------------

struct writer::impl {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> out{buf};
  bool ok = true;
};

writer::writer() : impl_(std::make_unique<impl>()) {
  // nop
}

writer::~writer() {
  // nop
}

void writer::begin_object() {
  impl_->ok &= impl_->out.StartObject();
}

void writer::end_object() {
  impl_->ok &= impl_->out.EndObject();
}

void writer::begin_array() {
  impl_->ok &= impl_->out.StartArray();
}

void writer::end_array() {
  impl_->ok &= impl_->out.EndArray();
}

void writer::key(std::string_view name) {
  impl_->ok &= impl_->out.Key(name.data(),
                              static_cast<rapidjson::SizeType>(name.size()));
}

void writer::null() {
  impl_->ok &= impl_->out.Null();
}

void writer::boolean(bool x) {
  impl_->ok &= impl_->out.Bool(x);
}

void writer::integer(int64_t x) {
  impl_->ok &= impl_->out.Int64(x);
}

void writer::unsigned_integer(uint64_t x) {
  impl_->ok &= impl_->out.Uint64(x);
}

void writer::number(double x) {
  if (!std::isfinite(x)) {
    impl_->ok = false;
    impl_->out.Null();
    return;
  }
  impl_->ok &= impl_->out.Double(x);
}

void writer::string(std::string_view x) {
  impl_->ok
    &= impl_->out.String(x.data(), static_cast<rapidjson::SizeType>(x.size()));
}

bool writer::ok() const noexcept {
  return impl_->ok;
}

std::string writer::str() const {
  return std::string(impl_->buf.GetString(), impl_->buf.GetSize());
}

// -- value --------------------------------------------------------------------

const char* to_string(kind x) {
  switch (x) {
    case kind::null: return "null";
    case kind::boolean: return "boolean";
    case kind::number: return "number";
    case kind::string: return "string";
    case kind::array: return "array";
    case kind::object: return "object";
  }
  return "?";
}

kind value::type() const noexcept {
  switch (get(ptr_).GetType()) {
    case rapidjson::kNullType: return kind::null;
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return kind::boolean;
    case rapidjson::kNumberType: return kind::number;
    case rapidjson::kStringType: return kind::string;
    case rapidjson::kArrayType: return kind::array;
    case rapidjson::kObjectType: return kind::object;
  }
  return kind::null;
}

std::optional<bool> value::as_bool() const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsBool())
    return std::nullopt;
  return v.GetBool();
}

std::optional<int64_t> value::as_int64() const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsInt64())
    return std::nullopt;
  return v.GetInt64();
}

std::optional<uint64_t> value::as_uint64() const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsUint64())
    return std::nullopt;
  return v.GetUint64();
}

std::optional<double> value::as_double() const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsNumber())
    return std::nullopt;
  return v.GetDouble();
}

std::optional<std::string_view> value::as_string() const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsString())
    return std::nullopt;
  return std::string_view{v.GetString(), v.GetStringLength()};
}

std::optional<value> value::find(std::string_view name) const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsObject())
    return std::nullopt;
  for (auto i = v.MemberBegin(); i != v.MemberEnd(); ++i) {
    std::string_view key{i->name.GetString(), i->name.GetStringLength()};
    if (key == name)
      return value{&i->value};
  }
  return std::nullopt;
}

size_t value::size() const noexcept {
  const auto& v = get(ptr_);
  if (v.IsArray())
    return v.Size();
  if (v.IsObject())
    return v.MemberCount();
  return 0;
}

value value::at(size_t i) const noexcept {
  return value{&get(ptr_)[static_cast<rapidjson::SizeType>(i)]};
}

std::string_view value::member_name(size_t i) const noexcept {
  const auto& m = *(get(ptr_).MemberBegin() + static_cast<ptrdiff_t>(i));
  return {m.name.GetString(), m.name.GetStringLength()};
}

value value::member_value(size_t i) const noexcept {
  const auto& m = *(get(ptr_).MemberBegin() + static_cast<ptrdiff_t>(i));
  return value{&m.value};
}

void value::write_to(writer& out) const {
  switch (type()) {
    case kind::null: out.null(); break;
    case kind::boolean: out.boolean(*as_bool()); break;
    case kind::number: {
      const auto& v = get(ptr_);
      if (v.IsInt64())
        out.integer(v.GetInt64());
      else if (v.IsUint64())
        out.unsigned_integer(v.GetUint64());
      else
        out.number(v.GetDouble());
      break;
    }
    case kind::string: out.string(*as_string()); break;
    case kind::array:
      out.begin_array();
      for (size_t i = 0; i < size(); ++i)
        at(i).write_to(out);
      out.end_array();
      break;
    case kind::object:
      out.begin_object();
      for (size_t i = 0; i < size(); ++i) {
        out.key(member_name(i));
        member_value(i).write_to(out);
      }
      out.end_object();
      break;
  }
}

// -- document -----------------------------------------------------------------

struct document::impl {
  rapidjson::Document doc;
};

document::document() : impl_(std::make_unique<impl>()) {
  // nop
}

document::document(document&&) noexcept = default;

document& document::operator=(document&&) noexcept = default;

document::~document() {
  // nop
}

caf::expected<document> document::parse(std::string_view text,
                                        const parse_limits& limits) {
  if (auto err = check_size(text, limits))
    return err;
  document result;
  rapidjson::MemoryStream ms{text.data(), text.size()};
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in{
    ms};
  rapidjson::Reader reader;
  bool too_deep = false;
  bool ok = false;
  auto generate = [&](rapidjson::Document& handler) {
    depth_guard<rapidjson::Document> guard{handler, limits.max_depth};
    // The reader does not copy strings out of a non-null-terminated memory
    // stream, so the document copies them (kParseDefaultFlags, no in-situ).
    ok = reader.Parse<detail::untrusted_parse_flags>(in, guard);
    too_deep = guard.too_deep();
    return ok;
  };
  result.impl_->doc.Populate(generate);
  if (!ok)
    return parse_error(reader, too_deep, limits);
  return result;
}

value document::root() const noexcept {
  return value{static_cast<const rj_value*>(&impl_->doc)};
}

} // namespace es::json
