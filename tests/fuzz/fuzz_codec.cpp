// Fuzzes the JSON codec (codec.hpp): decoding payloads into structs that
// use every supported member type, and the timestamp and UUID parsers.
//
// The first byte chooses what the rest is decoded as:
//   '0' numbers, '1' an order (nested structs, vectors, maps, optionals,
//   UUIDs, timestamps, an enum), '2' a line item, '3' an address,
//   't' a timestamp text (parse_timestamp), 'u' a UUID text (uuid::parse);
// other bytes pick one of these by value. Invariants:
// - no exception escapes; a refused payload is malformed_payload or
//   payload_too_large;
// - decoding from the tape (`from_json(text)`) and from a `json::document`
//   succeed or fail alike, with equal values or the same error;
// - a decoded struct encodes, decodes again to an equal struct, and
//   encodes to the same text again;
// - parse_timestamp accepts only the documented form, and what it accepts
//   formats and parses back to the same time; uuid::parse accepts only the
//   canonical form, and to_string gives it back in lower case.
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/uuid.hpp"

#include "fuzz_support.hpp"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace es;
using es::fuzz::check;

namespace {

struct numbers {
  int8_t i8 = 0;
  int16_t i16 = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  double d = 0;
  float f = 0;
  bool b = false;
  std::optional<int64_t> maybe;
  std::vector<double> ds;

  friend bool operator==(const numbers&, const numbers&) = default;
};

template <class F>
bool fields(F& f, numbers& x) {
  return f("i8", x.i8) && f("i16", x.i16) && f("i32", x.i32) && f("i64", x.i64)
         && f("u8", x.u8) && f("u16", x.u16) && f("u32", x.u32)
         && f("u64", x.u64) && f("d", x.d) && f("f", x.f) && f("b", x.b)
         && f("maybe", x.maybe) && f("ds", x.ds);
}

struct address {
  std::string street;
  std::optional<std::string> city;
  std::vector<int32_t> codes;

  friend bool operator==(const address&, const address&) = default;
};

template <class F>
bool fields(F& f, address& x) {
  return f("street", x.street) && f("city", x.city) && f("codes", x.codes);
}

struct line_item {
  std::string sku;
  int32_t quantity = 0;
  double price = 0;
  std::optional<uuid> ref;

  friend bool operator==(const line_item&, const line_item&) = default;
};

template <class F>
bool fields(F& f, line_item& x) {
  return f("sku", x.sku) && f("quantity", x.quantity) && f("price", x.price)
         && f("ref", x.ref);
}

enum class order_state : uint8_t { open, paid, shipped };

struct order {
  uuid id;
  timestamp placed_at;
  std::optional<timestamp> shipped_at;
  std::vector<line_item> items;
  std::map<std::string, int64_t> tags;
  std::map<std::string, std::vector<std::string>> notes;
  address ship_to;
  std::optional<address> bill_to;
  std::vector<std::optional<bool>> flags;
  order_state state = order_state::open;

  friend bool operator==(const order&, const order&) = default;
};

template <class F>
bool fields(F& f, order& x) {
  return f("id", x.id) && f("placed_at", x.placed_at)
         && f("shipped_at", x.shipped_at) && f("items", x.items)
         && f("tags", x.tags) && f("notes", x.notes) && f("ship_to", x.ship_to)
         && f("bill_to", x.bill_to) && f("flags", x.flags)
         && f("state", x.state);
}

/// Decodes `text` as `T` from a `json::document`, the tree the tape
/// decoder of `from_json(text)` must agree with.
template <class T>
caf::expected<T> from_document(std::string_view text) {
  auto doc = json::document::parse(text);
  if (!doc)
    return std::move(doc.error());
  T result{};
  if (auto err = from_json(doc->root(), result))
    return err;
  return result;
}

/// Decodes `text` as `T`; a decoded value must survive a round trip, and
/// the tape and the document must decode it alike.
template <class T>
void round_trip(std::string_view text) {
  auto x = from_json<T>(text);
  auto tree = from_document<T>(text);
  if (static_cast<bool>(x) != static_cast<bool>(tree))
    fuzz::fail("tape and document disagree on success: "
               + (x ? describe(tree.error()) : describe(x.error())));
  if (x)
    check(*x == *tree, "tape and document decode different values");
  else if (describe(x.error()) != describe(tree.error()))
    fuzz::fail("tape and document fail differently: " + describe(x.error())
               + " | " + describe(tree.error()));
  if (!x) {
    fuzz::check_code(
      x.error(), {store_errc::malformed_payload, store_errc::payload_too_large},
      "from_json");
    return;
  }
  auto encoded = to_json(*x);
  check(static_cast<bool>(encoded), "a decoded value does not encode");
  auto y = from_json<T>(*encoded);
  check(static_cast<bool>(y), "an encoded value does not decode: "
                                + (y ? std::string{} : describe(y.error())));
  check(*x == *y, "round trip changed the value: " + *encoded);
  auto again = to_json(*y);
  check(again && *again == *encoded, "encoding is not stable");
}

bool digits(std::string_view s) {
  for (auto c : s)
    if (c < '0' || c > '9')
      return false;
  return !s.empty();
}

/// The documented form: YYYY-MM-DD, 'T' or ' ', HH:MM:SS, an optional
/// fraction of one or more digits, then "Z" or "+00:00".
bool documented_timestamp(std::string_view s) {
  if (s.size() < 20 || !digits(s.substr(0, 4)) || s[4] != '-'
      || !digits(s.substr(5, 2)) || s[7] != '-' || !digits(s.substr(8, 2))
      || (s[10] != 'T' && s[10] != ' ') || !digits(s.substr(11, 2))
      || s[13] != ':' || !digits(s.substr(14, 2)) || s[16] != ':'
      || !digits(s.substr(17, 2)))
    return false;
  auto rest = s.substr(19);
  if (!rest.empty() && rest.front() == '.') {
    size_t n = 1;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9')
      ++n;
    if (n == 1)
      return false;
    rest.remove_prefix(n);
  }
  return rest == "Z" || rest == "+00:00";
}

void check_timestamp(std::string_view text) {
  auto t = parse_timestamp(text);
  if (!t) {
    fuzz::check_code(t.error(), {store_errc::invalid_argument},
                     "parse_timestamp");
    return;
  }
  check(documented_timestamp(text),
        "parse_timestamp accepts an undocumented form: " + std::string{text});
  auto formatted = format_timestamp(*t);
  check(documented_timestamp(formatted),
        "format_timestamp writes an undocumented form: " + formatted);
  auto back = parse_timestamp(formatted);
  check(back && *back == *t,
        "a formatted timestamp reads back differently: " + formatted);
}

void check_uuid(std::string_view text) {
  auto id = uuid::parse(text);
  if (!id) {
    fuzz::check_code(id.error(), {store_errc::invalid_uuid}, "uuid::parse");
    return;
  }
  std::string lower{text};
  for (auto& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  check(id->to_string() == lower,
        "uuid::parse accepts a non-canonical form: " + std::string{text});
}

void run(std::string_view input) {
  if (input.empty())
    return;
  auto selector = input.front();
  auto text = input.substr(1);
  switch (selector) {
    case 't': check_timestamp(text); return;
    case 'u': check_uuid(text); return;
    default: break;
  }
  switch (static_cast<unsigned char>(selector) % 4) {
    case 0: round_trip<numbers>(text); break;
    case 1: round_trip<order>(text); break;
    case 2: round_trip<line_item>(text); break;
    default: round_trip<address>(text); break;
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    run({reinterpret_cast<const char*>(data), size});
  } catch (const std::exception& e) {
    fuzz::fail(std::string{"exception escaped: "} + e.what());
  }
  return 0;
}
