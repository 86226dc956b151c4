// Fuzzes the JSON layer: es::json::validate, document::parse, tapes,
// walking the value tree and re-writing it with es::json::writer.
//
// The input is the JSON text. Invariants:
// - validate (any value), parse and a tape accept the same texts, and
//   refuse the others with the same error (validation and tapes try
//   simdjson first, documents parse with RapidJSON only); a tape reads the
//   tree a document reads; validate with require_object accepts exactly
//   the accepted texts whose root is an object;
// - errors are malformed_payload or payload_too_large; no exception escapes;
// - an accepted text is valid UTF-8, nests at most max_depth levels, and
//   every number in it is finite; integers read back as the same double;
// - a parsed document written with json::writer and parsed again gives an
//   equal tree, and writing that tree again gives the same text.
#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include "fuzz_support.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

using namespace es;
using es::fuzz::check;

namespace {

/// Checks the accessors of `v` against its kind, recursively.
void walk(const json::value& v, size_t depth, size_t max_depth) {
  auto k = v.type();
  check(v.as_bool().has_value() == (k == json::kind::boolean),
        "as_bool disagrees with type()");
  check(v.as_double().has_value() == (k == json::kind::number),
        "as_double disagrees with type()");
  check(v.as_string().has_value() == (k == json::kind::string),
        "as_string disagrees with type()");
  switch (k) {
    case json::kind::null:
    case json::kind::boolean: check(v.size() == 0, "scalar has a size"); break;
    case json::kind::number: {
      auto d = *v.as_double();
      check(std::isfinite(d), "a parsed number is not finite");
      if (auto i = v.as_int64())
        check(static_cast<double>(*i) == d, "int64 and double disagree");
      if (auto u = v.as_uint64())
        check(static_cast<double>(*u) == d, "uint64 and double disagree");
      break;
    }
    case json::kind::string:
      check(fuzz::valid_utf8(*v.as_string()), "parsed string is not UTF-8");
      break;
    case json::kind::array:
      check(depth < max_depth, "array nested deeper than the limit");
      for (size_t i = 0; i < v.size(); ++i)
        walk(v.at(i), depth + 1, max_depth);
      break;
    case json::kind::object:
      check(depth < max_depth, "object nested deeper than the limit");
      for (size_t i = 0; i < v.size(); ++i) {
        auto name = v.member_name(i);
        check(fuzz::valid_utf8(name), "member name is not UTF-8");
        check(v.find(name).has_value(), "find misses a member");
        walk(v.member_value(i), depth + 1, max_depth);
      }
      break;
  }
}

bool same_number(const json::value& x, const json::value& y) {
  if (x.as_int64() != y.as_int64() || x.as_uint64() != y.as_uint64())
    return false;
  auto dx = *x.as_double();
  auto dy = *y.as_double();
  return dx == dy && std::signbit(dx) == std::signbit(dy);
}

/// Returns whether two trees are equal: same kinds, numbers, strings, and
/// members in the same order.
bool equal(const json::value& x, const json::value& y) {
  if (x.type() != y.type() || x.size() != y.size())
    return false;
  switch (x.type()) {
    case json::kind::null: return true;
    case json::kind::boolean: return x.as_bool() == y.as_bool();
    case json::kind::number: return same_number(x, y);
    case json::kind::string: return x.as_string() == y.as_string();
    case json::kind::array:
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x.at(i), y.at(i)))
          return false;
      return true;
    case json::kind::object:
      for (size_t i = 0; i < x.size(); ++i)
        if (x.member_name(i) != y.member_name(i)
            || !equal(x.member_value(i), y.member_value(i)))
          return false;
      return true;
  }
  return false;
}

/// Returns whether a document's value and a tape's are the same tree.
bool equal(const json::value& x, json::tape::value y) {
  if (x.type() != y.type() || x.size() != y.size())
    return false;
  switch (x.type()) {
    case json::kind::null: return true;
    case json::kind::boolean: return x.as_bool() == y.as_bool();
    case json::kind::number: {
      if (x.as_int64() != y.as_int64() || x.as_uint64() != y.as_uint64())
        return false;
      auto dx = *x.as_double();
      auto dy = *y.as_double();
      return dx == dy && std::signbit(dx) == std::signbit(dy);
    }
    case json::kind::string: return x.as_string() == y.as_string();
    case json::kind::array: {
      size_t at = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        auto e = y.next_element(at);
        if (!e || !equal(x.at(i), *e))
          return false;
      }
      return true;
    }
    case json::kind::object: {
      size_t at = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        auto m = y.next_member(at);
        if (!m || x.member_name(i) != m->first
            || !equal(x.member_value(i), m->second))
          return false;
      }
      return true;
    }
  }
  return false;
}

std::string write(const json::value& v) {
  json::writer out;
  v.write_to(out);
  check(out.ok(), "writer refused a parsed value");
  return out.str();
}

void run(std::string_view text) {
  json::parse_limits limits;
  auto any = json::validate(text, limits, false);
  auto object = json::validate(text, limits, true);
  auto doc = json::document::parse(text, limits);
  // One tape for all inputs, as the thread's tape is reused in decoding.
  static json::tape tape;
  auto tape_err = tape.parse(text, limits);
  if (!doc) {
    check(static_cast<bool>(tape_err), "a tape accepts what parse refuses");
    check(describe(tape_err) == describe(doc.error()),
          "a tape and parse refuse differently: " + describe(tape_err) + " vs "
            + describe(doc.error()));
    fuzz::check_code(
      doc.error(),
      {store_errc::malformed_payload, store_errc::payload_too_large}, "parse");
    check(static_cast<bool>(any), "validate accepts what parse refuses");
    check(describe(any) == describe(doc.error()),
          "validate and parse refuse differently: " + describe(any) + " vs "
            + describe(doc.error()));
    check(static_cast<bool>(object), "validate(object) accepts a bad text");
    fuzz::check_code(
      object, {store_errc::malformed_payload, store_errc::payload_too_large},
      "validate(object)");
    return;
  }
  check(!any, "validate refuses what parse accepts: " + describe(any));
  check(!tape_err, "a tape refuses what parse accepts: " + describe(tape_err));
  auto root = doc->root();
  check(equal(root, tape.root()), "a tape and a document read differently");
  auto is_object = root.type() == json::kind::object;
  check(static_cast<bool>(object) != is_object,
        "validate(object) disagrees with the root's kind");
  if (object)
    fuzz::check_code(object, {store_errc::malformed_payload},
                     "validate(object)");
  check(fuzz::valid_utf8(text), "accepted text is not UTF-8");
  walk(root, 0, limits.max_depth);
  auto first = write(root);
  check(!json::validate(first, limits, false), "re-written text is refused");
  auto again = json::document::parse(first, limits);
  check(static_cast<bool>(again), "re-written text does not parse");
  check(equal(root, again->root()), "re-written text parses differently");
  check(write(again->root()) == first, "writing is not stable");
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
