// spawn_retrying on the test_coordinator: retries wait for their backoff on
// the test clock, exhaustion and non-retryable errors reach the client.
#include "es/supervision/actors.hpp"
#include "es/supervision/classifier.hpp"

#include "supervision_fixture.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

/// 100 ms, 200 ms, 400 ms, ... without jitter, so the test knows exactly
/// when each retry is due.
retry_config exact_config(uint32_t max_retries) {
  retry_config cfg;
  cfg.max_retries = max_retries;
  cfg.initial_delay = 100ms;
  cfg.max_delay = 10s;
  cfg.exponential_base = 2.0;
  cfg.jitter = 0.0;
  return cfg;
}

struct retrying_fixture : deterministic_fixture {
  target_script_ptr script = std::make_shared<target_script>();
  caf::actor target;
  caf::actor retrying;

  void start(retry_config cfg,
             std::shared_ptr<const error_classifier> classifier = nullptr) {
    target = keep(sys.spawn(scripted_target, script));
    retrying = keep(spawn_retrying(sys, target, cfg, std::move(classifier)));
    sched.run();
  }

  /// Moves the test clock and runs what became due.
  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }
};

} // namespace

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor passes a first-time answer through",
                 "[retrying]") {
  start(exact_config(3));
  auto res = ask<int32_t>(retrying, int32_t{5});
  REQUIRE(res);
  CHECK(*res == 1005);
  CHECK(script->calls == 1);
  // Void answers pass through as well.
  auto done = ask<void>(retrying, std::string{"x"});
  CHECK(done);
  CHECK(script->calls == 2);
}

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor retries a retryable error after each backoff "
                 "and delivers the final answer",
                 "[retrying]") {
  start(exact_config(3));
  script->errors = {busy(), busy()};
  auto h = self->request(retrying, caf::infinite, int32_t{7});
  sched.run();
  // First attempt failed; nothing more happens without time passing.
  CHECK(script->calls == 1);
  CHECK_FALSE(has_answer());
  sched.run();
  CHECK(script->calls == 1);
  // First backoff: 100 ms.
  advance(99ms);
  CHECK(script->calls == 1);
  CHECK_FALSE(has_answer());
  advance(1ms);
  CHECK(script->calls == 2);
  CHECK_FALSE(has_answer());
  // Second backoff: 200 ms.
  advance(199ms);
  CHECK(script->calls == 2);
  CHECK_FALSE(has_answer());
  advance(1ms);
  CHECK(script->calls == 3);
  // The third attempt succeeded.
  auto res = collect<int32_t>(h);
  REQUIRE(res);
  CHECK(*res == 1007);
  // The same request went to the target each time.
  CHECK(script->received == std::vector<int32_t>{7, 7, 7});
  // Nothing is left over.
  advance(1min);
  CHECK(script->calls == 3);
  CHECK_FALSE(has_answer());
}

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor gives up after max_retries retries",
                 "[retrying]") {
  start(exact_config(2));
  script->always = busy();
  auto h = self->request(retrying, caf::infinite, int32_t{1});
  sched.run();
  CHECK(script->calls == 1);
  advance(100ms);
  CHECK(script->calls == 2);
  CHECK_FALSE(has_answer());
  advance(200ms);
  CHECK(script->calls == 3);
  auto res = collect<int32_t>(h);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::retries_exhausted));
  auto text = describe(res.error());
  CHECK(text.find("3 attempts") != std::string::npos);
  CHECK(text.find("storage_busy") != std::string::npos);
  // No attempt after giving up.
  advance(1min);
  CHECK(script->calls == 3);
}

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor passes a non-retryable error through at once",
                 "[retrying]") {
  start(exact_config(3));
  script->errors = {malformed(), version_conflict_error()};
  auto res = ask<int32_t>(retrying, int32_t{1});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::malformed_payload));
  CHECK(script->calls == 1);
  res = ask<int32_t>(retrying, int32_t{2});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::wrong_expected_version));
  CHECK(script->calls == 2);
  advance(1min);
  CHECK(script->calls == 2);
  CHECK_FALSE(has_answer());
}

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor keeps concurrent requests apart",
                 "[retrying]") {
  start(exact_config(3));
  // The first call fails once, the second answers at once.
  script->errors = {busy()};
  auto first = self->request(retrying, caf::infinite, int32_t{1});
  auto second = self->request(retrying, caf::infinite, int32_t{2});
  sched.run();
  CHECK(script->calls == 2);
  auto res2 = collect<int32_t>(second);
  REQUIRE(res2);
  CHECK(*res2 == 1002);
  CHECK_FALSE(has_answer());
  advance(100ms);
  auto res1 = collect<int32_t>(first);
  REQUIRE(res1);
  CHECK(*res1 == 1001);
  CHECK(script->received == std::vector<int32_t>{1, 2, 1});
}

TEST_CASE_METHOD(retrying_fixture,
                 "retrying actor asks its classifier what to retry",
                 "[retrying]") {
  // Version conflicts become retryable; storage_busy does not.
  auto classifier = std::make_shared<error_classifier>();
  classifier->add_code_rule(
    caf::atom("es_store"),
    static_cast<uint8_t>(store_errc::wrong_expected_version),
    error_classification{error_category::transient, error_severity::low, true,
                         "contention"});
  classifier->add_code_rule(
    caf::atom("es_store"), static_cast<uint8_t>(store_errc::storage_busy),
    error_classification{error_category::permanent, error_severity::high, false,
                         "never retry"});
  start(exact_config(3), classifier);
  script->errors = {version_conflict_error()};
  auto h = self->request(retrying, caf::infinite, int32_t{3});
  sched.run();
  CHECK(script->calls == 1);
  CHECK_FALSE(has_answer());
  advance(100ms);
  auto res = collect<int32_t>(h);
  REQUIRE(res);
  CHECK(*res == 1003);
  script->errors = {busy()};
  auto busy_res = ask<int32_t>(retrying, int32_t{4});
  REQUIRE_FALSE(busy_res);
  CHECK(has_code(busy_res.error(), store_errc::storage_busy));
  CHECK(script->calls == 3);
}
