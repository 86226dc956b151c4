#include "es/store/json.hpp"

#include "es/store/errors.hpp"

// The reader scans whitespace and strings 16 bytes at a time with aligned
// loads, which read up to 15 bytes past the text's terminator: only here,
// where every parsed text is a copy with room after it (copy_for_parsing),
// not in rapidjson.hpp, whose other users may parse text without that room.
// (rapidjson.hpp keeps the writer's own scan off; see there.)
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#  define RAPIDJSON_SSE2
#endif
#include "rapidjson.hpp"
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>
#include <vector>

namespace es::json {

namespace {

using rj_value = rapidjson::Value;

// -- numbers ------------------------------------------------------------------

/// A JSON number converted from its text.
struct converted_number {
  enum class form : uint8_t {
    /// A negative integer that fits int64_t (`i`).
    signed_integer,
    /// A non-negative integer that fits uint64_t (`u`).
    unsigned_integer,
    /// Any other number, correctly rounded (`d`).
    floating,
    /// Rounds to an infinity, or a nonzero number rounds to zero.
    out_of_range,
  };
  form type;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
};

/// Returns whether the digits before the exponent of `raw` are all zero.
bool zero_mantissa(std::string_view raw) noexcept {
  for (auto c : raw) {
    if (c == 'e' || c == 'E')
      break;
    if (c >= '1' && c <= '9')
      return false;
  }
  return true;
}

/// Returns whether a JSON number is written as an integer (no fraction, no
/// exponent). A plain loop: `find_first_of` calls memchr for every character.
bool integer_text(std::string_view raw) noexcept {
  for (auto c : raw)
    if (c == '.' || c == 'e' || c == 'E')
      return false;
  return true;
}

/// Converts the text of a JSON number that RapidJSON has checked for syntax.
/// Uses `std::from_chars`, which libstdc++ (12 and later) rounds correctly
/// without allocating.
converted_number convert_number(std::string_view raw) noexcept {
  using form = converted_number::form;
  const char* first = raw.data();
  const char* last = first + raw.size();
  if (integer_text(raw)) {
    // An integer: exact if it fits, else a double like any other number.
    if (raw.front() == '-') {
      int64_t i = 0;
      auto res = std::from_chars(first, last, i);
      if (res.ec == std::errc{} && res.ptr == last)
        return {form::signed_integer, i, 0, 0};
    } else {
      uint64_t u = 0;
      auto res = std::from_chars(first, last, u);
      if (res.ec == std::errc{} && res.ptr == last)
        return {form::unsigned_integer, 0, u, 0};
    }
  }
  double d = 0;
  auto res = std::from_chars(first, last, d);
  // libstdc++ reports overflow and underflow to zero as out of range; the
  // explicit checks keep that rule with a library that returns inf or 0.
  if (res.ec != std::errc{} || res.ptr != last || std::isinf(d)
      || (d == 0 && !zero_mantissa(raw)))
    return {form::out_of_range, 0, 0, 0};
  return {form::floating, 0, 0, d};
}

// -- strings ------------------------------------------------------------------

/// Returns whether decoded UTF-8 holds an encoded surrogate (U+D800 to
/// U+DFFF: lead byte 0xED, next byte 0xA0 or above). After
/// kParseValidateEncodingFlag, RapidJSON only produces one from a lone low
/// surrogate escape (it refuses lone high ones itself).
bool has_encoded_surrogate(const char* str, size_t len) noexcept {
  const char* end = str + len;
  for (const char* p = str;; ++p) {
    p = static_cast<const char*>(std::memchr(p, '\xED', end - p));
    if (p == nullptr || p + 1 == end)
      return false;
    if (static_cast<unsigned char>(p[1]) >= 0xA0)
      return true;
  }
}

/// Returns the value of the four hex digits at `p`.
unsigned hex4(const char* p) noexcept {
  unsigned result = 0;
  for (int i = 0; i < 4; ++i) {
    auto c = p[i];
    unsigned digit = c <= '9'   ? static_cast<unsigned>(c - '0')
                     : c <= 'F' ? static_cast<unsigned>(c - 'A' + 10)
                                : static_cast<unsigned>(c - 'a' + 10);
    result = result * 16 + digit;
  }
  return result;
}

/// Returns the offset of the first lone low surrogate escape of the string
/// literal whose opening quote is at offset `open` of `text`, which
/// RapidJSON has parsed beyond the literal's end.
size_t lone_surrogate_offset(std::string_view text, size_t open) noexcept {
  for (size_t i = open + 1; i < text.size() && text[i] != '"';) {
    if (text[i] != '\\') {
      ++i;
    } else if (text[i + 1] != 'u') {
      i += 2;
    } else {
      auto unit = hex4(text.data() + i + 2);
      if (unit >= 0xDC00 && unit <= 0xDFFF)
        return i;
      // A high surrogate escape is followed by its low half: skip both.
      i += unit >= 0xD800 && unit <= 0xDBFF ? 12 : 6;
    }
  }
  return open; // Not reached for text RapidJSON has parsed.
}

// -- SAX guard ----------------------------------------------------------------

/// Why `input_guard` stopped a parse.
enum class guard_failure : uint8_t {
  none,
  too_deep,
  number_out_of_range,
  lone_surrogate,
};

/// Sits between RapidJSON's reader (with `untrusted_parse_flags`) and
/// `Handler`: converts numbers from their text, refuses numbers a double
/// cannot hold and strings with lone surrogate escapes, and fails once
/// nesting exceeds a limit. `in` is the stream the reader consumes, over a
/// copy of `text`; numbers and strings come as pointers into that copy
/// (in situ), from which their offsets follow.
template <class Handler>
class input_guard {
public:
  input_guard(Handler& next, std::string_view text,
              rapidjson::InsituStringStream& in, size_t max_depth,
              bool check_surrogates)
    : next_(next), text_(text), in_(in), max_depth_(max_depth),
      check_surrogates_(check_surrogates) {
    // nop
  }

  bool Null() {
    return next_.Null();
  }
  bool Bool(bool b) {
    return next_.Bool(b);
  }
  // The reader calls RawNumber instead of these (kParseNumbersAsStrings).
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
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    using form = converted_number::form;
    auto num = convert_number({str, len});
    switch (num.type) {
      case form::signed_integer:
        // Same events as RapidJSON's own conversion.
        if (num.i >= std::numeric_limits<int32_t>::min())
          return next_.Int(static_cast<int32_t>(num.i));
        return next_.Int64(num.i);
      case form::unsigned_integer:
        if (num.u <= std::numeric_limits<uint32_t>::max())
          return next_.Uint(static_cast<uint32_t>(num.u));
        return next_.Uint64(num.u);
      case form::floating: return next_.Double(num.d);
      case form::out_of_range: break;
    }
    return fail(guard_failure::number_out_of_range, offset_of(str));
  }
  bool String(const char* str, rapidjson::SizeType len, bool copy) {
    if (check_surrogates_ && has_encoded_surrogate(str, len))
      return fail(guard_failure::lone_surrogate,
                  lone_surrogate_offset(text_, offset_of(str) - 1));
    return next_.String(str, len, copy);
  }
  bool StartObject() {
    return enter() && next_.StartObject();
  }
  bool Key(const char* str, rapidjson::SizeType len, bool copy) {
    if (check_surrogates_ && has_encoded_surrogate(str, len))
      return fail(guard_failure::lone_surrogate,
                  lone_surrogate_offset(text_, offset_of(str) - 1));
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

  guard_failure failure() const noexcept {
    return failure_;
  }

  /// Offset of the refused number or escape.
  size_t failure_offset() const noexcept {
    return failure_offset_;
  }

private:
  /// The offset in the text of what `p` points at in the reader's copy (a
  /// string's first character, a number's first digit or sign).
  size_t offset_of(const char* p) const noexcept {
    return static_cast<size_t>(p - in_.head_);
  }

  bool enter() {
    if (++depth_ > max_depth_)
      return fail(guard_failure::too_deep, in_.Tell());
    return true;
  }

  bool fail(guard_failure why, size_t offset) {
    failure_ = why;
    failure_offset_ = offset;
    return false;
  }

  Handler& next_;
  std::string_view text_;
  rapidjson::InsituStringStream& in_;
  size_t max_depth_;
  bool check_surrogates_;
  size_t depth_ = 0;
  guard_failure failure_ = guard_failure::none;
  size_t failure_offset_ = 0;
};

/// A SAX handler that accepts everything: used for validation only.
struct null_handler
  : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, null_handler> {
  bool Default() {
    return true;
  }
};

constexpr const char* number_out_of_range = "number out of range";

constexpr const char* lone_surrogate = "lone UTF-16 surrogate escape";

caf::error malformed_at(size_t offset, const char* reason) {
  std::string msg = "invalid JSON at offset ";
  msg += std::to_string(offset);
  msg += ": ";
  msg += reason;
  return make_store_error(store_errc::malformed_payload, std::move(msg));
}

template <class Handler>
caf::error parse_error(const rapidjson::Reader& reader,
                       const input_guard<Handler>& guard,
                       const parse_limits& limits) {
  switch (guard.failure()) {
    case guard_failure::too_deep:
      return make_store_error(store_errc::malformed_payload,
                              "JSON nested deeper than "
                                + std::to_string(limits.max_depth) + " levels");
    case guard_failure::number_out_of_range:
      return malformed_at(guard.failure_offset(), number_out_of_range);
    case guard_failure::lone_surrogate:
      return malformed_at(guard.failure_offset(), lone_surrogate);
    case guard_failure::none: break;
  }
  auto offset = reader.GetErrorOffset();
  switch (reader.GetParseErrorCode()) {
    // The reader refuses some numbers itself (see json.hpp): same wording.
    case rapidjson::kParseErrorNumberTooBig:
      return malformed_at(offset, number_out_of_range);
    // A high surrogate escape without its low half.
    case rapidjson::kParseErrorStringUnicodeSurrogateInvalid:
      return malformed_at(offset, lone_surrogate);
    default:
      return malformed_at(
        offset, rapidjson::GetParseError_En(reader.GetParseErrorCode()));
  }
}

/// Most `{` and `[` bytes a text may hold to be parsed by RapidJSON's
/// recursive reader (a few hundred bytes of stack per level).
constexpr size_t max_recursive_openers = 64;

/// What a scan of a text found.
struct text_scan {
  /// Every byte is below 0x80.
  bool ascii;
  /// A byte from 0x1A to 0x1F stands somewhere.
  bool high_controls;
  /// `{` and `[` bytes, in strings too: no value nests deeper.
  size_t openers;
};

text_scan scan(std::string_view text) noexcept {
  // Branch-free over all bytes: the compiler turns this into vector code.
  unsigned char any = 0;
  unsigned char controls = 0;
  size_t openers = 0;
  for (auto c : text) {
    auto b = static_cast<unsigned char>(c);
    any |= b;
    controls |= static_cast<unsigned char>(b - 0x1A) < 6 ? 1 : 0;
    openers += (b | 0x20) == '{' ? 1 : 0;
  }
  return {any < 0x80, controls != 0, openers};
}

/// Copies `text` into `buf` for parsing in situ: NUL-terminated, with room
/// after the terminator for the reader's aligned 16-byte loads. Returns
/// what `scan` found.
text_scan copy_for_parsing(std::string_view text, std::string& buf) {
  buf.reserve(text.size() + 16);
  buf.assign(text);
  auto found = scan(text);
  // RapidJSON 1.1.0's vector scan of strings misses the control characters
  // 0x1A to 0x1F (it compares with 0x19), so a string holding one would be
  // accepted. No JSON text holds these bytes anywhere, and the reader
  // refuses 0x01 wherever these bytes stand for the same reason at the same
  // offset: in the copy, they become 0x01.
  if (found.high_controls)
    for (auto& c : buf)
      if (c >= '\x1A' && c <= '\x1F')
        c = '\x01';
  return found;
}

/// Parses `text`, copied into `buf` by `copy_for_parsing` (which found
/// `found`), into `next` through an `input_guard`; the one place that runs
/// RapidJSON's reader.
/// Returns `malformed_payload` on failure. In situ, strings need no copy
/// and the reader scans them 16 bytes at a time; `buf` then holds the
/// strings `next` was given.
template <class Handler>
caf::error guarded_parse(std::string_view text, std::string& buf,
                         text_scan found, const parse_limits& limits,
                         Handler& next) {
  // The reader takes the bytes as they are: RapidJSON's EncodedInputStream
  // would skip leading 0xEF, 0xBB and 0xBF bytes (a byte order mark, or any
  // part of one), which are not JSON text. The text holds no NUL byte
  // (`check_size`), so the terminator is where the stream ends.
  rapidjson::InsituStringStream in{buf.data()};
  rapidjson::Reader reader;
  // ASCII text is valid UTF-8, so the reader's byte-by-byte validation (the
  // largest cost of parsing a typical payload) only runs on text with other
  // bytes. An encoded surrogate needs a 0xED byte in the text or a \u
  // escape; without either, no string can hold one.
  bool check_surrogates
    = !found.ascii || text.find('\\') != std::string_view::npos;
  input_guard<Handler> guard{next, text, in, limits.max_depth,
                             check_surrogates};
  // The iterative reader keeps deep nesting off the stack; a text with few
  // `{` and `[` cannot nest deeply, and the recursive reader is quicker.
  constexpr auto recursive = ~unsigned{rapidjson::kParseIterativeFlag};
  bool shallow = found.openers <= max_recursive_openers;
  bool ok;
  if (found.ascii)
    ok = shallow
           ? reader.Parse<detail::ascii_parse_flags & recursive>(in, guard)
           : reader.Parse<detail::ascii_parse_flags>(in, guard);
  else
    ok = shallow
           ? reader.Parse<detail::untrusted_parse_flags & recursive>(in, guard)
           : reader.Parse<detail::untrusted_parse_flags>(in, guard);
  if (ok)
    return caf::none;
  return parse_error(reader, guard, limits);
}

/// Turns an exception that escaped RapidJSON (a failed RAPIDJSON_ASSERT, or
/// running out of memory) into an error: none may leave the parse entry
/// points.
caf::error parse_exception(const std::exception& e) {
  return make_store_error(store_errc::malformed_payload,
                          std::string{"internal error while parsing JSON: "}
                            + e.what());
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

// -- fast path ----------------------------------------------------------------

// simdjson finds a text's structure 64 bytes at a time and parses a typical
// payload about four times as fast as RapidJSON's reader. Its verdicts are
// not the store's in every case, so it only serves texts it accepts and
// whose tape passes the checks of `walk_tape`; RapidJSON parses every other
// text again, which keeps the refusals' messages and offsets, and the
// store's reading of what simdjson refuses but the store accepts:
// - integers beyond 64 bits (simdjson refuses them, the store reads them
//   as doubles);
// - numbers that round to zero (simdjson reads `1e-400` as 0, the store
//   refuses it): every floating zero goes to RapidJSON;
// - numbers with an integer part of 309 digits or more, which RapidJSON's
//   scanner may refuse (see json.hpp) and simdjson reads when a fraction
//   or exponent follows: a text with a floating number and such a run of
//   digits anywhere goes to RapidJSON;
// - a lone surrogate escape, checked on the decoded strings;
// - nesting beyond `max_depth` (simdjson's own limit is 1024 levels);
// - a leading byte order mark (simdjson 3.0 refuses it, later ones skip it).
// Texts longer than `max_fast_bytes` go to RapidJSON as well: a parser keeps
// about 14 bytes per byte of the longest text it parsed, and there is one
// per thread that validates or decodes.

/// Longest text simdjson parses.
constexpr size_t max_fast_bytes = 16384;

/// Parses `text` with simdjson from a copy in `buf` with the padding
/// simdjson reads past the end. Returns whether simdjson accepted the text
/// (then `parser.doc` holds its tape until `parser` parses again).
bool fast_parse(simdjson::dom::parser& parser, std::string_view text,
                std::string& buf) {
  if (text.size() > max_fast_bytes || text.substr(0, 3) == "\xEF\xBB\xBF")
    return false;
  buf.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  // clear and append: assign's aliasing checks cost more than the copy.
  buf.clear();
  buf.append(text);
  return parser.parse(buf.data(), buf.size(), false).error()
         == simdjson::SUCCESS;
}

/// Returns whether `text` holds a run of `n` or more ASCII digits.
bool has_digit_run(std::string_view text, size_t n) noexcept {
  size_t run = 0;
  for (auto c : text) {
    run = c >= '0' && c <= '9' ? run + 1 : 0;
    if (run >= n)
      return true;
  }
  return false;
}

/// What `walk_tape` knows of the text whose tape it walks.
struct walk_context {
  std::string_view text;
  const parse_limits& limits;
  /// The text holds a backslash, so a decoded string may hold a surrogate
  /// from a \u escape (a text simdjson accepted is valid UTF-8, so
  /// nothing else makes one).
  bool check_surrogates;
  /// Whether the text has a run of digits as long as the integer part of
  /// a number RapidJSON's scanner may refuse; found out on the first
  /// floating number (`digits_scanned`).
  bool long_digit_run = false;
  bool digits_scanned = false;

  walk_context(std::string_view text, const parse_limits& limits)
    : text(text), limits(limits),
      check_surrogates(text.find('\\') != std::string_view::npos) {
    // nop
  }
};

/// Walks simdjson's tape of the text its parser last accepted, in text
/// order, telling `out` what it finds: `open(tag, count)` and `close()`
/// around arrays and objects, `text(str, offset)` for strings and member
/// names (`offset`: where the bytes lie in the parser's string buffer),
/// and the scalars. Returns false, having told `out` only part of the
/// text, where the store's verdict could differ from simdjson's (see
/// above): RapidJSON must parse the text.
///
/// The tape is in simdjson's format (its doc/tape.md; CMake asks for
/// simdjson 3): a 64-bit word per value with the type's character in the top
/// byte and a payload in the low 56 bits; a number's value in the word after
/// it; for a string, the offset of its 4-byte length and bytes in the string
/// buffer; for `[` and `{`, the number of elements or members in bits 32
/// to 55 (saturated at 0xFFFFFF); the root's first word holds the index
/// after its last. The tape holds no numbers beyond those types, and each
/// string is valid UTF-8.
template <class Sink>
bool walk_tape(const simdjson::dom::document& doc, walk_context& ctx,
               Sink& out) {
  using tag = tape::item::tag;
  constexpr uint64_t payload_mask = 0x00FF'FFFF'FFFF'FFFF;
  constexpr uint32_t saturated = 0xFF'FFFF;
  const uint64_t* words = doc.tape.get();
  const uint8_t* strings = doc.string_buf.get();
  // The root's two words enclose the value.
  auto last = static_cast<size_t>(words[0] & payload_mask) - 1;
  size_t depth = 0;
  for (size_t i = 1; i < last; ++i) {
    auto word = words[i];
    auto payload = word & payload_mask;
    switch (static_cast<char>(word >> 56)) {
      case '[':
      case '{': {
        auto count = static_cast<uint32_t>(payload >> 32) & saturated;
        if (++depth > ctx.limits.max_depth || count == saturated)
          return false;
        out.open(static_cast<char>(word >> 56) == '[' ? tag::array
                                                      : tag::object,
                 count);
        break;
      }
      case ']':
      case '}':
        --depth;
        out.close();
        break;
      case '"': {
        uint32_t len = 0;
        std::memcpy(&len, strings + payload, sizeof(len));
        auto offset = static_cast<size_t>(payload) + sizeof(len);
        auto str = reinterpret_cast<const char*>(strings + offset);
        if (ctx.check_surrogates && has_encoded_surrogate(str, len))
          return false;
        out.text(std::string_view{str, len}, offset);
        break;
      }
      case 'l': {
        int64_t x = 0;
        std::memcpy(&x, words + ++i, sizeof(x));
        // As RapidJSON reads it: a non-negative integer is unsigned too.
        if (x >= 0)
          out.unsigned_integer(static_cast<uint64_t>(x));
        else
          out.negative_integer(x);
        break;
      }
      case 'u': out.unsigned_integer(words[++i]); break;
      case 'd': {
        double x = 0;
        std::memcpy(&x, words + ++i, sizeof(x));
        if (x == 0 || !std::isfinite(x))
          return false;
        if (!ctx.digits_scanned) {
          ctx.long_digit_run = has_digit_run(ctx.text, 309);
          ctx.digits_scanned = true;
        }
        if (ctx.long_digit_run)
          return false;
        out.floating(x);
        break;
      }
      case 't': out.boolean(true); break;
      case 'f': out.boolean(false); break;
      case 'n': out.null(); break;
      default: return false; // Not in simdjson 3's format.
    }
  }
  return true;
}

/// A `walk_tape` sink that keeps nothing: used for validation only.
struct null_sink {
  using tag = tape::item::tag;
  void open(tag, uint32_t) noexcept {
    // nop
  }
  void close() noexcept {
    // nop
  }
  void text(std::string_view, size_t) noexcept {
    // nop
  }
  void negative_integer(int64_t) noexcept {
    // nop
  }
  void unsigned_integer(uint64_t) noexcept {
    // nop
  }
  void floating(double) noexcept {
    // nop
  }
  void boolean(bool) noexcept {
    // nop
  }
  void null() noexcept {
    // nop
  }
};

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
  try {
    // One buffer and parser per thread: appends validate every payload.
    struct validation_state {
      std::string buf;
      simdjson::dom::parser parser;
    };
    thread_local validation_state state;
    if (state.buf.capacity() > 65536)
      std::string{}.swap(state.buf);
    null_sink ignore;
    walk_context ctx{text, limits};
    if (fast_parse(state.parser, text, state.buf)
        && walk_tape(state.parser.doc, ctx, ignore))
      return caf::none;
    auto found = copy_for_parsing(text, state.buf);
    null_handler sink;
    return guarded_parse(text, state.buf, found, limits, sink);
  } catch (const std::exception& e) {
    return parse_exception(e);
  }
}

// -- writer -------------------------------------------------------------------

struct writer::impl {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> out{buf};
  bool ok = true;
};

namespace {

/// Writers this thread finished with, kept with their buffers: encoding an
/// event then allocates only its text. A few, since writers may nest (an
/// encoder that encodes a part on its own).
struct writer_cache {
  static constexpr size_t max_kept = 4;
  /// Texts beyond this size give their buffer back to the heap.
  static constexpr size_t max_buffer = 64 * 1024;
  std::vector<std::unique_ptr<writer::impl>> kept;
};

writer_cache& this_threads_writers() {
  thread_local writer_cache cache;
  return cache;
}

} // namespace

writer::writer() {
  auto& cache = this_threads_writers();
  if (cache.kept.empty()) {
    impl_ = std::make_unique<impl>();
    return;
  }
  impl_ = std::move(cache.kept.back());
  cache.kept.pop_back();
}

writer::~writer() {
  auto& cache = this_threads_writers();
  if (impl_ == nullptr || cache.kept.size() >= writer_cache::max_kept
      || impl_->buf.GetSize() > writer_cache::max_buffer)
    return;
  impl_->buf.Clear();
  impl_->out.Reset(impl_->buf);
  impl_->ok = true;
  cache.kept.push_back(std::move(impl_));
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

std::optional<value> value::find(std::string_view name,
                                 size_t& hint) const noexcept {
  const auto& v = get(ptr_);
  // Members 0 to hint - 1 held the earlier names, all different from this
  // one, so a match at `hint` is the first member with this name.
  if (hint != npos && v.IsObject() && hint < v.MemberCount()) {
    const auto& m = *(v.MemberBegin() + static_cast<ptrdiff_t>(hint));
    if (std::string_view{m.name.GetString(), m.name.GetStringLength()}
        == name) {
      ++hint;
      return value{&m.value};
    }
  }
  hint = npos;
  return find(name);
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

std::optional<value> value::next_element(size_t& at) const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsArray() || at >= v.Size())
    return std::nullopt;
  return value{&v[static_cast<rapidjson::SizeType>(at++)]};
}

std::optional<std::pair<std::string_view, value>>
value::next_member(size_t& at) const noexcept {
  const auto& v = get(ptr_);
  if (!v.IsObject() || at >= v.MemberCount())
    return std::nullopt;
  const auto& m = *(v.MemberBegin() + static_cast<ptrdiff_t>(at++));
  return std::pair{
    std::string_view{m.name.GetString(), m.name.GetStringLength()},
    value{&m.value}};
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
  /// The parsed text, in which the document's strings lie (in situ).
  std::string text;
  /// The first block of the document's values, so that a typical payload
  /// needs no allocation beyond this struct and the text; larger documents
  /// continue in blocks from the heap.
  alignas(8) char first_block[2048];
  rapidjson::MemoryPoolAllocator<> pool{first_block, sizeof(first_block)};
  rapidjson::Document doc{&pool};
};

// Default-initialised: value-initialising would clear the first block.
document::document() : impl_(new impl) {
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
  try {
    document result;
    auto found = copy_for_parsing(text, result.impl_->text);
    caf::error err;
    auto generate = [&](rapidjson::Document& handler) {
      err = guarded_parse(text, result.impl_->text, found, limits, handler);
      return !err;
    };
    result.impl_->doc.Populate(generate);
    if (err)
      return err;
    return result;
  } catch (const std::exception& e) {
    return parse_exception(e);
  }
}

value document::root() const noexcept {
  return value{static_cast<const rj_value*>(&impl_->doc)};
}

// -- tape ---------------------------------------------------------------------

/// Appends the reader's events to a tape (behind an `input_guard`, which
/// turns numbers into Int, Uint, Int64, Uint64 or Double).
struct tape::builder {
  using tag = item::tag;

  tape& out;

  void push(tag type, uint32_t size = 0) {
    item x;
    x.type = type;
    x.size = size;
    x.next = static_cast<uint32_t>(out.items_.size() + 1);
    x.u = 0;
    out.items_.push_back(x);
  }

  bool Null() {
    push(tag::null);
    return true;
  }
  bool Bool(bool b) {
    push(b ? tag::true_value : tag::false_value);
    return true;
  }
  bool Int(int i) {
    return Int64(i);
  }
  bool Uint(unsigned u) {
    return Uint64(u);
  }
  bool Int64(int64_t i) {
    // Like RapidJSON's values: a non-negative integer (-0) is unsigned too.
    if (i >= 0)
      return Uint64(static_cast<uint64_t>(i));
    push(tag::negative);
    out.items_.back().i = i;
    return true;
  }
  bool Uint64(uint64_t u) {
    push(tag::nonnegative);
    out.items_.back().u = u;
    return true;
  }
  bool Double(double d) {
    push(tag::floating);
    out.items_.back().d = d;
    return true;
  }
  bool RawNumber(const char*, rapidjson::SizeType, bool) {
    return false; // The guard converts numbers.
  }
  bool String(const char* str, rapidjson::SizeType len, bool) {
    return text(tag::string, str, len);
  }
  bool Key(const char* str, rapidjson::SizeType len, bool) {
    return text(tag::key, str, len);
  }
  bool StartObject() {
    return start(tag::object);
  }
  bool EndObject(rapidjson::SizeType n) {
    return end(n);
  }
  bool StartArray() {
    return start(tag::array);
  }
  bool EndArray(rapidjson::SizeType n) {
    return end(n);
  }

  bool text(tag type, const char* str, rapidjson::SizeType len) {
    // In situ: the string lies in the tape's copy of the text.
    push(type, len);
    out.items_.back().u = static_cast<uint64_t>(str - out.text_.data());
    return true;
  }
  bool start(tag type) {
    out.open_.push_back(static_cast<uint32_t>(out.items_.size()));
    push(type);
    return true;
  }
  bool end(rapidjson::SizeType n) {
    auto& x = out.items_[out.open_.back()];
    out.open_.pop_back();
    x.size = n;
    x.next = static_cast<uint32_t>(out.items_.size());
    return true;
  }
};

/// Reads the tape of a text simdjson accepted into a tape (a `walk_tape`
/// sink); the tape's `text_` then holds simdjson's string buffer.
struct tape::fast_parser {
  simdjson::dom::parser parser;
  tape* out = nullptr;
  /// Whether the next string is a member name.
  bool name_next = false;
  /// The end of the last string in the string buffer.
  size_t strings_end = 0;

  /// Parses `text` into `t`. Returns false where RapidJSON must parse the
  /// text (see `walk_tape`); `t` then holds part of the text's items.
  bool run(tape& t, std::string_view text, const parse_limits& limits) {
    if (!fast_parse(parser, text, t.text_))
      return false;
    t.items_.reserve(std::min<size_t>(text.size() / 8 + 4, 4096));
    out = &t;
    name_next = false;
    strings_end = 0;
    walk_context ctx{text, limits};
    if (!walk_tape(parser.doc, ctx, *this))
      return false;
    // The items point into the string buffer by offset: a copy of the part
    // in use replaces the text, which the tape no longer needs.
    auto strings = reinterpret_cast<const char*>(parser.doc.string_buf.get());
    t.text_.clear();
    t.text_.append(strings, strings_end);
    return true;
  }

  void push(item::tag type, uint32_t size = 0) {
    builder{*out}.push(type, size);
  }
  /// After a value: a name comes next if the value is a member's.
  void value_done() {
    name_next = !out->open_.empty()
                && out->items_[out->open_.back()].type == item::tag::object;
  }
  void open(item::tag type, uint32_t count) {
    out->open_.push_back(static_cast<uint32_t>(out->items_.size()));
    push(type, count);
    name_next = type == item::tag::object;
  }
  void close() {
    auto& x = out->items_[out->open_.back()];
    out->open_.pop_back();
    x.next = static_cast<uint32_t>(out->items_.size());
    value_done();
  }
  void text(std::string_view str, size_t offset) {
    bool name = name_next;
    push(name ? item::tag::key : item::tag::string,
         static_cast<uint32_t>(str.size()));
    out->items_.back().u = offset;
    strings_end = offset + str.size();
    if (name)
      name_next = false;
    else
      value_done();
  }
  void negative_integer(int64_t i) {
    push(item::tag::negative);
    out->items_.back().i = i;
    value_done();
  }
  void unsigned_integer(uint64_t u) {
    push(item::tag::nonnegative);
    out->items_.back().u = u;
    value_done();
  }
  void floating(double d) {
    push(item::tag::floating);
    out->items_.back().d = d;
    value_done();
  }
  void boolean(bool b) {
    push(b ? item::tag::true_value : item::tag::false_value);
    value_done();
  }
  void null() {
    push(item::tag::null);
    value_done();
  }
};

tape::tape() = default;

tape::~tape() = default;

tape::tape(tape&&) noexcept = default;

tape& tape::operator=(tape&&) noexcept = default;

caf::error tape::parse(std::string_view text, const parse_limits& limits) {
  items_.clear();
  open_.clear();
  parsed_fast_ = false;
  if (auto err = check_size(text, limits))
    return err;
  try {
    if (fast_ == nullptr)
      fast_ = std::make_unique<fast_parser>();
    if (fast_->run(*this, text, limits)) {
      parsed_fast_ = true;
      return caf::none;
    }
    items_.clear();
    open_.clear();
    auto found = copy_for_parsing(text, text_);
    // A typical payload has an item for every 10 to 20 bytes; beyond a
    // few thousand items the vector grows as needed (a large text may be
    // one long string).
    items_.reserve(std::min<size_t>(text.size() / 8 + 4, 4096));
    builder b{*this};
    auto err = guarded_parse(text, text_, found, limits, b);
    if (err)
      items_.clear();
    return err;
  } catch (const std::exception& e) {
    items_.clear();
    return parse_exception(e);
  }
}

void tape::shrink(size_t bytes) noexcept {
  if (text_.capacity() > bytes)
    std::string{}.swap(text_);
  if (items_.capacity() * sizeof(item) > bytes)
    std::vector<item>{}.swap(items_);
}

namespace {

/// Lent by `tape_lease`; `busy` while a lease holds it.
struct thread_tape {
  tape value;
  bool busy = false;
};

thread_local thread_tape local_tape;

/// A lent tape keeps at most this much memory from the texts it parsed.
constexpr size_t kept_tape_bytes = 65536;

} // namespace

tape_lease::tape_lease() {
  if (local_tape.busy) {
    own_ = std::make_unique<tape>();
    tape_ = own_.get();
  } else {
    local_tape.busy = true;
    tape_ = &local_tape.value;
  }
}

tape_lease::~tape_lease() {
  if (own_ == nullptr) {
    local_tape.value.shrink(kept_tape_bytes);
    local_tape.busy = false;
  }
}

} // namespace es::json
