// The circuit breaker: its state machine driven by explicit time points, and
// the breaker actor in front of a scripted target on the test_coordinator.
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/classifier.hpp"

#include <caf/actor_clock.hpp>
#include <caf/send.hpp>

#include "supervision_fixture.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

// -- the state machine --------------------------------------------------------

namespace {

using time_point = circuit_breaker::time_point;

circuit_breaker_config machine_config() {
  circuit_breaker_config cfg;
  cfg.failure_threshold = 3;
  cfg.recovery_timeout = 10s;
  cfg.half_open_max_calls = 2;
  return cfg;
}

// An arbitrary origin: the machine must not depend on the clock's epoch.
const time_point t0 = time_point{} + 1h;

} // namespace

TEST_CASE("breaker opens after failure_threshold consecutive failures",
          "[breaker][machine]") {
  circuit_breaker cb{machine_config()};
  CHECK(cb.state(t0) == circuit_state::closed);
  CHECK(cb.allow(t0));
  cb.record_failure(t0);
  cb.record_failure(t0 + 1s);
  CHECK(cb.consecutive_failures() == 2);
  CHECK(cb.state(t0 + 1s) == circuit_state::closed);
  CHECK(cb.allow(t0 + 1s));
  // A success resets the count: two more failures do not open it.
  cb.record_success();
  CHECK(cb.consecutive_failures() == 0);
  cb.record_failure(t0 + 2s);
  cb.record_failure(t0 + 3s);
  CHECK(cb.state(t0 + 3s) == circuit_state::closed);
  CHECK(cb.allow(t0 + 3s));
  // The third consecutive one does.
  cb.record_failure(t0 + 4s);
  CHECK(cb.consecutive_failures() == 3);
  CHECK(cb.state(t0 + 4s) == circuit_state::open);
}

TEST_CASE("an open breaker refuses with the remaining time",
          "[breaker][machine]") {
  circuit_breaker cb{machine_config()};
  for (int i = 0; i < 3; ++i)
    cb.record_failure(t0);
  REQUIRE(cb.state(t0) == circuit_state::open);
  caf::timespan wait{-1};
  CHECK_FALSE(cb.allow(t0, &wait));
  CHECK(wait == caf::timespan{10s});
  CHECK_FALSE(cb.allow(t0 + 2500ms, &wait));
  CHECK(wait == caf::timespan{7500ms});
  CHECK_FALSE(cb.allow(t0 + 10s - 1ns, &wait));
  CHECK(wait == caf::timespan{1ns});
  // Without an out-parameter it refuses all the same.
  CHECK_FALSE(cb.allow(t0 + 9s));
  CHECK(cb.state(t0 + 10s - 1ns) == circuit_state::open);
  CHECK(cb.state(t0 + 10s) == circuit_state::half_open);
}

TEST_CASE("a half-open breaker allows at most half_open_max_calls",
          "[breaker][machine]") {
  circuit_breaker cb{machine_config()};
  for (int i = 0; i < 3; ++i)
    cb.record_failure(t0);
  auto later = t0 + 10s;
  CHECK(cb.allow(later));
  CHECK(cb.state(later) == circuit_state::half_open);
  CHECK(cb.allow(later + 1ms));
  caf::timespan wait{-1};
  CHECK_FALSE(cb.allow(later + 2ms, &wait));
  CHECK(wait == caf::timespan{0});
  CHECK_FALSE(cb.allow(later + 1h));
  CHECK(cb.state(later + 1h) == circuit_state::half_open);
}

TEST_CASE("a success while half-open closes the breaker",
          "[breaker][machine]") {
  circuit_breaker cb{machine_config()};
  for (int i = 0; i < 3; ++i)
    cb.record_failure(t0);
  auto later = t0 + 11s;
  REQUIRE(cb.allow(later));
  cb.record_success();
  CHECK(cb.state(later) == circuit_state::closed);
  CHECK(cb.consecutive_failures() == 0);
  // Closed again: no limit on calls, and it takes a full threshold to open.
  for (int i = 0; i < 10; ++i)
    CHECK(cb.allow(later + 1s));
  cb.record_failure(later + 1s);
  cb.record_failure(later + 1s);
  CHECK(cb.state(later + 1s) == circuit_state::closed);
}

TEST_CASE("a failure while half-open opens the breaker again",
          "[breaker][machine]") {
  circuit_breaker cb{machine_config()};
  for (int i = 0; i < 3; ++i)
    cb.record_failure(t0);
  auto later = t0 + 12s;
  REQUIRE(cb.allow(later));
  // One failure suffices (the threshold is 3).
  cb.record_failure(later);
  CHECK(cb.state(later) == circuit_state::open);
  caf::timespan wait{-1};
  CHECK_FALSE(cb.allow(later + 1s, &wait));
  // The recovery timeout counts from the new failure.
  CHECK(wait == caf::timespan{9s});
  CHECK(cb.state(later + 10s) == circuit_state::half_open);
  CHECK(cb.allow(later + 10s));
  CHECK(cb.allow(later + 10s));
  CHECK_FALSE(cb.allow(later + 10s));
}

TEST_CASE("a threshold of one opens on the first failure",
          "[breaker][machine]") {
  circuit_breaker_config cfg;
  cfg.failure_threshold = 1;
  cfg.recovery_timeout = 1s;
  circuit_breaker cb{cfg};
  CHECK(cb.config().failure_threshold == 1);
  cb.record_failure(t0);
  CHECK_FALSE(cb.allow(t0 + 999ms));
  CHECK(cb.allow(t0 + 1s));
  CHECK(std::string{to_string(circuit_state::half_open)} == "half_open");
}

// -- the breaker actor --------------------------------------------------------

namespace {

struct breaker_fixture : deterministic_fixture {
  target_script_ptr script = std::make_shared<target_script>();
  caf::actor target;
  caf::actor breaker;

  void start(circuit_breaker_config cfg,
             std::shared_ptr<const error_classifier> classifier = nullptr) {
    target = keep(sys.spawn(scripted_target, script));
    breaker
      = keep(spawn_circuit_breaker(sys, target, cfg, std::move(classifier)));
    sched.run();
  }

  caf::expected<int32_t> call(int32_t x) {
    return ask<int32_t>(breaker, x);
  }

  circuit_breaker_stats stats() {
    auto s = ask<circuit_breaker_stats>(breaker, breaker_stats_atom_v);
    REQUIRE(s);
    return *s;
  }

  /// Opens the breaker with `n` connection failures.
  void open_with(uint32_t n) {
    script->always = connection_lost();
    for (uint32_t i = 0; i < n; ++i) {
      auto res = call(static_cast<int32_t>(i));
      REQUIRE_FALSE(res);
      REQUIRE(has_code(res.error(), store_errc::connection_failed));
    }
    script->always = caf::error{};
    REQUIRE(stats().state == circuit_state::open);
  }

  /// Moves the test clock and runs what became due.
  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }
};

circuit_breaker_config actor_config(uint32_t threshold) {
  circuit_breaker_config cfg;
  cfg.failure_threshold = threshold;
  cfg.recovery_timeout = 10s;
  cfg.half_open_max_calls = 1;
  return cfg;
}

} // namespace

TEST_CASE_METHOD(breaker_fixture, "breaker actor passes answers through",
                 "[breaker][actor]") {
  start(actor_config(2));
  auto res = call(7);
  REQUIRE(res);
  CHECK(*res == 1007);
  res = call(-3);
  REQUIRE(res);
  CHECK(*res == 997);
  CHECK(script->received == std::vector<int32_t>{7, -3});
  auto s = stats();
  CHECK(s.state == circuit_state::closed);
  CHECK(s.calls == 2);
  CHECK(s.successes == 2);
  CHECK(s.failures == 0);
  CHECK(s.rejected == 0);
}

TEST_CASE_METHOD(breaker_fixture,
                 "breaker actor opens after consecutive failures and then "
                 "answers at once without calling the target",
                 "[breaker][actor]") {
  start(actor_config(3));
  // Two failures (passed through to the client), then a success: the count
  // starts again.
  script->errors = {connection_lost(), busy()};
  auto res = call(1);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::connection_failed));
  res = call(2);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::storage_busy));
  CHECK(stats().consecutive_failures == 2);
  REQUIRE(call(3));
  CHECK(stats().consecutive_failures == 0);
  CHECK(stats().state == circuit_state::closed);
  // Three in a row open it.
  open_with(3);
  auto s = stats();
  CHECK(s.consecutive_failures == 3);
  CHECK(s.failures == 5);
  CHECK(s.successes == 1);
  // Open: answered at once, the target sees nothing.
  auto calls_before = script->calls;
  res = call(4);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
  REQUIRE(retry_after_ms(res.error()));
  CHECK(*retry_after_ms(res.error()) > 0);
  CHECK(*retry_after_ms(res.error()) == 10000);
  CHECK(script->calls == calls_before);
  // Later, the remaining time shrinks.
  advance(4s);
  res = call(5);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
  REQUIRE(retry_after_ms(res.error()));
  CHECK(*retry_after_ms(res.error()) == 6000);
  CHECK(script->calls == calls_before);
  s = stats();
  CHECK(s.state == circuit_state::open);
  CHECK(s.rejected == 2);
  CHECK(s.calls == 3 + 3 + 2);
}

TEST_CASE_METHOD(breaker_fixture,
                 "breaker actor lets one test call through after the "
                 "recovery timeout; its success closes the breaker",
                 "[breaker][actor]") {
  start(actor_config(2));
  open_with(2);
  auto calls_before = script->calls;
  // Not yet.
  advance(10s - 1ms);
  CHECK(stats().state == circuit_state::open);
  auto res = call(1);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
  CHECK(*retry_after_ms(res.error()) == 1);
  CHECK(script->calls == calls_before);
  // Now: half-open. The target holds its answer, so the test call is still
  // out when the next request comes.
  advance(1ms);
  CHECK(stats().state == circuit_state::half_open);
  script->hold = true;
  auto test_call = self->request(breaker, caf::infinite, int32_t{42});
  sched.run();
  CHECK(script->calls == calls_before + 1);
  CHECK_FALSE(has_answer());
  // A second call while the test call is out is refused.
  res = call(43);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
  CHECK(*retry_after_ms(res.error()) == 0);
  CHECK(script->calls == calls_before + 1);
  // The test call succeeds: its answer reaches the client, the breaker
  // closes.
  script->hold = false;
  self->send(target, caf::ok_atom_v);
  sched.run();
  auto answer = collect<int32_t>(test_call);
  REQUIRE(answer);
  CHECK(*answer == 1042);
  auto s = stats();
  CHECK(s.state == circuit_state::closed);
  CHECK(s.consecutive_failures == 0);
  // Closed: calls flow again.
  res = call(44);
  REQUIRE(res);
  CHECK(*res == 1044);
  CHECK(script->received.back() == 44);
}

TEST_CASE_METHOD(breaker_fixture,
                 "breaker actor re-opens when the test call fails",
                 "[breaker][actor]") {
  start(actor_config(3));
  open_with(3);
  advance(10s);
  CHECK(stats().state == circuit_state::half_open);
  script->errors = {busy()};
  auto res = call(1);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::storage_busy));
  CHECK(stats().state == circuit_state::open);
  // A full recovery timeout from the failed test call.
  auto calls_before = script->calls;
  res = call(2);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
  CHECK(*retry_after_ms(res.error()) == 10000);
  CHECK(script->calls == calls_before);
  advance(10s);
  res = call(3);
  REQUIRE(res);
  CHECK(*res == 1003);
  CHECK(stats().state == circuit_state::closed);
}

TEST_CASE_METHOD(breaker_fixture,
                 "application and permanent errors do not open the breaker",
                 "[breaker][actor]") {
  start(actor_config(2));
  script->always = version_conflict_error();
  for (int i = 0; i < 5; ++i) {
    auto res = call(i);
    REQUIRE_FALSE(res);
    // The refusal reaches the client unchanged.
    CHECK(has_code(res.error(), store_errc::wrong_expected_version));
    CHECK(describe(res.error()) == describe(version_conflict_error()));
  }
  script->always = malformed();
  for (int i = 0; i < 3; ++i) {
    auto res = call(i);
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::malformed_payload));
  }
  auto s = stats();
  CHECK(s.state == circuit_state::closed);
  CHECK(s.failures == 0);
  CHECK(s.successes == 8);
  CHECK(script->calls == 8);
  // An application error between two failures breaks the run of failures
  // (the resource answered).
  script->always = caf::error{};
  script->errors
    = {connection_lost(), version_conflict_error(), connection_lost()};
  for (int i = 0; i < 3; ++i)
    CHECK_FALSE(call(i));
  CHECK(stats().state == circuit_state::closed);
  CHECK(stats().consecutive_failures == 1);
}

TEST_CASE_METHOD(breaker_fixture,
                 "breaker actor uses the classifier it is given",
                 "[breaker][actor]") {
  // This classifier calls version conflicts transient: they now count.
  auto classifier = std::make_shared<error_classifier>();
  classifier->add_code_rule(
    caf::atom("es_store"),
    static_cast<uint8_t>(store_errc::wrong_expected_version),
    error_classification{error_category::transient, error_severity::low, true,
                         "contention"});
  start(actor_config(2), classifier);
  script->always = version_conflict_error();
  CHECK_FALSE(call(1));
  CHECK_FALSE(call(2));
  auto s = stats();
  CHECK(s.state == circuit_state::open);
  CHECK(s.failures == 2);
  auto res = call(3);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::circuit_open));
}

// A target that answers void succeeds like any other: its test call must
// close a half-open breaker, or the test call's slot stays taken and every
// later call is refused.
TEST_CASE_METHOD(breaker_fixture,
                 "a void answer counts as a success and closes a half-open "
                 "breaker",
                 "[breaker][actor]") {
  start(actor_config(1));
  open_with(1);
  advance(10s);
  // The test call is answered with void: a success.
  auto res = ask<void>(breaker, std::string{"ping"});
  CHECK(res);
  auto s = stats();
  CHECK(s.successes == 1);
  CHECK(s.state == circuit_state::closed);
  // So the next call goes through.
  auto next = call(5);
  REQUIRE(next);
  CHECK(*next == 1005);
}

// In the closed state a void success ends the run of failures.
TEST_CASE_METHOD(breaker_fixture, "a void answer resets the run of failures",
                 "[breaker][actor]") {
  start(actor_config(2));
  script->errors = {connection_lost()};
  CHECK_FALSE(call(1));
  CHECK(ask<void>(breaker, std::string{"ping"}));
  script->errors = {connection_lost()};
  CHECK_FALSE(call(2));
  auto s = stats();
  CHECK(s.successes == 1);
  CHECK(s.consecutive_failures == 1);
  CHECK(s.state == circuit_state::closed);
}

// The remaining time is rounded up: with less than a millisecond left the
// breaker must not say "try again in 0 ms", or a client that honours
// retry_after_ms comes back too early and is refused again.
TEST_CASE_METHOD(breaker_fixture,
                 "retry_after_ms never understates the remaining time",
                 "[breaker][actor]") {
  start(actor_config(1));
  open_with(1);
  advance(10s - 500us);
  auto res = call(1);
  REQUIRE_FALSE(res);
  REQUIRE(has_code(res.error(), supervision_errc::circuit_open));
  REQUIRE(retry_after_ms(res.error()));
  CHECK(*retry_after_ms(res.error()) >= 1);
  // Waiting as long as the breaker says lets the next call through.
  advance(std::chrono::milliseconds(*retry_after_ms(res.error())));
  auto next = call(2);
  REQUIRE(next);
  CHECK(*next == 1002);
}
