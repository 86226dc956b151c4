#include "es/store/codec.hpp"

#include <charconv>
#include <cstdio>

namespace es {

std::string format_timestamp(timestamp t) {
  using namespace std::chrono;
  auto days = floor<std::chrono::days>(t);
  year_month_day ymd{days};
  hh_mm_ss<microseconds> tod{t - days};
  char buf[40];
  std::snprintf(
    buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d.%06dZ",
    static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
    static_cast<unsigned>(ymd.day()), static_cast<int>(tod.hours().count()),
    static_cast<int>(tod.minutes().count()),
    static_cast<int>(tod.seconds().count()),
    static_cast<int>(tod.subseconds().count()));
  return buf;
}

namespace {

bool read_int(std::string_view& in, size_t digits, int& out) {
  if (in.size() < digits)
    return false;
  auto res = std::from_chars(in.data(), in.data() + digits, out);
  if (res.ec != std::errc{} || res.ptr != in.data() + digits)
    return false;
  in.remove_prefix(digits);
  return true;
}

bool expect(std::string_view& in, char c) {
  if (in.empty() || in.front() != c)
    return false;
  in.remove_prefix(1);
  return true;
}

} // namespace

caf::expected<timestamp> parse_timestamp(std::string_view text) {
  using namespace std::chrono;
  auto fail = [&] {
    return make_store_error(store_errc::invalid_argument,
                            "not an ISO 8601 UTC timestamp: "
                              + std::string{text.substr(0, 64)});
  };
  auto in = text;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!read_int(in, 4, y) || !expect(in, '-') || !read_int(in, 2, mo)
      || !expect(in, '-') || !read_int(in, 2, d)
      || !(expect(in, 'T') || expect(in, ' ')) || !read_int(in, 2, h)
      || !expect(in, ':') || !read_int(in, 2, mi) || !expect(in, ':')
      || !read_int(in, 2, s))
    return fail();
  int64_t micros = 0;
  if (!in.empty() && in.front() == '.') {
    in.remove_prefix(1);
    int digits = 0;
    while (!in.empty() && in.front() >= '0' && in.front() <= '9') {
      if (digits < 6) {
        micros = micros * 10 + (in.front() - '0');
        ++digits;
      }
      in.remove_prefix(1);
    }
    if (digits == 0)
      return fail();
    for (; digits < 6; ++digits)
      micros *= 10;
  }
  if (in != "Z" && in != "+00:00")
    return fail();
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                     day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 60)
    return fail();
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{s}
            + microseconds{micros};
  return timestamp{tp};
}

namespace detail {

std::string type_mismatch(std::string_view expected, json::kind got) {
  std::string result = "expected ";
  result += expected;
  result += ", got ";
  result += json::to_string(got);
  return result;
}

} // namespace detail

} // namespace es
