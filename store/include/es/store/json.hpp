// A small JSON facade over RapidJSON, so public headers stay free of it.
#pragma once

#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace es::json {

/// Limits applied when parsing untrusted JSON.
struct parse_limits {
  /// Longest accepted text in bytes.
  size_t max_bytes = 16 * 1024 * 1024;
  /// Deepest accepted nesting of arrays and objects.
  size_t max_depth = 64;
};

/// Checks that `text` is one well-formed JSON value of valid UTF-8 within
/// `limits`. With `require_object`, the value must be an object. Returns
/// `malformed_payload` or `payload_too_large` with a description. Never
/// throws: an internal failure (out of memory, a failed RapidJSON assertion)
/// is `malformed_payload` "internal error while parsing JSON: ...".
///
/// `validate` (without `require_object`) and `document::parse` accept the
/// same texts, read as they are: a leading byte order mark is not JSON text
/// (RFC 8259, section 8.1) and is refused like any other byte outside the
/// grammar. Beyond the JSON grammar they refuse, with `malformed_payload`
/// and a description "invalid JSON at offset N: ..." where N is the item's
/// byte offset:
///
/// - "lone UTF-16 surrogate escape" (N: its backslash): a string or member
///   name with a `\uD800`-`\uDBFF` escape not followed by a `\uDC00`-`\uDFFF`
///   escape, or a `\uDC00`-`\uDFFF` escape not preceded by one. A pair
///   decodes to one 4-byte UTF-8 character.
/// - "number out of range" (N: the number's first character):
///   - a number whose correctly rounded value is infinite, i.e. magnitude
///     DBL_MAX plus half a unit in the last place (about
///     1.797693134862315807937e308) or more;
///   - a number with a nonzero digit whose value rounds to zero, i.e.
///     magnitude 2^-1075 (about 2.470328229206232720882e-324) or less;
///   - two forms RapidJSON's scanner refuses before any conversion: a zero
///     whose positive exponent exceeds 308 plus its number of fraction
///     digits (`0e309`, `0.0e310`; `0.0e309` is accepted), and a number
///     whose integer part (the digits before `.`, `e` or `E`) has 310 or
///     more digits, or 309 digits worth about 1.7976931348623157e308 or
///     more (the scanner sums the digits in a double and stops there),
///     whatever its fraction and exponent. (A nonzero number whose
///     exponent the scanner refuses would be infinite anyway.)
///
/// Every other number reads as written: one without fraction or exponent
/// that fits `int64_t` (negative) or `uint64_t` (otherwise) is that integer
/// (`-0` is the integer 0); any other is the correctly rounded double
/// (nearest, ties to even), subnormal values included.
caf::error validate(std::string_view text, const parse_limits& limits = {},
                    bool require_object = true);

/// Streams JSON text into a string. Not thread-safe; one per text.
class writer {
public:
  writer();
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view name);
  void null();
  void boolean(bool x);
  void integer(int64_t x);
  void unsigned_integer(uint64_t x);
  /// Writes a finite number; NaN and infinities make `ok` return false.
  void number(double x);
  void string(std::string_view x);

  /// Returns false if a value could not be written (non-finite number or
  /// unbalanced nesting).
  bool ok() const noexcept;

  /// Returns the text written so far.
  std::string str() const;

  /// Opaque; each thread keeps a few finished ones for reuse.
  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

enum class kind : uint8_t { null, boolean, number, string, array, object };

/// Returns "null", "boolean", "number", "string", "array" or "object".
const char* to_string(kind x);

/// A read-only view of a value inside a `document`; valid while the
/// document lives. Cheap to copy.
class value {
public:
  kind type() const noexcept;

  std::optional<bool> as_bool() const noexcept;
  /// The number if it is an integer that fits.
  std::optional<int64_t> as_int64() const noexcept;
  std::optional<uint64_t> as_uint64() const noexcept;
  /// Any number, as double.
  std::optional<double> as_double() const noexcept;
  std::optional<std::string_view> as_string() const noexcept;

  /// Returns the member named `name` of an object.
  std::optional<value> find(std::string_view name) const noexcept;

  /// Returns the member named `name` of an object, like `find(name)`, for
  /// a reader that looks up distinct names one after the other. `hint`
  /// starts at 0: while the names come in the object's order, each lookup
  /// compares one name and advances `hint`; on the first lookup that does
  /// not, `hint` becomes `npos` and this and every later lookup searches
  /// (so the first of two members with one name is found, as by `find`).
  std::optional<value> find(std::string_view name, size_t& hint) const noexcept;

  static constexpr size_t npos = static_cast<size_t>(-1);

  /// Number of elements of an array or members of an object, else 0.
  size_t size() const noexcept;
  /// The i-th element of an array. @pre `i < size()` and an array.
  value at(size_t i) const noexcept;
  /// The i-th member name and value of an object. @pre `i < size()`.
  std::string_view member_name(size_t i) const noexcept;
  value member_value(size_t i) const noexcept;

  /// Walks the elements of an array in order: `at` starts at 0; returns
  /// nothing after the last one.
  std::optional<value> next_element(size_t& at) const noexcept;

  /// Walks the members of an object in order, like `next_element`.
  std::optional<std::pair<std::string_view, value>>
  next_member(size_t& at) const noexcept;

  /// Writes this value (and all it contains) to `out`.
  void write_to(writer& out) const;

private:
  friend class document;
  explicit value(const void* ptr) noexcept : ptr_(ptr) {
    // nop
  }
  const void* ptr_;
};

/// A parsed JSON text. Movable, not copyable.
class document {
public:
  /// Parses `text` under `limits`. Errors: `malformed_payload` with the
  /// offset and reason, `payload_too_large`; never throws. Accepts and
  /// reads numbers and strings by the rules described at `validate`.
  static caf::expected<document> parse(std::string_view text,
                                       const parse_limits& limits = {});

  document(document&&) noexcept;
  document& operator=(document&&) noexcept;
  ~document();

  value root() const noexcept;

private:
  document();
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A parsed text as one flat array of items in text order, for readers
/// that walk a text once (decoding into structs): cheaper to build than a
/// `document`, whose values are a tree of nodes. Parses with the rules and
/// errors of `document::parse` and reads its values like `value` does.
/// Reusable: each `parse` replaces the content and keeps the capacity.
class tape {
public:
  class value;

  tape();
  ~tape();
  tape(tape&&) noexcept;
  tape& operator=(tape&&) noexcept;

  /// Parses `text` under `limits`, replacing what the tape held. Errors
  /// as `document::parse`; on error the tape is empty.
  caf::error parse(std::string_view text, const parse_limits& limits = {});

  /// The parsed value. @pre the last `parse` succeeded.
  value root() const noexcept;

  /// Gives up memory beyond `bytes` kept from earlier texts.
  void shrink(size_t bytes) noexcept;

  /// Whether the last successful parse took the fast path (simdjson)
  /// rather than RapidJSON; the results are the same either way.
  bool parsed_fast() const noexcept {
    return parsed_fast_;
  }

  /// One item; an object's members are a key item followed by the value.
  struct item {
    enum class tag : uint8_t {
      null,
      false_value,
      true_value,
      /// A negative integer that fits int64_t (`i`).
      negative,
      /// A non-negative integer that fits uint64_t (`u`).
      nonnegative,
      /// Any other number (`d`).
      floating,
      /// A string value or member name: `size` bytes at offset `u` of the
      /// parsed copy of the text.
      string,
      key,
      /// `size` members or elements follow, up to item `next` - 1.
      object,
      array,
    };
    tag type;
    uint32_t size;
    /// Index of the item after this value and all it contains.
    uint32_t next;
    union {
      int64_t i;
      uint64_t u;
      double d;
    };
  };

private:
  friend class value;
  struct builder;
  struct fast_parser;

  /// simdjson's parser, made on the first parse; texts it accepts are
  /// read from its tape, others go to RapidJSON (see json.cpp).
  std::unique_ptr<fast_parser> fast_;
  bool parsed_fast_ = false;
  /// The parsed text (strings lie in it) or, after the fast parse, a copy
  /// of simdjson's string buffer (each string after its length).
  std::string text_;
  std::vector<item> items_;
  /// While parsing: the objects and arrays not closed yet.
  std::vector<uint32_t> open_;
};

/// A read-only view of a value in a `tape`, with the accessors of
/// `json::value`; valid while the tape holds the same parse.
class tape::value {
public:
  kind type() const noexcept {
    switch (get().type) {
      case item::tag::null: return kind::null;
      case item::tag::false_value:
      case item::tag::true_value: return kind::boolean;
      case item::tag::negative:
      case item::tag::nonnegative:
      case item::tag::floating: return kind::number;
      case item::tag::string:
      case item::tag::key: return kind::string;
      case item::tag::object: return kind::object;
      case item::tag::array: return kind::array;
    }
    return kind::null;
  }

  std::optional<bool> as_bool() const noexcept {
    switch (get().type) {
      case item::tag::false_value: return false;
      case item::tag::true_value: return true;
      default: return std::nullopt;
    }
  }

  std::optional<int64_t> as_int64() const noexcept {
    const auto& x = get();
    if (x.type == item::tag::negative)
      return x.i;
    if (x.type == item::tag::nonnegative
        && x.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return static_cast<int64_t>(x.u);
    return std::nullopt;
  }

  std::optional<uint64_t> as_uint64() const noexcept {
    const auto& x = get();
    if (x.type == item::tag::nonnegative)
      return x.u;
    return std::nullopt;
  }

  std::optional<double> as_double() const noexcept {
    const auto& x = get();
    switch (x.type) {
      case item::tag::negative: return static_cast<double>(x.i);
      case item::tag::nonnegative: return static_cast<double>(x.u);
      case item::tag::floating: return x.d;
      default: return std::nullopt;
    }
  }

  std::optional<std::string_view> as_string() const noexcept {
    const auto& x = get();
    if (x.type != item::tag::string)
      return std::nullopt;
    return text_of(x);
  }

  /// Returns the first member named `name` of an object.
  std::optional<value> find(std::string_view name) const noexcept {
    size_t at = 0;
    while (auto m = next_member(at))
      if (m->first == name)
        return m->second;
    return std::nullopt;
  }

  /// As `value::find(name, hint)`: while the names come in the object's
  /// order each lookup compares one name; `hint` starts at 0.
  std::optional<value> find(std::string_view name,
                            size_t& hint) const noexcept {
    if (hint != npos) {
      size_t at = hint;
      if (auto m = next_member(at); m && m->first == name) {
        hint = at;
        return m->second;
      }
    }
    hint = npos;
    return find(name);
  }

  static constexpr size_t npos = static_cast<size_t>(-1);

  /// Number of elements of an array or members of an object, else 0.
  size_t size() const noexcept {
    const auto& x = get();
    if (x.type == item::tag::object || x.type == item::tag::array)
      return x.size;
    return 0;
  }

  /// As `json::value::next_element`.
  std::optional<value> next_element(size_t& at) const noexcept {
    const auto& x = get();
    if (x.type != item::tag::array)
      return std::nullopt;
    size_t pos = at == 0 ? index_ + 1 : at;
    if (pos >= x.next)
      return std::nullopt;
    at = tape_->items_[pos].next;
    return value{tape_, pos};
  }

  /// As `json::value::next_member`.
  std::optional<std::pair<std::string_view, value>>
  next_member(size_t& at) const noexcept {
    const auto& x = get();
    if (x.type != item::tag::object)
      return std::nullopt;
    size_t pos = at == 0 ? index_ + 1 : at;
    if (pos >= x.next)
      return std::nullopt;
    // A key's `next` is its value.
    at = tape_->items_[pos + 1].next;
    return std::pair{text_of(tape_->items_[pos]), value{tape_, pos + 1}};
  }

private:
  friend class tape;

  value(const tape* t, size_t index) noexcept : tape_(t), index_(index) {
    // nop
  }

  const item& get() const noexcept {
    return tape_->items_[index_];
  }

  std::string_view text_of(const item& x) const noexcept {
    return {tape_->text_.data() + x.u, x.size};
  }

  const tape* tape_;
  size_t index_;
};

inline tape::value tape::root() const noexcept {
  return value{this, 0};
}

/// Lends this thread's tape, reused from call to call so that parsing
/// allocates only when a text outgrows the earlier ones; a nested lease on
/// the same thread gets a tape of its own.
class tape_lease {
public:
  tape_lease();
  ~tape_lease();
  tape_lease(const tape_lease&) = delete;
  tape_lease& operator=(const tape_lease&) = delete;

  tape& operator*() const noexcept {
    return *tape_;
  }
  tape* operator->() const noexcept {
    return tape_;
  }

private:
  tape* tape_;
  std::unique_ptr<tape> own_;
};

} // namespace es::json
