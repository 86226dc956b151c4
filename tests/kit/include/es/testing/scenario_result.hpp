// What a scenario of the test kit found: pass or fail, and why.
#pragma once

#include "es/store/errors.hpp"
#include "es/store/event.hpp"

#include <caf/error.hpp>

#include <concepts>
#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

namespace es::testing {

/// The verdict of one check over a read model or a state: passed, or failed
/// with a sentence saying what differs. Checks given to `then` may return
/// this, `bool`, `caf::error` (none passes) or `std::string` (empty passes).
class check_result {
public:
  /// A passed check.
  check_result() = default;

  /// `true` passes; `false` fails with "the check returned false".
  check_result(bool passed); // NOLINT(google-explicit-constructor)

  static check_result pass() {
    return {};
  }

  static check_result fail(std::string why);

  bool ok() const noexcept {
    return ok_;
  }

  /// Why it failed; empty when it passed.
  const std::string& why() const noexcept {
    return why_;
  }

private:
  bool ok_ = true;
  std::string why_;
};

/// Compares `actual` with `expected` with `operator==`; a failure names
/// `what` and, for types that can be written to an ostream, both values.
template <class T, class U>
check_result
expect_eq(const std::string& what, const T& actual, const U& expected) {
  if (actual == expected)
    return check_result::pass();
  if constexpr (requires(std::ostream & out, const T& x, const U& y) {
                  out << x;
                  out << y;
                }) {
    std::ostringstream out;
    out << what << ": expected " << expected << ", got " << actual;
    return check_result::fail(out.str());
  } else {
    return check_result::fail(what + " differs from the expected value");
  }
}

/// Turns what a user check returned into a `check_result`.
template <class R>
check_result to_check_result(R&& x) {
  using T = std::decay_t<R>;
  if constexpr (std::is_same_v<T, check_result>)
    return std::forward<R>(x);
  else if constexpr (std::is_same_v<T, bool>)
    return check_result{x};
  else if constexpr (std::is_same_v<T, caf::error>)
    return x ? check_result::fail(describe(x)) : check_result::pass();
  else if constexpr (std::is_convertible_v<const T&, std::string>)
    return std::string{x}.empty() ? check_result::pass()
                                  : check_result::fail(std::string{x});
  else
    static_assert(sizeof(T) == 0, "a check returns check_result, bool, "
                                  "caf::error or std::string");
}

/// The outcome of a scenario (`aggregate_scenario`, `projection_scenario`).
/// It asserts nothing itself: test with any framework, for example
/// `REQUIRE(r.ok())` with `INFO(r.explain())` in Catch2, or
/// `EXPECT_TRUE(r.ok()) << r.explain()` in GoogleTest.
class scenario_result {
public:
  scenario_result() = default;

  /// Whether every expectation held.
  bool ok() const noexcept {
    return failure_.empty();
  }

  explicit operator bool() const noexcept {
    return ok();
  }

  /// The first difference between what was expected and what happened,
  /// with the scenario it happened in; empty when `ok()`.
  std::string explain() const;

  /// The first difference alone; empty when `ok()`.
  const std::string& failure() const noexcept {
    return failure_;
  }

  /// The events the command emitted (an aggregate scenario run directly) or
  /// wrote to the store (run through actors).
  const event_batch& events() const noexcept {
    return events_;
  }

  /// The error the command failed with, or the error that stopped a
  /// projection; none if it did not fail.
  const caf::error& error() const noexcept {
    return error_;
  }

  /// How often the command ran (through actors, 1 + the retries after
  /// version conflicts; directly, 1).
  uint32_t attempts() const noexcept {
    return attempts_;
  }

  // -- building results (used by the scenarios) ------------------------------

  /// Records the first failure; later ones are ignored.
  void fail(std::string why);

  /// Describes the scenario for `explain`: "given ..., when ...".
  void set_context(std::string text) {
    context_ = std::move(text);
  }

  void set_events(event_batch events) {
    events_ = std::move(events);
  }

  void set_error(caf::error err) {
    error_ = std::move(err);
  }

  void set_attempts(uint32_t n) noexcept {
    attempts_ = n;
  }

private:
  std::string failure_;
  std::string context_;
  event_batch events_;
  caf::error error_;
  uint32_t attempts_ = 0;
};

/// Writes `explain()` (or "ok").
std::ostream& operator<<(std::ostream& out, const scenario_result& x);

} // namespace es::testing
