// JSON numbers and string escapes: every number reads as the correctly
// rounded double (or stays an exact integer) or is refused as out of range,
// checked against glibc's strtod, by validation, documents and tapes alike
// (tapes and validation parse with simdjson first); lone surrogate escapes
// are refused.
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace es;

namespace {

// -- running our side ---------------------------------------------------------

/// What our parser made of one number, read five ways: validated and parsed,
/// as the member of an object (`{"x":N}`) and as the element of an array
/// (`[N]`), and on a tape as the member of an object.
struct our_reading {
  bool accepted = false;
  /// Set when the five readings disagree, an exception escaped, or a refusal
  /// did not read "number out of range" at the number's offset.
  std::string problem;
  std::optional<int64_t> as_int64;
  std::optional<uint64_t> as_uint64;
  double as_double = 0;
  std::string error;
};

uint64_t bits(double x) {
  uint64_t result;
  std::memcpy(&result, &x, sizeof(result));
  return result;
}

/// Checks that `err` is `malformed_payload` saying "number out of range" at
/// `offset`; returns a description of what differs, or an empty string.
std::string check_out_of_range(const caf::error& err, size_t offset) {
  if (!has_code(err, store_errc::malformed_payload))
    return "refused without malformed_payload: " + caf::to_string(err);
  auto text = error_description(err);
  auto expected = "invalid JSON at offset " + std::to_string(offset)
                  + ": number out of range";
  if (text != expected)
    return "refused with \"" + text + "\", expected \"" + expected + "\"";
  return {};
}

our_reading read_number(const std::string& number) {
  our_reading result;
  const std::string object = "{\"x\":" + number + "}";
  const std::string array = "[" + number + "]";
  try {
    auto object_err = json::validate(object, {}, true);
    auto array_err = json::validate(array, {}, false);
    auto object_doc = json::document::parse(object);
    auto array_doc = json::document::parse(array);
    // Tapes parse with simdjson first, documents with RapidJSON only.
    json::tape object_tape;
    auto object_tape_err = object_tape.parse(object);
    result.accepted = !object_err;
    if (!array_err != result.accepted || bool{object_doc} != result.accepted
        || bool{array_doc} != result.accepted
        || !object_tape_err != result.accepted) {
      result.problem = "validate and parse disagree";
      return result;
    }
    if (!result.accepted) {
      result.error = error_description(object_err);
      for (auto problem :
           {check_out_of_range(object_err, 5), check_out_of_range(array_err, 1),
            check_out_of_range(object_tape_err, 5),
            check_out_of_range(object_doc.error(), 5),
            check_out_of_range(array_doc.error(), 1)})
        if (!problem.empty()) {
          result.problem = problem;
          return result;
        }
      return result;
    }
    auto in_object = object_doc->root().find("x");
    auto in_array = array_doc->root().at(0);
    if (!in_object || in_object->type() != json::kind::number
        || in_array.type() != json::kind::number) {
      result.problem = "not read as a number";
      return result;
    }
    result.as_int64 = in_object->as_int64();
    result.as_uint64 = in_object->as_uint64();
    result.as_double = in_object->as_double().value_or(-1);
    if (in_array.as_int64() != result.as_int64
        || in_array.as_uint64() != result.as_uint64
        || bits(in_array.as_double().value_or(-1)) != bits(result.as_double))
      result.problem = "object and array read different values";
    auto in_tape = object_tape.root().find("x");
    if (!in_tape || in_tape->as_int64() != result.as_int64
        || in_tape->as_uint64() != result.as_uint64
        || bits(in_tape->as_double().value_or(-1)) != bits(result.as_double))
      result.problem = "tape and document read different values";
  } catch (const std::exception& e) {
    result.problem = std::string{"exception: "} + e.what();
  } catch (...) {
    result.problem = "exception";
  }
  return result;
}

// -- the reference: glibc -----------------------------------------------------

/// What glibc (strtod, strtoll, strtoull) makes of a number, plus the two
/// text forms RapidJSON's scanner may refuse (see es/store/json.hpp).
struct reference_reading {
  /// strtod read the whole text.
  bool complete = false;
  bool integer_text = false;
  std::optional<int64_t> exact_int64;
  std::optional<uint64_t> exact_uint64;
  double value = 0;
  bool overflow = false;
  bool underflow_to_zero = false;
  /// A zero whose exponent exceeds 308 plus its fraction digits: refused.
  bool zero_beyond_scanner = false;
  /// An integer part of 309 or more digits: may be refused.
  bool long_integer_part = false;
};

reference_reading reference_read(const std::string& number) {
  reference_reading result;
  const char* text = number.c_str();
  result.integer_text = number.find_first_of(".eE") == std::string::npos;
  if (result.integer_text) {
    char* end = nullptr;
    errno = 0;
    if (number.front() == '-') {
      long long i = std::strtoll(text, &end, 10);
      if (errno == 0 && *end == '\0')
        result.exact_int64 = i;
    } else {
      unsigned long long u = std::strtoull(text, &end, 10);
      if (errno == 0 && *end == '\0')
        result.exact_uint64 = u;
    }
  }
  char* end = nullptr;
  errno = 0;
  result.value = std::strtod(text, &end);
  int strtod_errno = errno;
  result.complete = *end == '\0';
  if (strtod_errno == ERANGE) {
    result.overflow = std::isinf(result.value);
    result.underflow_to_zero = result.value == 0;
  }
  // Digit counts of the integer part and the fraction, and the exponent.
  auto digits_from = [&](size_t pos) {
    size_t n = 0;
    while (pos + n < number.size() && number[pos + n] >= '0'
           && number[pos + n] <= '9')
      ++n;
    return n;
  };
  size_t pos = number.front() == '-' ? 1 : 0;
  size_t integer_digits = digits_from(pos);
  pos += integer_digits;
  size_t fraction_digits = 0;
  if (pos < number.size() && number[pos] == '.') {
    fraction_digits = digits_from(pos + 1);
    pos += 1 + fraction_digits;
  }
  long exponent = 0;
  if (pos < number.size()) {
    ++pos; // 'e' or 'E'
    bool negative = number[pos] == '-';
    if (number[pos] == '-' || number[pos] == '+')
      ++pos;
    for (; pos < number.size(); ++pos)
      exponent = std::min(exponent * 10 + (number[pos] - '0'), 1'000'000L);
    if (negative)
      exponent = -exponent;
  }
  bool zero = number.find_first_of("123456789")
              > std::min(number.find_first_of("eE"), number.size());
  result.zero_beyond_scanner
    = zero && exponent > 308 + static_cast<long>(fraction_digits);
  result.long_integer_part = integer_digits >= 309;
  return result;
}

/// Compares our reading of `number` with glibc's; returns a description of
/// the mismatch or an empty string.
std::string compare(const our_reading& ours, const reference_reading& ref) {
  if (!ours.problem.empty())
    return ours.problem;
  if (!ref.complete)
    return "strtod stopped early";
  if (ref.integer_text && (ref.exact_int64 || ref.exact_uint64)) {
    if (!ours.accepted)
      return "refused an integer that fits: " + ours.error;
    if (ref.exact_int64 && ours.as_int64 != ref.exact_int64)
      return "not the exact int64";
    if (ref.exact_uint64 && ours.as_uint64 != ref.exact_uint64)
      return "not the exact uint64";
    return {};
  }
  if (ref.overflow || ref.underflow_to_zero || ref.zero_beyond_scanner) {
    if (ours.accepted) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "accepted as %.17g", ours.as_double);
      return buf;
    }
    return {};
  }
  if (!ours.accepted) {
    if (ref.long_integer_part)
      return {}; // Refused by RapidJSON's scanner, documented.
    return "refused a number in range: " + ours.error;
  }
  if (ours.as_int64 || ours.as_uint64)
    return "a fraction or exponent read as an integer";
  if (bits(ours.as_double) != bits(ref.value)) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "read %.17g (%a), strtod %.17g (%a)",
                  ours.as_double, ours.as_double, ref.value, ref.value);
    return buf;
  }
  return {};
}

// -- generating numbers -------------------------------------------------------

/// The exact decimal value of `x` in exponent form, without trailing zeros
/// (glibc prints binary floating point exactly).
std::string exact_decimal(long double x) {
  std::vector<char> buf(1200);
  std::snprintf(buf.data(), buf.size(), "%.1100Le", x);
  std::string text{buf.data()};
  auto e = text.find('e');
  auto last = text.find_last_not_of('0', e - 1);
  if (text[last] == '.')
    --last;
  return text.substr(0, last + 1) + text.substr(e);
}

/// The exact midpoint between `x` and the next double up: x87 long double
/// (64-bit significand, wider exponent range) holds it exactly.
std::string midpoint(double x) {
  auto up = std::nextafter(x, INFINITY);
  return exact_decimal(
    (static_cast<long double>(x) + static_cast<long double>(up)) / 2);
}

/// Generates the numbers of the differential test.
class number_generator {
public:
  explicit number_generator(uint64_t seed) : rng_(seed) {
    // nop
  }

  /// A random number in JSON syntax: 1 to 40 significant digits, with or
  /// without fraction and exponent, zero mantissas, leading zeros in the
  /// fraction, exponents from -400 to 400.
  std::string random_number() {
    std::string result;
    if (chance(4))
      result += '-';
    auto digits = static_cast<size_t>(pick(1, 40));
    switch (pick(0, 9)) {
      case 0: // a zero mantissa
        result += '0';
        if (chance(2)) {
          result += '.';
          result.append(static_cast<size_t>(pick(1, 6)), '0');
        }
        break;
      case 1:
      case 2:
      case 3: // 0.000ddd
        result += "0.";
        result.append(static_cast<size_t>(pick(0, 30)), '0');
        append_digits(result, digits, true);
        break;
      case 4:
      case 5: // an integer
        append_digits(result, digits, true);
        break;
      default: { // ddd.ddd
        auto integer = static_cast<size_t>(pick(1, static_cast<int>(digits)));
        append_digits(result, integer, true);
        if (integer < digits) {
          result += '.';
          append_digits(result, digits - integer, false);
        }
      }
    }
    if (pick(1, 10) <= 7)
      append_exponent(result, pick(-400, 400));
    return result;
  }

  /// A finite double written in one of several ways: shortest-ish ("%.17g"),
  /// with fewer digits, as the exact decimal value of the midpoint between it
  /// and its upper neighbour, or that midpoint cut short or nudged up.
  std::vector<std::string> around_random_double() {
    double x;
    do {
      uint64_t b = rng_() & 0x7FFF'FFFF'FFFF'FFFFu;
      std::memcpy(&x, &b, sizeof(x));
    } while (!std::isfinite(x) || x == DBL_MAX);
    std::vector<std::string> result;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", x);
    result.emplace_back(buf);
    std::snprintf(buf, sizeof(buf), "%.*e", pick(0, 16), x);
    result.emplace_back(buf);
    auto mid = midpoint(x);
    result.push_back(mid);
    auto e = mid.find('e');
    auto mantissa = mid.substr(0, e);
    auto exponent = mid.substr(e);
    result.push_back(mantissa + "1" + exponent);
    auto cut = std::min(mantissa.size(), static_cast<size_t>(pick(3, 40)));
    result.push_back(mantissa.substr(0, cut) + exponent);
    return result;
  }

  int pick(int lo, int hi) {
    return std::uniform_int_distribution<int>{lo, hi}(rng_);
  }

private:
  /// True with probability 1/n.
  bool chance(int n) {
    return pick(1, n) == 1;
  }

  /// Appends `n` digits; `lead` makes the first nonzero. Some runs are
  /// made of 0s and 9s, or of 4s then 9s and 5s then 0s, to land close to
  /// rounding boundaries.
  void append_digits(std::string& out, size_t n, bool lead) {
    auto style = pick(0, 4);
    for (size_t i = 0; i < n; ++i) {
      char c;
      switch (style) {
        case 0: c = chance(2) ? '0' : '9'; break;
        case 1:
          c = i == 0 ? (chance(2) ? '4' : '5') : (chance(2) ? '9' : '0');
          break;
        default: c = static_cast<char>('0' + pick(0, 9));
      }
      if (i == 0 && lead && c == '0')
        c = static_cast<char>('1' + pick(0, 8));
      out += c;
    }
  }

  void append_exponent(std::string& out, int exponent) {
    out += chance(2) ? 'e' : 'E';
    if (exponent < 0)
      out += '-';
    else if (chance(3))
      out += '+';
    if (chance(10))
      out.append(static_cast<size_t>(pick(1, 3)), '0');
    out += std::to_string(std::abs(exponent));
  }

  std::mt19937_64 rng_;
};

/// Edges: subnormal and normal limits, DBL_MAX, 2^53, 2^63 and 2^64, each
/// with neighbours, signs and extra digits.
std::vector<std::string> edge_numbers() {
  std::vector<std::string> bases = {
    // Smallest subnormal, the midpoint below it (2^-1075) and neighbours.
    "4.9e-324",
    "4.9406564584124654e-324",
    "5e-324",
    "3e-324",
    "2e-324",
    "2.4703282292062327e-324",
    "2.4703282292062328e-324",
    "1e-323",
    "1e-324",
    "1e-325",
    // Largest subnormal and smallest normal.
    "2.2250738585072009e-308",
    "2.2250738585072011e-308",
    "2.2250738585072012e-308",
    "2.2250738585072014e-308",
    "2.2250738585072013e-308",
    "1e-307",
    "1e-308",
    // DBL_MAX and the overflow boundary (DBL_MAX + half an ulp).
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "1.797693134862315807937289714053e308",
    "1.797693134862315807937289714054e308",
    "1.797693134862315807937289714052e308",
    "1e308",
    "9.9999999999999999e307",
    "0.1e309",
    "0.01e310",
    // Powers of two around the integer limits.
    "9007199254740991",
    "9007199254740992",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551617",
    "36893488147419103232",
    "9007199254740993.0",
    "9007199254740993e0",
    "18446744073709551615.5",
    // Zeros with exponents, at and beyond the scanner's limit.
    "0",
    "0.0",
    "0e308",
    "0.0e308",
    "0e309",
    "0.0e309",
    "0.0e310",
    "0.000e311",
    "0.000e312",
    "0e-400",
    "0E+000400",
    // The inputs of the defect report.
    "2e308",
    "9e308",
    "123456789012345678901e308",
    "789789012345678789234567878901e308",
    "1e400",
    "1e-400",
    "1e99999999999999999999",
    "1e-99999999999999999999",
  };
  // Exact decimal values of the limits and of the midpoints next to them.
  const double denorm_min = std::numeric_limits<double>::denorm_min();
  bases.push_back(exact_decimal(denorm_min));
  bases.push_back(exact_decimal(static_cast<long double>(denorm_min) / 2));
  bases.push_back(midpoint(denorm_min));
  bases.push_back(exact_decimal(DBL_MIN));
  bases.push_back(midpoint(DBL_MIN));
  bases.push_back(exact_decimal(std::nextafter(DBL_MIN, 0.0)));
  bases.push_back(midpoint(std::nextafter(DBL_MIN, 0.0)));
  bases.push_back(exact_decimal(DBL_MAX));
  bases.push_back(midpoint(std::nextafter(DBL_MAX, 0.0)));
  // DBL_MAX, the overflow midpoint and 1e308 written out as integers.
  char buf[400];
  std::snprintf(buf, sizeof(buf), "%.0f", DBL_MAX);
  bases.emplace_back(buf);
  long double overflow_mid = static_cast<long double>(DBL_MAX)
                             + std::ldexp(static_cast<long double>(1), 970);
  std::snprintf(buf, sizeof(buf), "%.0Lf", overflow_mid);
  bases.emplace_back(buf);
  bases.push_back("1" + std::string(308, '0'));
  bases.push_back("1" + std::string(308, '0') + "e-300");
  bases.push_back("1" + std::string(309, '0') + "e-300");
  std::vector<std::string> result;
  for (const auto& base : bases) {
    auto end = base.find_first_of("eE");
    if (end == std::string::npos)
      end = base.size();
    std::vector<std::string> variants = {base};
    // Last mantissa digit one up and one down, extra digits after it.
    if (base[end - 1] >= '0' && base[end - 1] <= '8') {
      auto up = base;
      ++up[end - 1];
      variants.push_back(up);
    }
    if (base[end - 1] >= '1' && base[end - 1] <= '9') {
      auto down = base;
      --down[end - 1];
      variants.push_back(down);
    }
    bool has_fraction = base.find('.') != std::string::npos;
    for (const char* extra : {"0", "1", "5", "49999999999", "50000000001"}) {
      auto longer = base;
      longer.insert(end, has_fraction ? std::string{extra}
                                      : std::string{"."} + extra);
      variants.push_back(longer);
    }
    for (const auto& v : variants) {
      result.push_back(v);
      result.push_back("-" + v);
    }
  }
  return result;
}

uint64_t test_seed() {
  if (auto env = std::getenv("ES_JSON_NUMBER_SEED"))
    return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

// -- codec --------------------------------------------------------------------

struct measurements {
  double value = 0;
  std::vector<double> series;
  int64_t count = 0;
  uint64_t total = 0;
};

template <class F>
bool fields(F& f, measurements& x) {
  return f("value", x.value) && f("series", x.series) && f("count", x.count)
         && f("total", x.total);
}

} // namespace

TEST_CASE("the numbers of the defect report read right or are refused",
          "[json][number]") {
  SECTION("zeros with exponent 308 are zero") {
    for (const char* text : {R"({"a":0e308})", R"({"a":0.0e308})"}) {
      INFO(text);
      REQUIRE_FALSE(json::validate(text));
      auto doc = json::document::parse(text);
      REQUIRE(doc);
      auto value = doc->root().find("a")->as_double();
      REQUIRE(value);
      CHECK(bits(*value) == bits(0.0));
    }
  }
  SECTION("overflowing numbers are refused as out of range") {
    for (const char* text :
         {"[2e308]", "[9e308]", "[123456789012345678901e308]", "[0e309]"}) {
      INFO(text);
      CHECK(check_out_of_range(json::validate(text, {}, false), 1).empty());
      auto doc = json::document::parse(text);
      REQUIRE_FALSE(doc);
      CHECK(check_out_of_range(doc.error(), 1).empty());
    }
  }
  SECTION("the assertion input is refused without an exception") {
    auto text = R"({"b":789789012345678789234567878901e308})";
    caf::error err;
    REQUIRE_NOTHROW(err = json::validate(text));
    CHECK(check_out_of_range(err, 5).empty());
    std::optional<caf::expected<json::document>> doc;
    REQUIRE_NOTHROW(doc.emplace(json::document::parse(text)));
    REQUIRE_FALSE(*doc);
    CHECK(check_out_of_range(doc->error(), 5).empty());
  }
  SECTION("subnormals are read, underflow to zero is refused") {
    auto doc = json::document::parse("[4.9e-324,2.2250738585072014e-308]");
    REQUIRE(doc);
    CHECK(doc->root().at(0).as_double()
          == std::numeric_limits<double>::denorm_min());
    CHECK(doc->root().at(1).as_double() == DBL_MIN);
    CHECK(check_out_of_range(json::validate("[1e-400]", {}, false), 1).empty());
    CHECK_FALSE(json::validate("[0e-400]", {}, false));
  }
  SECTION("integers stay exact") {
    auto doc = json::document::parse(
      "[-9223372036854775808,18446744073709551615,-0,9007199254740993]");
    REQUIRE(doc);
    auto root = doc->root();
    CHECK(root.at(0).as_int64() == std::numeric_limits<int64_t>::min());
    CHECK(root.at(1).as_uint64() == std::numeric_limits<uint64_t>::max());
    CHECK(root.at(2).as_int64() == 0);
    CHECK(root.at(3).as_uint64() == 9007199254740993u);
  }
}

TEST_CASE("numbers agree with strtod bit for bit", "[json][number]") {
  auto seed = test_seed();
  std::printf("json number differential test: seed %" PRIu64
              " (replay with ES_JSON_NUMBER_SEED=%" PRIu64 ")\n",
              seed, seed);
  std::fflush(stdout);
  INFO("seed " << seed << " (replay with ES_JSON_NUMBER_SEED=" << seed << ")");
  number_generator gen{seed};
  std::vector<std::string> numbers = edge_numbers();
  auto edges = numbers.size();
  for (int i = 0; i < 20'000; ++i)
    for (auto& x : gen.around_random_double())
      numbers.push_back(std::move(x));
  while (numbers.size() < 320'000)
    numbers.push_back(gen.random_number());
  size_t accepted = 0;
  size_t refused = 0;
  size_t subnormal = 0;
  size_t mismatches = 0;
  std::string first_mismatches;
  for (const auto& number : numbers) {
    auto ours = read_number(number);
    auto ref = reference_read(number);
    auto problem = compare(ours, ref);
    if (!problem.empty()) {
      if (++mismatches <= 20)
        first_mismatches += number.substr(0, 120) + ": " + problem + "\n";
      continue;
    }
    if (ours.accepted) {
      ++accepted;
      if (std::fpclassify(ours.as_double) == FP_SUBNORMAL)
        ++subnormal;
    } else {
      ++refused;
    }
  }
  std::printf("json number differential test: %zu numbers (%zu edge cases), "
              "%zu accepted (%zu subnormal), %zu refused, %zu mismatches\n",
              numbers.size(), edges, accepted, subnormal, refused, mismatches);
  INFO(first_mismatches);
  CHECK(mismatches == 0);
  // The generator reaches both sides of the range limits.
  CHECK(refused > 1000);
  CHECK(subnormal > 100);
}

TEST_CASE("lone surrogate escapes are refused, pairs decode",
          "[json][string]") {
  auto refused_at = [](const std::string& text, size_t offset) {
    INFO(text);
    auto expected = "invalid JSON at offset " + std::to_string(offset)
                    + ": lone UTF-16 surrogate escape";
    auto err = json::validate(text);
    CHECK(has_code(err, store_errc::malformed_payload));
    CHECK(error_description(err) == expected);
    auto doc = json::document::parse(text);
    REQUIRE_FALSE(doc);
    CHECK(has_code(doc.error(), store_errc::malformed_payload));
    CHECK(error_description(doc.error()) == expected);
  };
  refused_at(R"({"s":"\udd38"})", 6);       // low
  refused_at(R"({"s":"\ud83d"})", 6);       // high, string ends
  refused_at(R"({"s":"\ud83dx"})", 6);      // high, a character follows
  refused_at(R"({"s":"\ud83d\u0041"})", 6); // high, another escape follows
  refused_at(R"({"s":"\udc00\ud83d\ude00"})", 6);
  refused_at(R"({"s":"ab\ud83d\ude00\"\\\uDFFF"})", 24);
  refused_at(R"({"\udc00":1})", 2); // in a member name
  refused_at(R"({"a":["x","\udbff\udc00","\udfff"]})", 26);
  auto accepted = [](const std::string& text, const std::string& decoded) {
    INFO(text);
    CHECK_FALSE(json::validate(text));
    auto doc = json::document::parse(text);
    REQUIRE(doc);
    CHECK(doc->root().find("s")->as_string() == decoded);
  };
  accepted(R"({"s":"\ud83d\ude00"})", "\xF0\x9F\x98\x80");
  accepted(R"({"s":"\uD83D\uDE00"})", "\xF0\x9F\x98\x80");
  accepted(R"({"s":"\udbff\udfff"})", "\xF4\x8F\xBF\xBF");
  accepted(R"({"s":"\ud7ff\ue000"})", "\xED\x9F\xBF\xEE\x80\x80");
  // An escaped backslash followed by "udc00" is text, not an escape.
  accepted(R"({"s":"a\\udc00"})", "a\\udc00");
  // Raw UTF-8 of a surrogate is invalid UTF-8, refused as such.
  CHECK(has_code(json::validate("{\"s\":\"\xED\xB4\xB8\"}"),
                 store_errc::malformed_payload));
}

TEST_CASE("struct codecs round-trip doubles bit for bit", "[json][number]") {
  std::vector<double> values = {0.0,
                                -0.0,
                                0.1,
                                1.0 / 3,
                                DBL_MAX,
                                -DBL_MAX,
                                DBL_MIN,
                                std::nextafter(DBL_MIN, 0.0),
                                std::numeric_limits<double>::denorm_min(),
                                -std::numeric_limits<double>::denorm_min(),
                                1e308,
                                1e-308,
                                9007199254740993.0,
                                18446744073709551616.0};
  std::mt19937_64 rng{20261129};
  while (values.size() < 20'000) {
    double x;
    uint64_t b = rng();
    std::memcpy(&x, &b, sizeof(x));
    if (std::isfinite(x))
      values.push_back(x);
  }
  measurements m;
  m.value = DBL_MAX;
  m.series = values;
  m.count = std::numeric_limits<int64_t>::min();
  m.total = std::numeric_limits<uint64_t>::max();
  auto text = to_json(m);
  REQUIRE(text);
  auto back = from_json<measurements>(*text);
  REQUIRE(back);
  CHECK(bits(back->value) == bits(DBL_MAX));
  CHECK(back->count == m.count);
  CHECK(back->total == m.total);
  REQUIRE(back->series.size() == values.size());
  size_t differ = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (bits(back->series[i]) != bits(values[i]))
      ++differ;
  CHECK(differ == 0);
  // Decoding refuses what the parser refuses.
  auto bad = from_json<measurements>(
    R"({"value":1e400,"series":[],"count":0,"total":0})");
  REQUIRE_FALSE(bad);
  CHECK(error_description(bad.error())
        == "invalid JSON at offset 9: number out of range");
}
