// backoff_delay (schedule, cap and jitter bounds) and the blocking retry
// helper (attempt counts, non-retryable errors, exhaustion).
#include "es/store/errors.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/retry.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

using namespace es;
using namespace std::chrono_literals;

namespace {

retry_config schedule_config(double jitter) {
  retry_config cfg;
  cfg.max_retries = 10;
  cfg.initial_delay = 100ms;
  cfg.max_delay = 1s;
  cfg.exponential_base = 2.0;
  cfg.jitter = jitter;
  return cfg;
}

/// initial * base^n capped at max, computed independently of the library.
int64_t expected_ns(const retry_config& cfg, uint32_t n) {
  auto initial = static_cast<double>(cfg.initial_delay.count());
  auto cap = static_cast<double>(cfg.max_delay.count());
  return static_cast<int64_t>(
    std::min(initial * std::pow(cfg.exponential_base, n), cap));
}

// Floating-point factors such as 0.9 are not exact: allow one nanosecond.
constexpr int64_t slack_ns = 1;

bool retryable(const caf::error& err) {
  return is_retryable(err);
}

} // namespace

TEST_CASE("backoff without jitter is initial * base^n capped at max_delay",
          "[retry][backoff]") {
  auto cfg = schedule_config(0.0);
  // 100, 200, 400, 800 ms, then the 1 s cap.
  const int64_t ms[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (uint32_t n = 0; n < 7; ++n) {
    INFO("attempt " << n);
    auto want = caf::timespan{std::chrono::milliseconds{ms[n]}};
    // Without jitter, u does not matter.
    CHECK(backoff_delay(cfg, n, 0.0) == want);
    CHECK(backoff_delay(cfg, n, 0.5) == want);
    CHECK(backoff_delay(cfg, n, 0.999) == want);
  }
  // A large attempt number stays at the cap (no overflow).
  CHECK(backoff_delay(cfg, 200, 0.5) == caf::timespan{1s});
  // Another base.
  cfg.exponential_base = 3.0;
  CHECK(backoff_delay(cfg, 2, 0.5) == caf::timespan{900ms});
  CHECK(backoff_delay(cfg, 3, 0.5) == caf::timespan{1s});
}

TEST_CASE("backoff with jitter and u = 0.5 equals the un-jittered schedule",
          "[retry][backoff]") {
  auto cfg = schedule_config(0.1);
  for (uint32_t n = 0; n < 8; ++n) {
    INFO("attempt " << n);
    CHECK(backoff_delay(cfg, n, 0.5).count() == expected_ns(cfg, n));
  }
}

TEST_CASE("backoff jitter: u = 0 gives the lower and u -> 1 the upper bound",
          "[retry][backoff]") {
  auto cfg = schedule_config(0.1);
  auto almost_one = std::nextafter(1.0, 0.0);
  for (uint32_t n = 0; n < 4; ++n) { // 100..800 ms: below the cap
    INFO("attempt " << n);
    auto base = static_cast<double>(expected_ns(cfg, n));
    auto low = backoff_delay(cfg, n, 0.0).count();
    auto high = backoff_delay(cfg, n, almost_one).count();
    CHECK(std::llabs(low - static_cast<int64_t>(base * 0.9)) <= slack_ns);
    CHECK(std::llabs(high - static_cast<int64_t>(base * 1.1)) <= slack_ns);
  }
  // At the cap the upper bound is the cap itself, the lower 0.9 x cap.
  auto cap = cfg.max_delay.count();
  CHECK(backoff_delay(cfg, 6, almost_one).count() == cap);
  CHECK(std::llabs(backoff_delay(cfg, 6, 0.0).count()
                   - static_cast<int64_t>(static_cast<double>(cap) * 0.9))
        <= slack_ns);
  // u outside [0, 1] is clamped.
  CHECK(backoff_delay(cfg, 0, -3.0) == backoff_delay(cfg, 0, 0.0));
  CHECK(std::llabs(backoff_delay(cfg, 0, 7.0).count()
                   - static_cast<int64_t>(1e8 * 1.1))
        <= slack_ns);
}

TEST_CASE("backoff with random jitter stays within +-10% and under max_delay",
          "[retry][backoff]") {
  auto cfg = schedule_config(0.1);
  std::mt19937_64 rng{20240611};
  for (uint32_t n = 0; n < 8; ++n) {
    INFO("attempt " << n);
    auto base = static_cast<double>(expected_ns(cfg, n));
    auto lo = static_cast<int64_t>(base * 0.9) - slack_ns;
    auto hi = static_cast<int64_t>(base * 1.1) + slack_ns;
    int64_t seen_min = INT64_MAX;
    int64_t seen_max = INT64_MIN;
    bool out_of_bounds = false;
    bool over_cap = false;
    for (int i = 0; i < 5000; ++i) {
      auto d = backoff_delay(cfg, n, rng).count();
      out_of_bounds = out_of_bounds || d < lo || d > hi;
      over_cap = over_cap || d > cfg.max_delay.count();
      seen_min = std::min(seen_min, d);
      seen_max = std::max(seen_max, d);
    }
    CHECK_FALSE(out_of_bounds);
    CHECK_FALSE(over_cap);
    // The draws do vary: some fall in the lowest, some in the highest 2%
    // of the band (5000 draws: missing either is practically impossible).
    if (n < 4) {
      CHECK(seen_min < static_cast<int64_t>(base * 0.92));
      CHECK(seen_max > static_cast<int64_t>(base * 1.08));
    } else {
      CHECK(seen_min < static_cast<int64_t>(base * 0.92));
      CHECK(seen_max == cfg.max_delay.count());
    }
  }
}

TEST_CASE("backoff with the same seed gives the same delays",
          "[retry][backoff]") {
  auto cfg = schedule_config(0.1);
  std::mt19937_64 a{7};
  std::mt19937_64 b{7};
  for (uint32_t n = 0; n < 20; ++n)
    CHECK(backoff_delay(cfg, n % 5, a) == backoff_delay(cfg, n % 5, b));
}

// -- the blocking retry helper ------------------------------------------------

namespace {

retry_config fast_config(uint32_t max_retries) {
  retry_config cfg;
  cfg.max_retries = max_retries;
  cfg.initial_delay = std::chrono::microseconds(1);
  cfg.max_delay = std::chrono::microseconds(10);
  cfg.jitter = 0.1;
  return cfg;
}

} // namespace

TEST_CASE("retry succeeds after k failures", "[retry][helper]") {
  for (uint32_t k : {0u, 1u, 3u}) {
    INFO("failures before success: " << k);
    uint32_t calls = 0;
    retry_stats stats;
    auto res = retry(
      fast_config(5),
      [&]() -> caf::error {
        return ++calls <= k ? make_store_error(store_errc::storage_busy, "busy")
                            : caf::error{};
      },
      retryable, &stats);
    CHECK_FALSE(res);
    CHECK(calls == k + 1);
    CHECK(stats.attempts == k + 1);
    CHECK(stats.failures == k);
    if (k == 0) {
      CHECK(stats.total_delay == caf::timespan{0});
    } else {
      CHECK(stats.total_delay > caf::timespan{0});
      // Each delay is at most max_delay.
      CHECK(stats.total_delay <= k * caf::timespan{10us});
    }
  }
}

TEST_CASE("retry returns the value of an expected<T> operation",
          "[retry][helper]") {
  int calls = 0;
  retry_stats stats;
  auto res = retry(
    fast_config(3),
    [&]() -> caf::expected<int> {
      if (++calls < 3)
        return make_store_error(store_errc::timeout, "slow");
      return 42;
    },
    retryable, &stats);
  REQUIRE(res);
  CHECK(*res == 42);
  CHECK(stats.attempts == 3);
  CHECK(stats.failures == 2);
}

TEST_CASE("retry stops at once on a non-retryable error", "[retry][helper]") {
  int calls = 0;
  retry_stats stats;
  auto res = retry(
    fast_config(5),
    [&]() -> caf::error {
      ++calls;
      return make_store_error(store_errc::malformed_payload, "bad JSON");
    },
    retryable, &stats);
  REQUIRE(res);
  CHECK(has_code(res, store_errc::malformed_payload));
  CHECK(calls == 1);
  CHECK(stats.attempts == 1);
  CHECK(stats.failures == 1);
  CHECK(stats.total_delay == caf::timespan{0});
}

TEST_CASE("retry uses the caller's retryability, not the error's own",
          "[retry][helper]") {
  int calls = 0;
  auto res = retry(
    fast_config(2),
    [&]() -> caf::error {
      ++calls;
      return make_store_error(store_errc::malformed_payload, "bad JSON");
    },
    [](const caf::error&) {
      return true;
    });
  CHECK(has_code(res, supervision_errc::retries_exhausted));
  CHECK(calls == 3);
}

TEST_CASE("retry gives up after max_retries + 1 attempts", "[retry][helper]") {
  for (uint32_t max_retries : {0u, 1u, 4u}) {
    INFO("max_retries " << max_retries);
    uint32_t calls = 0;
    retry_stats stats;
    auto res = retry(
      fast_config(max_retries),
      [&]() -> caf::error {
        ++calls;
        return make_store_error(store_errc::storage_busy, "still locked");
      },
      retryable, &stats);
    REQUIRE(res);
    CHECK(has_code(res, supervision_errc::retries_exhausted));
    CHECK(calls == max_retries + 1);
    CHECK(stats.attempts == max_retries + 1);
    CHECK(stats.failures == max_retries + 1);
    // The last error is in the text.
    auto text = describe(res);
    CHECK(text.find("storage_busy") != std::string::npos);
    CHECK(text.find("still locked") != std::string::npos);
    CHECK(text.find(std::to_string(max_retries + 1) + " attempts")
          != std::string::npos);
  }
}

TEST_CASE("retry exhaustion of an expected<T> operation", "[retry][helper]") {
  int calls = 0;
  auto res = retry(
    fast_config(2),
    [&]() -> caf::expected<std::string> {
      ++calls;
      return make_store_error(store_errc::connection_failed, "refused");
    },
    retryable);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::retries_exhausted));
  CHECK(calls == 3);
}

TEST_CASE("supervision error codes", "[retry][errors]") {
  auto open
    = caf::make_error(supervision_errc::circuit_open, "open", int64_t{1500});
  CHECK(has_code(open, supervision_errc::circuit_open));
  CHECK_FALSE(has_code(open, supervision_errc::retries_exhausted));
  CHECK(is_retryable(open));
  REQUIRE(retry_after_ms(open));
  CHECK(*retry_after_ms(open) == 1500);
  auto exhausted = caf::make_error(supervision_errc::retries_exhausted, "x");
  CHECK_FALSE(is_retryable(exhausted));
  CHECK_FALSE(retry_after_ms(exhausted));
  CHECK_FALSE(retry_after_ms(caf::error{}));
  CHECK(describe(exhausted) == "es_superv.retries_exhausted: x");
  CHECK(std::string{to_string(supervision_errc::not_found)} == "not_found");
}
