// JSON codecs for plain structs that list their fields.
//
// A struct becomes encodable by declaring a `fields` function, found by
// argument-dependent lookup, that names each member:
//
//   struct item_added {
//     std::string sku;
//     int32_t quantity = 0;
//   };
//   template <class F>
//   bool fields(F& f, item_added& x) {
//     return f("sku", x.sku) && f("quantity", x.quantity);
//   }
//
// Chain the members with && as above: decoding reports where it failed as
// the failure returns through `fields`, so it must return false at once.
//
// Supported members: bool, integers, double, float (a number beyond its
// range is an error), std::string, es::uuid, es::timestamp (ISO 8601 UTC
// text), std::optional (omitted when empty; missing or null on decode),
// std::vector, std::map with string keys, and structs that have `fields`
// themselves. Decoding is strict: a missing required field or a wrong type
// is an error naming the field's path; unknown fields are ignored, so newer
// writers stay readable.
#pragma once

#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/json.hpp"
#include "es/store/uuid.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace es {

/// Formats `t` as "YYYY-MM-DDTHH:MM:SS.ffffffZ". Any time point formats; a
/// year beyond 9999 has more digits, one before year 0 a minus sign (forms
/// `parse_timestamp` refuses: stores keep years 1 to 9999).
std::string format_timestamp(timestamp t);

/// Parses the form `format_timestamp` writes for years 0 to 9999 (fraction
/// optional, 'Z' or "+00:00" suffix). Returns `invalid_argument` otherwise.
caf::expected<timestamp> parse_timestamp(std::string_view text);

namespace detail {

struct field_encoder;

} // namespace detail

/// A type with a `fields` function, see the top of this header.
template <class T>
concept has_fields = requires(detail::field_encoder& f, T& x) {
  { fields(f, x) } -> std::convertible_to<bool>;
};

namespace detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
struct is_string_map : std::false_type {};
template <class T, class C, class A>
struct is_string_map<std::map<std::string, T, C, A>> : std::true_type {};

template <class T>
void encode_value(json::writer& out, const T& x);

/// Passed to `fields` when encoding: writes each member as a JSON member.
struct field_encoder {
  json::writer& out;

  template <class T>
  bool operator()(std::string_view name, T& x) {
    if constexpr (is_optional<T>::value) {
      if (!x)
        return true;
    }
    out.key(name);
    encode_value(out, x);
    return true;
  }
};

template <class T>
void encode_value(json::writer& out, const T& x) {
  if constexpr (std::is_same_v<T, bool>) {
    out.boolean(x);
  } else if constexpr (std::is_enum_v<T>) {
    encode_value(out, static_cast<std::underlying_type_t<T>>(x));
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    out.integer(static_cast<int64_t>(x));
  } else if constexpr (std::is_integral_v<T>) {
    out.unsigned_integer(static_cast<uint64_t>(x));
  } else if constexpr (std::is_floating_point_v<T>) {
    out.number(static_cast<double>(x));
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out.string(std::string_view{x});
  } else if constexpr (std::is_same_v<T, uuid>) {
    out.string(x.to_string());
  } else if constexpr (std::is_same_v<T, timestamp>) {
    out.string(format_timestamp(x));
  } else if constexpr (is_optional<T>::value) {
    if (x)
      encode_value(out, *x);
    else
      out.null();
  } else if constexpr (is_vector<T>::value) {
    out.begin_array();
    for (const auto& item : x)
      encode_value(out, item);
    out.end_array();
  } else if constexpr (is_string_map<T>::value) {
    out.begin_object();
    for (const auto& [k, v] : x) {
      out.key(k);
      encode_value(out, v);
    }
    out.end_object();
  } else if constexpr (has_fields<T>) {
    out.begin_object();
    field_encoder enc{out};
    // Encoding does not modify `x`; `fields` takes a mutable reference so one
    // function serves both directions.
    fields(enc, const_cast<T&>(x));
    out.end_object();
  } else {
    static_assert(sizeof(T) == 0, "type has no JSON codec: add fields()");
  }
}

/// Collects the first decoding error and, as the failure returns through
/// the enclosing fields, elements and map entries, where it happened; no
/// path is built while decoding succeeds.
struct decode_state {
  /// One step of the path, innermost first in `where`.
  struct step {
    enum class kind : uint8_t { field, index, key };
    kind type;
    std::string text;
  };

  std::string error;
  std::vector<step> where;

  bool fail(std::string_view what) {
    if (error.empty())
      error = what;
    return false;
  }

  /// Adds a step to the path of a failure; returns false.
  bool within(step::kind type, std::string text) {
    where.push_back(step{type, std::move(text)});
    return false;
  }

  /// Returns "path: what", or "payload: what" at the top level.
  std::string message() const {
    std::string path;
    for (auto i = where.rbegin(); i != where.rend(); ++i) {
      switch (i->type) {
        case step::kind::field:
          if (!path.empty())
            path += '.';
          path += i->text;
          break;
        case step::kind::index:
          path += '[';
          path += i->text;
          path += ']';
          break;
        case step::kind::key:
          path += '.';
          path += i->text;
          break;
      }
    }
    if (path.empty())
      path = "payload";
    path += ": ";
    path += error;
    return path;
  }
};

std::string type_mismatch(std::string_view expected, json::kind got);

template <class V, class T>
bool decode_value(decode_state& st, const V& in, T& x);

/// Passed to `fields` when decoding: reads each member from a JSON object,
/// a `json::value` or a `json::tape::value` (`V`).
template <class V>
struct field_decoder {
  decode_state& st;
  const V& obj;
  /// Where the next member is likely to be (see `json::value::find`).
  size_t next = 0;

  template <class T>
  bool operator()(std::string_view name, T& x) {
    bool ok = true;
    auto member = obj.find(name, next);
    if (!member || member->type() == json::kind::null) {
      if constexpr (is_optional<T>::value)
        x.reset();
      else
        ok = st.fail("missing required field");
    } else {
      ok = decode_value(st, *member, x);
    }
    if (!ok)
      return st.within(decode_state::step::kind::field, std::string{name});
    return true;
  }
};

template <class V, class T>
bool decode_value(decode_state& st, const V& in, T& x) {
  if constexpr (std::is_same_v<T, bool>) {
    auto v = in.as_bool();
    if (!v)
      return st.fail(type_mismatch("boolean", in.type()));
    x = *v;
    return true;
  } else if constexpr (std::is_enum_v<T>) {
    std::underlying_type_t<T> tmp{};
    if (!decode_value(st, in, tmp))
      return false;
    x = static_cast<T>(tmp);
    return true;
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    auto v = in.as_int64();
    if (!v)
      return st.fail(type_mismatch("integer", in.type()));
    if (*v < std::numeric_limits<T>::min()
        || *v > std::numeric_limits<T>::max())
      return st.fail("integer out of range");
    x = static_cast<T>(*v);
    return true;
  } else if constexpr (std::is_integral_v<T>) {
    auto v = in.as_uint64();
    if (!v)
      return st.fail(type_mismatch("unsigned integer", in.type()));
    if (*v > std::numeric_limits<T>::max())
      return st.fail("integer out of range");
    x = static_cast<T>(*v);
    return true;
  } else if constexpr (std::is_floating_point_v<T>) {
    auto v = in.as_double();
    if (!v)
      return st.fail(type_mismatch("number", in.type()));
    // Converting a double beyond a narrower type's range is undefined.
    if (*v < std::numeric_limits<T>::lowest()
        || *v > std::numeric_limits<T>::max())
      return st.fail("number out of range");
    x = static_cast<T>(*v);
    return true;
  } else if constexpr (std::is_same_v<T, std::string>) {
    auto v = in.as_string();
    if (!v)
      return st.fail(type_mismatch("string", in.type()));
    x.assign(v->data(), v->size());
    return true;
  } else if constexpr (std::is_same_v<T, uuid>) {
    auto v = in.as_string();
    if (!v)
      return st.fail(type_mismatch("UUID string", in.type()));
    auto parsed = uuid::parse(*v);
    if (!parsed)
      return st.fail("not a UUID");
    x = *parsed;
    return true;
  } else if constexpr (std::is_same_v<T, timestamp>) {
    auto v = in.as_string();
    if (!v)
      return st.fail(type_mismatch("timestamp string", in.type()));
    auto parsed = parse_timestamp(*v);
    if (!parsed)
      return st.fail("not an ISO 8601 UTC timestamp");
    x = *parsed;
    return true;
  } else if constexpr (is_optional<T>::value) {
    if (in.type() == json::kind::null) {
      x.reset();
      return true;
    }
    typename T::value_type tmp{};
    if (!decode_value(st, in, tmp))
      return false;
    x = std::move(tmp);
    return true;
  } else if constexpr (is_vector<T>::value) {
    if (in.type() != json::kind::array)
      return st.fail(type_mismatch("array", in.type()));
    x.clear();
    x.reserve(in.size());
    size_t at = 0;
    while (auto element = in.next_element(at)) {
      typename T::value_type item{};
      if (!decode_value(st, *element, item))
        return st.within(decode_state::step::kind::index,
                         std::to_string(x.size()));
      x.push_back(std::move(item));
    }
    return true;
  } else if constexpr (is_string_map<T>::value) {
    if (in.type() != json::kind::object)
      return st.fail(type_mismatch("object", in.type()));
    x.clear();
    size_t at = 0;
    while (auto member = in.next_member(at)) {
      typename T::mapped_type item{};
      if (!decode_value(st, member->second, item))
        return st.within(decode_state::step::kind::key,
                         std::string{member->first});
      x.insert_or_assign(std::string{member->first}, std::move(item));
    }
    return true;
  } else if constexpr (has_fields<T>) {
    if (in.type() != json::kind::object)
      return st.fail(type_mismatch("object", in.type()));
    field_decoder<V> dec{st, in};
    return fields(dec, x);
  } else {
    static_assert(sizeof(T) == 0, "type has no JSON codec: add fields()");
  }
}

} // namespace detail

/// Encodes `x` as JSON text. Fails with `malformed_payload` only for values
/// JSON cannot express (NaN or infinite numbers).
template <class T>
caf::expected<std::string> to_json(const T& x) {
  json::writer out;
  detail::encode_value(out, x);
  if (!out.ok())
    return make_store_error(store_errc::malformed_payload,
                            "value cannot be written as JSON (NaN or "
                            "infinite number)");
  return out.str();
}

/// Decodes `x` from an already parsed JSON value (a `json::value` or a
/// `json::tape::value`). On failure returns `malformed_payload` naming the
/// field path and the problem.
template <class V, class T>
requires std::same_as<V, json::value> || std::same_as<V, json::tape::value>
  caf::error from_json(const V& in, T& x) {
  detail::decode_state st;
  if (!detail::decode_value(st, in, x))
    return make_store_error(store_errc::malformed_payload, st.message());
  return caf::none;
}

/// Parses and decodes `x` from JSON text: the errors of
/// `json::document::parse`, then those of decoding. Parses into this
/// thread's `json::tape`, so a typical call allocates only for the struct.
template <class T>
caf::error
from_json(std::string_view text, T& x, const json::parse_limits& limits = {}) {
  json::tape_lease tape;
  if (auto err = tape->parse(text, limits))
    return err;
  return from_json(tape->root(), x);
}

/// Parses and decodes a `T` from JSON text, see above.
template <class T>
caf::expected<T>
from_json(std::string_view text, const json::parse_limits& limits = {}) {
  T result{};
  if (auto err = from_json(text, result, limits))
    return err;
  return result;
}

} // namespace es
