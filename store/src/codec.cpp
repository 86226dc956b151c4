#include "es/store/codec.hpp"

#include <charconv>
#include <cstdio>
#include <cstdlib>

namespace es {

std::string format_timestamp(timestamp t) {
  // Integer arithmetic valid for every time point: std::chrono::floor to
  // days overflows near the ends of the microsecond range, and
  // year_month_day holds years up to 32767 only.
  constexpr int64_t us_per_day = 86'400'000'000;
  auto us = t.time_since_epoch().count();
  auto days = us / us_per_day;
  auto tod = us % us_per_day;
  if (tod < 0) {
    tod += us_per_day;
    --days;
  }
  // The civil date of a day count (H. Hinnant's civil_from_days).
  auto z = days + 719'468;
  auto era = (z >= 0 ? z : z - 146'096) / 146'097;
  auto doe = z - era * 146'097;
  auto yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;
  auto doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  auto mp = (5 * doy + 2) / 153;
  auto day = doy - (153 * mp + 2) / 5 + 1;
  auto month = mp < 10 ? mp + 3 : mp - 9;
  auto year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char buf[48];
  std::snprintf(buf, sizeof(buf),
                "%s%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lldZ",
                year < 0 ? "-" : "", static_cast<long long>(std::abs(year)),
                static_cast<long long>(month), static_cast<long long>(day),
                static_cast<long long>(tod / 3'600'000'000),
                static_cast<long long>(tod / 60'000'000 % 60),
                static_cast<long long>(tod / 1'000'000 % 60),
                static_cast<long long>(tod % 1'000'000));
  return buf;
}

namespace {

bool read_int(std::string_view& in, size_t digits, int& out) {
  if (in.size() < digits)
    return false;
  // Digits only: from_chars would take a sign too ("-1" as an hour).
  for (size_t i = 0; i < digits; ++i)
    if (in[i] < '0' || in[i] > '9')
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
  // A leap second at the end of 9999 would carry into a year that the form
  // has no digits for.
  if (tp >= sys_days{year{10000} / January / 1})
    return fail();
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
