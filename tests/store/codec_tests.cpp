// JSON facade and struct codecs.
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace es;

namespace {

enum class color : int8_t { red = 1, green = 2 };

struct line {
  std::string sku;
  uint32_t qty = 0;
  friend bool operator==(const line&, const line&) = default;
};

template <class F>
bool fields(F& f, line& x) {
  return f("sku", x.sku) && f("qty", x.qty);
}

struct everything {
  bool flag = false;
  int8_t small = 0;
  int64_t big = 0;
  uint64_t ubig = 0;
  double ratio = 0;
  std::string text;
  uuid id;
  timestamp at;
  std::optional<std::string> maybe;
  std::optional<int32_t> absent;
  std::vector<line> lines;
  std::map<std::string, int64_t> counts;
  color shade = color::red;
  friend bool operator==(const everything&, const everything&) = default;
};

template <class F>
bool fields(F& f, everything& x) {
  return f("flag", x.flag) && f("small", x.small) && f("big", x.big)
         && f("ubig", x.ubig) && f("ratio", x.ratio) && f("text", x.text)
         && f("id", x.id) && f("at", x.at) && f("maybe", x.maybe)
         && f("absent", x.absent) && f("lines", x.lines)
         && f("counts", x.counts) && f("shade", x.shade);
}

struct measurement {
  float value = 0;
};

template <class F>
bool fields(F& f, measurement& x) {
  return f("value", x.value);
}

std::string error_text(const caf::error& err) {
  return error_description(err);
}

} // namespace

TEST_CASE("struct codecs round-trip every supported member type", "[json]") {
  everything x;
  x.flag = true;
  x.small = -128;
  x.big = std::numeric_limits<int64_t>::min();
  x.ubig = std::numeric_limits<uint64_t>::max();
  x.ratio = 0.1;
  x.text = "quote \" backslash \\ newline \n tab \t unicode ✓ nul-free";
  x.id = uuid::random();
  x.at = now_utc();
  x.maybe = "here";
  x.lines = {{"A", 1}, {"B", 4000000000u}};
  x.counts = {{"a", 1}, {"b", -2}};
  x.shade = color::green;
  auto text = to_json(x);
  REQUIRE(text);
  CHECK(text->find("absent") == std::string::npos);
  auto back = from_json<everything>(*text);
  REQUIRE(back);
  CHECK(*back == x);
}

// Found by tests/fuzz/fuzz_codec: a double beyond float's range decoded
// into an infinite float (undefined behaviour) that could not be encoded.
TEST_CASE("float members refuse numbers beyond their range", "[json]") {
  auto ok = from_json<measurement>(R"({"value":-3.4028234663852886e38})");
  REQUIRE(ok);
  CHECK(ok->value == std::numeric_limits<float>::lowest());
  for (const char* text : {R"({"value":1e300})", R"({"value":-3.5e38})"}) {
    INFO(text);
    auto res = from_json<measurement>(text);
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::malformed_payload));
    CHECK(error_text(res.error()) == "value: number out of range");
  }
}

TEST_CASE("decoding names the failing field", "[json]") {
  auto check = [](std::string_view text, std::string_view fragment) {
    auto res = from_json<everything>(text);
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::malformed_payload));
    INFO(error_text(res.error()));
    CHECK(error_text(res.error()).find(fragment) != std::string::npos);
  };
  std::string good = *to_json(everything{});
  check(R"({"flag":"yes"})", "flag: expected boolean, got string");
  check(R"({"flag":true})", "small: missing required field");
  auto bad_line = good;
  bad_line.replace(bad_line.find(R"("lines":[])"), 10,
                   R"("lines":[{"sku":"A","qty":1},{"sku":7,"qty":1}])");
  check(bad_line, "lines[1].sku: expected string, got number");
  auto overflow = good;
  overflow.replace(overflow.find(R"("small":0)"), 9, R"("small":300)");
  check(overflow, "small: integer out of range");
  auto negative = good;
  negative.replace(negative.find(R"("ubig":0)"), 8, R"("ubig":-1)");
  check(negative, "ubig: expected unsigned integer");
  auto bad_id = good;
  bad_id.replace(bad_id.find(R"("id":")"), 6, R"("id":"nope","x":")");
  check(bad_id, "id: not a UUID");
  auto bad_time = good;
  bad_time.replace(bad_time.find(R"("at":")"), 6, R"("at":"yesterday","y":")");
  check(bad_time, "at: not an ISO 8601");
  check("[1,2]", "payload: expected object, got array");
}

namespace {

struct grouped {
  std::map<std::string, std::vector<line>> groups;
  std::optional<line> extra;
};

template <class F>
bool fields(F& f, grouped& x) {
  return f("groups", x.groups) && f("extra", x.extra);
}

template <class T>
std::string decode_error(std::string_view text) {
  auto res = from_json<T>(text);
  return res ? std::string{"decoded"} : error_text(res.error());
}

} // namespace

TEST_CASE("the failing field's path is written out in full", "[json]") {
  // Fields join with dots, elements add [i], map keys add .key (also at the
  // top level), and a failure at the top level names the payload.
  CHECK(decode_error<grouped>(R"({"groups":{"g":[{"sku":"a","qty":-1}]}})")
        == "groups.g[0].qty: expected unsigned integer, got number");
  CHECK(decode_error<grouped>(R"({"groups":{},"extra":{"sku":"a"}})")
        == "extra.qty: missing required field");
  CHECK(decode_error<grouped>(R"({"groups":[]})")
        == "groups: expected object, got array");
  CHECK(decode_error<std::map<std::string, std::vector<line>>>(
          R"({"k":[{"sku":"a","qty":1},{"sku":2,"qty":1}]})")
        == ".k[1].sku: expected string, got number");
  CHECK(decode_error<std::vector<line>>(R"([{"sku":"a","qty":1},{"qty":1}])")
        == "[1].sku: missing required field");
  CHECK(decode_error<std::vector<std::vector<int32_t>>>(R"([[1],[2,"x"]])")
        == "[1][1]: expected integer, got string");
  CHECK(decode_error<line>(R"("x")") == "payload: expected object, got string");
  // A decoder reused after a failure starts with a clean path.
  CHECK(decode_error<line>(R"({"sku":"a","qty":1})") == "decoded");
}

TEST_CASE("unknown fields are ignored and null optionals are empty", "[json]") {
  auto res = from_json<line>(R"({"sku":"X","qty":2,"added_later":[1,{}]})");
  REQUIRE(res);
  CHECK(res->sku == "X");
  auto good = *to_json(everything{});
  good.insert(1, R"("maybe":null,)");
  auto x = from_json<everything>(good);
  REQUIRE(x);
  CHECK_FALSE(x->maybe.has_value());
}

TEST_CASE("members decode in any order, and the first of two names wins",
          "[json]") {
  // In the order of `fields`, in reverse, and interleaved with others.
  for (const auto* text : {R"({"sku":"A","qty":1})", R"({"qty":1,"sku":"A"})",
                           R"({"x":0,"qty":1,"y":[],"sku":"A","z":{}})"}) {
    INFO(text);
    auto x = from_json<line>(text);
    REQUIRE(x);
    CHECK(*x == line{"A", 1});
  }
  // A name given twice: the first member counts, wherever the lookup of
  // the earlier fields left off.
  for (const auto* text : {R"({"sku":"A","qty":1,"sku":"B","qty":2})",
                           R"({"qty":1,"sku":"A","qty":2,"sku":"B"})",
                           R"({"sku":"A","sku":"B","qty":1,"qty":2})"}) {
    INFO(text);
    auto x = from_json<line>(text);
    REQUIRE(x);
    CHECK(*x == line{"A", 1});
  }
  // Optional members missing in the middle (empty ones are not written),
  // then the rest in order.
  everything full;
  full.text = "t";
  full.lines = {line{"B", 2}};
  full.counts = {{"c", 3}};
  full.shade = color::green;
  auto text = *to_json(full);
  REQUIRE(text.find(R"("absent")") == std::string::npos);
  auto x = from_json<everything>(text);
  REQUIRE(x);
  CHECK(*x == full);
  auto missing = from_json<line>(R"({"sku":"A"})");
  REQUIRE_FALSE(missing);
  CHECK(error_description(missing.error()).find("qty") != std::string::npos);
}

// Found by tests/fuzz/fuzz_json and fuzz_codec: RapidJSON's 16-byte string
// scan let 0x1A-0x1F through inside strings.
TEST_CASE("raw control characters are refused wherever they stand", "[json]") {
  for (int c = 0x01; c < 0x20; ++c) {
    auto ch = std::string(1, static_cast<char>(c));
    INFO("byte " << c);
    // Inside strings of every length (the reader scans long ones in blocks
    // of 16 bytes) and in member names: always refused, at the byte.
    for (size_t before : {0, 1, 15, 16, 17, 40}) {
      auto text = R"({"s":")" + std::string(before, 'a') + ch + R"(b"})";
      auto err = json::validate(text);
      REQUIRE(has_code(err, store_errc::malformed_payload));
      CHECK(error_description(err)
            == "invalid JSON at offset " + std::to_string(6 + before)
                 + ": Invalid escape character in string.");
      CHECK_FALSE(json::document::parse(text));
      CHECK_FALSE(from_json<line>(R"({"sku":")" + std::string(before, 'x') + ch
                                  + R"(","qty":1})"));
    }
    CHECK(json::validate(R"({")" + ch + R"(":1})"));
    // Between tokens only tab, line feed and carriage return may stand.
    auto between = "{" + ch + R"("s":1})";
    if (c == '\t' || c == '\n' || c == '\r')
      CHECK_FALSE(json::validate(between));
    else
      CHECK(has_code(json::validate(between), store_errc::malformed_payload));
  }
}

// Found by tests/fuzz/fuzz_json: RapidJSON's 16-byte scan in the writer wrote
// 0x1A-0x1F unescaped, so a document re-written from valid JSON was invalid.
TEST_CASE("control characters are written escaped", "[json]") {
  for (int c = 0x00; c < 0x20; ++c) {
    INFO("byte " << c);
    for (size_t before : {0, 1, 15, 16, 17, 40}) {
      line x{std::string(before, 'a') + static_cast<char>(c) + "b", 1};
      auto text = to_json(x);
      REQUIRE(text);
      for (auto ch : *text)
        CHECK(static_cast<unsigned char>(ch) >= 0x20);
      CHECK_FALSE(json::validate(*text));
      auto back = from_json<line>(*text);
      REQUIRE(back);
      CHECK(*back == x);
      // The same through a parsed document written again.
      auto doc = json::document::parse(*text);
      REQUIRE(doc);
      json::writer out;
      doc->root().write_to(out);
      CHECK(out.str() == *text);
    }
  }
}

TEST_CASE("non-finite numbers cannot be encoded", "[json]") {
  everything x;
  x.ratio = std::numeric_limits<double>::quiet_NaN();
  auto res = to_json(x);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::malformed_payload));
  x.ratio = std::numeric_limits<double>::infinity();
  CHECK_FALSE(to_json(x));
}

TEST_CASE("validation refuses hostile JSON without crashing", "[json]") {
  json::parse_limits limits;
  limits.max_bytes = 4096;
  limits.max_depth = 32;
  auto code = [&](std::string_view text, bool object = true) {
    auto err = json::validate(text, limits, object);
    return err ? static_cast<store_errc>(err.code()) : store_errc{};
  };
  CHECK(code(R"({"a":1})") == store_errc{});
  CHECK(code(R"({"a":1)") == store_errc::malformed_payload);
  CHECK(code(R"({"a":1}})") == store_errc::malformed_payload);
  CHECK(code(R"({"a":1} {"b":2})") == store_errc::malformed_payload);
  CHECK(code("") == store_errc::malformed_payload);
  CHECK(code("   ") == store_errc::malformed_payload);
  CHECK(code("null") == store_errc::malformed_payload);
  CHECK(code("[]") == store_errc::malformed_payload);
  CHECK(code("[]", false) == store_errc{});
  CHECK(code(R"({"a":NaN})") == store_errc::malformed_payload);
  CHECK(code("{\"a\":\"\xC3\x28\"}") == store_errc::malformed_payload);
  CHECK(code("{\"a\":\"\xF0\x9F\x98\x80\"}") == store_errc{});
  CHECK(code(std::string(5000, ' ')) == store_errc::payload_too_large);
  // Deep nesting is refused by the limit.
  std::string deep(31, '[');
  deep.insert(0, "{\"a\":");
  deep += std::string(31, ']') + "}";
  CHECK(code(deep) == store_errc{});
  std::string deeper
    = "{\"a\":" + std::string(40, '[') + std::string(40, ']') + "}";
  CHECK(code(deeper) == store_errc::malformed_payload);
  // Found by tests/fuzz/fuzz_json: RapidJSON's input stream skipped leading
  // byte order mark bytes, so parse took "\xEF\xBB\xBF{}" (or "\xBB6") for
  // JSON, which validate with require_object refused.
  for (std::string_view bom : {"\xEF\xBB\xBF{}", "\xBB\x36", "\xEF[]"}) {
    CHECK(code(bom) == store_errc::malformed_payload);
    CHECK(code(bom, false) == store_errc::malformed_payload);
    CHECK_FALSE(json::document::parse(bom));
  }
  json::parse_limits huge;
  huge.max_depth = 1'000'000;
  std::string very_deep = std::string(200'000, '[') + std::string(200'000, ']');
  CHECK_FALSE(json::validate(very_deep, huge, false));
  auto doc = json::document::parse(very_deep, huge);
  CHECK(doc);
}

TEST_CASE("texts with few brackets are read as those with many", "[json]") {
  // A text with at most 64 `{` and `[` bytes is parsed recursively, others
  // iteratively. Padding a text with a string member holding 64 `[` moves
  // it to the other reader: the verdict must stay the same, and an error's
  // offset moves by the padding's length.
  json::parse_limits limits;
  limits.max_depth = 4;
  const std::string pad = "\"pad\":\"" + std::string(64, '[') + "\",";
  auto padded = [&](std::string_view text) {
    return "{" + pad + std::string{text.substr(1)};
  };
  auto message = [&](std::string_view text) {
    auto err = json::validate(text, limits, true);
    return err ? error_description(err) : std::string{"ok"};
  };
  auto shifted = [&](std::string msg) {
    // "invalid JSON at offset N: reason" -> offset N + pad.size().
    const std::string prefix = "invalid JSON at offset ";
    if (msg.rfind(prefix, 0) != 0)
      return msg;
    auto colon = msg.find(':', prefix.size());
    auto offset = std::stoul(msg.substr(prefix.size(), colon - prefix.size()));
    return prefix + std::to_string(offset + pad.size()) + msg.substr(colon);
  };
  for (std::string_view text :
       {R"({"a":1})",         R"({"a":[1,{"b":null}],"c":"x"})",
        R"({"a":1,})",        R"({"a" 1})",
        R"({"a":[1,2})",      R"({"a":tru})",
        R"({"a":"\u12"})",    R"({"a":1}})",
        R"({"a":01})",        R"({"a":1e999})",
        R"({"a":"\ud800"})",  R"({"a":[[[1]]]})",
        R"({"a":[[[[1]]]]})", R"({"a":"x)",
        R"({"a":-})",         R"({"a":[1 2]})",
        R"({1:2})",           "{\"a\":\"\x01\"}",
        "{\"a\":\"\x1C\"}",   "{\"a\":\"\xC3\x28\"}"}) {
    INFO(text);
    auto shallow = message(text);
    auto deep = message(padded(text));
    CHECK(deep == shifted(shallow));
    auto doc = json::document::parse(text, limits);
    auto padded_doc = json::document::parse(padded(text), limits);
    REQUIRE(static_cast<bool>(doc) == static_cast<bool>(padded_doc));
    if (doc)
      CHECK(padded_doc->root().size() == doc->root().size() + 1);
  }
}

TEST_CASE("documents expose values and write them back", "[json]") {
  auto doc = json::document::parse(
    R"({"n":-5,"u":18446744073709551615,"d":1.5,"s":"x","b":false,)"
    R"("a":[1,"two",null],"o":{"k":true}})");
  REQUIRE(doc);
  auto root = doc->root();
  CHECK(root.type() == json::kind::object);
  CHECK(root.size() == 7);
  CHECK(root.find("n")->as_int64() == -5);
  CHECK_FALSE(root.find("u")->as_int64());
  CHECK(root.find("u")->as_uint64() == std::numeric_limits<uint64_t>::max());
  CHECK(root.find("d")->as_double() == 1.5);
  CHECK_FALSE(root.find("d")->as_int64());
  CHECK(root.find("s")->as_string() == "x");
  CHECK(root.find("b")->as_bool() == false);
  CHECK(root.find("a")->at(1).as_string() == "two");
  CHECK(root.find("a")->at(2).type() == json::kind::null);
  CHECK_FALSE(root.find("missing"));
  CHECK(root.member_name(6) == "o");
  json::writer out;
  root.write_to(out);
  auto again = json::document::parse(out.str());
  REQUIRE(again);
  CHECK(again->root().find("o")->find("k")->as_bool() == true);
}

TEST_CASE("tapes read values as documents do", "[json]") {
  const char* text
    = R"({"n":-5,"z":-0,"u":18446744073709551615,"i":9223372036854775807,)"
      R"("d":1.5,"s":"x\u00e9","b":false,"t":true,"a":[1,"two",null,[]],)"
      R"("o":{"k":true},"e":{}})";
  json::tape tape;
  REQUIRE_FALSE(tape.parse(text));
  auto root = tape.root();
  CHECK(root.type() == json::kind::object);
  CHECK(root.size() == 11);
  CHECK(root.find("n")->as_int64() == -5);
  CHECK_FALSE(root.find("n")->as_uint64());
  // -0 is the integer 0, as in a document.
  CHECK(root.find("z")->as_uint64() == 0u);
  CHECK_FALSE(root.find("u")->as_int64());
  CHECK(root.find("u")->as_uint64() == std::numeric_limits<uint64_t>::max());
  CHECK(root.find("u")->as_double() == 18446744073709551615.0);
  CHECK(root.find("i")->as_int64() == std::numeric_limits<int64_t>::max());
  CHECK(root.find("d")->as_double() == 1.5);
  CHECK_FALSE(root.find("d")->as_int64());
  CHECK(root.find("s")->as_string() == "x\xc3\xa9");
  CHECK(root.find("b")->as_bool() == false);
  CHECK(root.find("t")->as_bool() == true);
  CHECK_FALSE(root.find("t")->as_string());
  auto a = *root.find("a");
  CHECK(a.type() == json::kind::array);
  CHECK(a.size() == 4);
  size_t at = 0;
  std::vector<json::kind> kinds;
  while (auto e = a.next_element(at))
    kinds.push_back(e->type());
  CHECK(kinds
        == std::vector<json::kind>{json::kind::number, json::kind::string,
                                   json::kind::null, json::kind::array});
  CHECK(root.find("o")->find("k")->as_bool() == true);
  CHECK(root.find("e")->size() == 0);
  CHECK_FALSE(root.find("missing"));
  // Members come in text order; a name given twice finds the first.
  REQUIRE_FALSE(tape.parse(R"({"k":1,"k":2,"j":3})"));
  std::vector<std::string> names;
  at = 0;
  while (auto m = tape.root().next_member(at))
    names.emplace_back(m->first);
  CHECK(names == std::vector<std::string>{"k", "k", "j"});
  CHECK(tape.root().find("k")->as_int64() == 1);
  // A scalar text, and the document's errors.
  REQUIRE_FALSE(tape.parse("\"only\""));
  CHECK(tape.root().as_string() == "only");
  for (const auto* bad : {"{", R"({"a":1e999})", R"(["\udc00"])", "[1] x"}) {
    INFO(bad);
    auto from_tape = tape.parse(bad);
    auto from_doc = json::document::parse(bad);
    REQUIRE(from_tape);
    REQUIRE_FALSE(from_doc);
    CHECK(error_text(from_tape) == error_text(from_doc.error()));
  }
  auto deep = std::string(70, '[') + std::string(70, ']');
  auto err = tape.parse(deep);
  REQUIRE(err);
  CHECK(error_text(err).find("nested deeper than 64") != std::string::npos);
  json::parse_limits small;
  small.max_bytes = 50;
  auto big = tape.parse(std::string(100, ' ') + "1", small);
  REQUIRE(big);
  CHECK(static_cast<store_errc>(big.code()) == store_errc::payload_too_large);
}

namespace {

/// Returns whether a tape's value and a document's value are the same
/// tree: kinds, numbers (with the sign of zero), strings, member order.
bool same_tree(json::tape::value x, json::value y) {
  if (x.type() != y.type() || x.size() != y.size())
    return false;
  switch (x.type()) {
    case json::kind::null: return true;
    case json::kind::boolean: return x.as_bool() == y.as_bool();
    case json::kind::number:
      return x.as_int64() == y.as_int64() && x.as_uint64() == y.as_uint64()
             && x.as_double() == y.as_double()
             && std::signbit(*x.as_double()) == std::signbit(*y.as_double());
    case json::kind::string: return x.as_string() == y.as_string();
    case json::kind::array: {
      size_t i = 0;
      size_t at = 0;
      while (auto e = x.next_element(at))
        if (!same_tree(*e, y.at(i++)))
          return false;
      return i == y.size();
    }
    case json::kind::object: {
      size_t i = 0;
      size_t at = 0;
      while (auto m = x.next_member(at)) {
        if (m->first != y.member_name(i)
            || !same_tree(m->second, y.member_value(i)))
          return false;
        ++i;
      }
      return i == y.size();
    }
  }
  return false;
}

} // namespace

TEST_CASE("tapes and validation agree with documents on every text", "[json]") {
  // Tapes and validation parse with simdjson first and hand RapidJSON what
  // simdjson reads differently from the store; documents parse with
  // RapidJSON only. Texts of both kinds, accepted and refused, must get
  // the same verdict, error and tree.
  auto deep = [](size_t levels) {
    return std::string(levels, '[') + "1" + std::string(levels, ']');
  };
  std::vector<std::string> texts{
    R"({"a":[1,-2,1.5,1E2,true,false,null,"x"],"o":{"k":{}},"e":[]})",
    "\t\r\n [ 1 ,\n2 ] \n",
    R"({"k\u00e9y":"v\n\"q\"\/\\\t","n":"\u0000"})",
    R"(["\ud834\udd1e","ü€𝄞"])",
    // Integers at and beyond the 64-bit bounds.
    R"([9223372036854775807,9223372036854775808,18446744073709551615])",
    R"([-9223372036854775808,-9223372036854775809,18446744073709551616])",
    R"([123456789012345678901234567890,-0,0])",
    // Zeros, subnormals and numbers that round to zero or infinity.
    "[0.0,-0.0,0e5,-0E-3]",
    "[4.9e-324,2.2250738585072011e-308,1.7976931348623157e308]",
    "[1e-400]",
    "[-1e-400]",
    "[2e-324]",
    "[1e999]",
    "[-1e309]",
    // Surrogates, a byte order mark, bytes that are not JSON.
    R"(["\ud800"])",
    R"(["\udc00"])",
    R"({"\udc00":1})",
    R"(["\ud800\u0041"])",
    "[\"\xED\xA0\x80\"]",
    "\xEF\xBB\xBF{}",
    "[\"\x1C\"]",
    "\x1F[1]",
    "[\"\xC0\x80\"]",
    "[\"\xF4\x90\x80\x80\"]",
    "[\"\xFF\"]",
    // Syntax.
    "[1,]",
    "{\"a\":1,}",
    "[01]",
    "[1.]",
    "[.5]",
    "[1] x",
    "",
    " ",
    "tru",
    R"({"a" 1})",
    R"(["\x"])",
    // Depth: the limit and one past it.
    deep(64),
    deep(65),
    deep(2000),
  };
  json::tape tape;
  for (const auto& text : texts) {
    INFO(text);
    auto doc = json::document::parse(text);
    auto from_tape = tape.parse(text);
    auto valid = json::validate(text, {}, false);
    if (doc) {
      CHECK_FALSE(from_tape);
      CHECK_FALSE(valid);
      if (!from_tape)
        CHECK(same_tree(tape.root(), doc->root()));
    } else {
      REQUIRE(from_tape);
      CHECK(error_text(from_tape) == error_text(doc.error()));
      CHECK(error_text(valid) == error_text(doc.error()));
    }
  }
  // Typical texts take the fast path; the cases RapidJSON must read do not.
  for (std::string_view text :
       {R"({"a":[1,-2,1.5,1E2,true,false,null,"x"],"o":{"k":{}},"e":[]})",
        R"({"k\u00e9y":"v\n","n":[18446744073709551615,-9223372036854775808]})",
        "\"only\"", "5", "[]"}) {
    INFO(text);
    REQUIRE_FALSE(tape.parse(text));
    CHECK(tape.parsed_fast());
  }
  for (std::string_view text :
       {"[0.0]", "[18446744073709551616]", R"(["\udc00"])", "[1e-400]"}) {
    INFO(text);
    static_cast<void>(tape.parse(text));
    CHECK_FALSE(tape.parsed_fast());
  }
  auto long_text = "[\"" + std::string(20000, 'x') + "\"]";
  REQUIRE_FALSE(tape.parse(long_text));
  CHECK_FALSE(tape.parsed_fast());
  size_t at = 0;
  CHECK(tape.root().next_element(at)->as_string() == std::string(20000, 'x'));
  // A lower limit is kept on both paths.
  json::parse_limits two;
  two.max_depth = 2;
  CHECK_FALSE(tape.parse("[[1]]", two));
  CHECK_FALSE(json::validate(R"({"a":{}})", two, true));
  auto err = tape.parse("[[[1]]]", two);
  REQUIRE(err);
  CHECK(error_text(err).find("nested deeper than 2") != std::string::npos);
  CHECK(error_text(json::validate(R"({"a":{"b":{}}})", two, true))
        == error_text(err));
}

TEST_CASE("decoding from text and from a document agree", "[json]") {
  // Good and bad payloads: every decode goes through the tape
  // (from_json(text)) and through a document; both must agree, value for
  // value and error for error.
  everything full;
  full.text = "t";
  full.maybe = "m";
  full.lines = {line{"B", 2}, line{"C", 3}};
  full.counts = {{"c", 3}, {"d", -4}};
  full.shade = color::green;
  std::vector<std::string> texts{
    *to_json(full),
    *to_json(everything{}),
    R"({"sku":"A","qty":1,"sku":"B"})",
    R"({"qty":1,"x":[[{"sku":2}]],"sku":"A"})",
    R"({"sku":"A"})",
    R"({"sku":"A","qty":-1})",
    R"({"sku":"A","qty":4294967296})",
    R"({"sku":1,"qty":1})",
    R"({"sku":"A","qty":1.0})",
    R"([{"sku":"A","qty":1}])",
    R"({"sku":"A","qty":null})",
  };
  auto broken = *to_json(full);
  broken.replace(broken.find(R"("qty":2)"), 7, R"("qty":"2")");
  texts.push_back(broken);
  for (const auto& text : texts) {
    INFO(text);
    auto doc = json::document::parse(text);
    REQUIRE(doc);
    line l1;
    line l2;
    auto e1 = from_json(std::string_view{text}, l1);
    auto e2 = from_json(doc->root(), l2);
    CHECK(error_text(e1) == error_text(e2));
    CHECK(l1 == l2);
    everything x1;
    everything x2;
    e1 = from_json(std::string_view{text}, x1);
    e2 = from_json(doc->root(), x2);
    CHECK(error_text(e1) == error_text(e2));
    if (!e1)
      CHECK(x1 == x2);
  }
  // A long array decodes element by element.
  std::vector<line> many(10000, line{"S", 7});
  auto text = *to_json(many);
  auto back = from_json<std::vector<line>>(text);
  REQUIRE(back);
  CHECK(*back == many);
}

TEST_CASE("a decode nested in another gets a tape of its own", "[json]") {
  json::tape_lease outer;
  REQUIRE_FALSE(outer->parse(R"({"sku":"outer","qty":1})"));
  // The thread's tape is lent out: from_json must not reuse it.
  auto inner = from_json<line>(R"({"sku":"inner","qty":2})");
  REQUIRE(inner);
  CHECK(inner->sku == "inner");
  line x;
  REQUIRE_FALSE(from_json(outer->root(), x));
  CHECK(x == line{"outer", 1});
}

TEST_CASE("timestamps format and parse as ISO 8601 UTC", "[json]") {
  auto t = parse_timestamp("2026-11-23T14:34:05.123456Z");
  REQUIRE(t);
  CHECK(format_timestamp(*t) == "2026-11-23T14:34:05.123456Z");
  CHECK(t->time_since_epoch().count() % 1000000 == 123456);
  auto short_frac = parse_timestamp("2026-11-23T14:34:05.1+00:00");
  REQUIRE(short_frac);
  CHECK(format_timestamp(*short_frac) == "2026-11-23T14:34:05.100000Z");
  auto no_frac = parse_timestamp("1970-01-01T00:00:00Z");
  REQUIRE(no_frac);
  CHECK(no_frac->time_since_epoch().count() == 0);
  for (const char* bad :
       {"2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-23",
        "2026-11-23T14:34:05", "2026-11-23T14:34:05+02:00",
        "2026-11-23T25:00:00Z", "2026-11-23T14:34:05.Z",
        // Found by tests/fuzz/fuzz_codec: signs were read as digits.
        "2026-11-23T-1:34:05Z", "2026-11-23T14:-4:05Z", "-026-11-23T14:34:05Z",
        "2026-11-23T14:34:+5Z"}) {
    INFO(bad);
    CHECK_FALSE(parse_timestamp(bad));
  }
  auto now = now_utc();
  CHECK(*parse_timestamp(format_timestamp(now)) == now);
}

// Found by tests/fuzz/fuzz_stored_row (a damaged row's occurred_at) and
// tests/fuzz/fuzz_codec (a leap second carrying into year 10000).
TEST_CASE("every time point formats, and parsing keeps to four-digit years",
          "[json]") {
  auto at = [](int64_t us) {
    return format_timestamp(timestamp{std::chrono::microseconds{us}});
  };
  CHECK(at(std::numeric_limits<int64_t>::min())
        == "-290308-12-21T19:59:05.224192Z");
  CHECK(at(std::numeric_limits<int64_t>::max())
        == "294247-01-10T04:00:54.775807Z");
  CHECK(at(-62'167'219'200'000'001) == "-0001-12-31T23:59:59.999999Z");
  CHECK(at(-62'135'596'800'000'000) == "0001-01-01T00:00:00.000000Z");
  CHECK(at(-1) == "1969-12-31T23:59:59.999999Z");
  auto last = parse_timestamp("9999-12-31T23:59:59.999999Z");
  REQUIRE(last);
  CHECK(format_timestamp(*last) == "9999-12-31T23:59:59.999999Z");
  CHECK_FALSE(parse_timestamp("9999-12-31T23:59:60Z"));
  auto leap = parse_timestamp("2016-12-31T23:59:60Z");
  REQUIRE(leap);
  CHECK(format_timestamp(*leap) == "2017-01-01T00:00:00.000000Z");
}
