// error_tracker: counters, the one-minute rate, the policy's limits, health
// and callbacks, all driven by explicit timestamps.
#include "es/store/errors.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/error.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using namespace es;
using namespace std::chrono_literals;

namespace {

const timestamp t0 = timestamp{} + std::chrono::hours(24 * 365 * 50);

/// An error_info for `err` as a subscription would record it.
error_info info_for(const error_tracker& tracker, const caf::error& err,
                    timestamp at, int64_t position, bool dlq) {
  error_info info;
  info.event_id = uuid::time_ordered();
  info.event_type = "ItemAdded";
  info.global_position = position;
  info.message = describe(err);
  info.classification = tracker.classify(err);
  info.sent_to_dlq = dlq;
  info.at = at;
  return info;
}

caf::error busy() {
  return make_store_error(store_errc::storage_busy, "locked");
}

caf::error malformed() {
  return make_store_error(store_errc::malformed_payload, "bad JSON");
}

caf::error corrupt() {
  return make_store_error(store_errc::corrupt_database, "bad page");
}

error_policy policy(error_strategy s = error_strategy::retry_then_dlq) {
  error_policy p;
  p.strategy = s;
  return p;
}

} // namespace

TEST_CASE("record updates totals, categories, types and DLQ counts",
          "[error_tracker]") {
  error_tracker tracker{policy(), nullptr};
  CHECK(tracker.policy().strategy == error_strategy::retry_then_dlq);
  tracker.record(info_for(tracker, busy(), t0, 1, true));
  tracker.record(info_for(tracker, busy(), t0 + 1s, 2, false));
  tracker.record(info_for(tracker, malformed(), t0 + 2s, 3, true));
  tracker.record(info_for(tracker, corrupt(), t0 + 3s, 4, false));
  auto s = tracker.stats(t0 + 3s);
  CHECK(s.total == 4);
  CHECK(s.sent_to_dlq == 2);
  CHECK(s.skipped == 2);
  CHECK(s.by_category.at("transient") == 2);
  CHECK(s.by_category.at("permanent") == 1);
  CHECK(s.by_category.at("infrastructure") == 1);
  CHECK(s.by_category.count("application") == 0);
  CHECK(s.by_type.at("es_store.storage_busy") == 2);
  CHECK(s.by_type.at("es_store.malformed_payload") == 1);
  CHECK(s.by_type.at("es_store.corrupt_database") == 1);
  CHECK(s.by_type.size() == 3);
  REQUIRE(s.recent.size() == 4);
  CHECK(s.recent.front().global_position == 1);
  CHECK(s.recent.back().global_position == 4);
  CHECK(s.recent.back().classification.category
        == error_category::infrastructure);
}

TEST_CASE("recent errors are bounded by max_recent_errors, newest kept",
          "[error_tracker]") {
  auto p = policy();
  p.max_recent_errors = 3;
  error_tracker tracker{p, nullptr};
  for (int64_t i = 1; i <= 7; ++i)
    tracker.record(
      info_for(tracker, busy(), t0 + std::chrono::seconds(i), i, false));
  auto s = tracker.stats(t0 + 7s);
  CHECK(s.total == 7);
  REQUIRE(s.recent.size() == 3);
  CHECK(s.recent[0].global_position == 5);
  CHECK(s.recent[1].global_position == 6);
  CHECK(s.recent[2].global_position == 7);
}

TEST_CASE("rate_per_minute counts only the last 60 seconds",
          "[error_tracker]") {
  error_tracker tracker{policy(), nullptr};
  CHECK(tracker.stats(t0).rate_per_minute == 0.0);
  tracker.record(info_for(tracker, busy(), t0, 1, false));
  tracker.record(info_for(tracker, busy(), t0 + 10s, 2, false));
  tracker.record(info_for(tracker, busy(), t0 + 30s, 3, false));
  CHECK(tracker.stats(t0 + 30s).rate_per_minute == 3.0);
  // Exactly one minute old still counts; older does not.
  CHECK(tracker.stats(t0 + 60s).rate_per_minute == 3.0);
  CHECK(tracker.stats(t0 + 61s).rate_per_minute == 2.0);
  CHECK(tracker.stats(t0 + 85s).rate_per_minute == 1.0);
  CHECK(tracker.stats(t0 + 91s).rate_per_minute == 0.0);
  // A burst later.
  for (int64_t i = 0; i < 5; ++i)
    tracker.record(info_for(
      tracker, busy(), t0 + 200s + std::chrono::seconds(i), 10 + i, false));
  CHECK(tracker.stats(t0 + 210s).rate_per_minute == 5.0);
  // The totals are not windowed.
  CHECK(tracker.stats(t0 + 1h).total == 8);
  CHECK(tracker.stats(t0 + 1h).rate_per_minute == 0.0);
}

TEST_CASE("should_continue stops after max_errors_before_stop",
          "[error_tracker]") {
  auto p = policy(error_strategy::continue_on_error);
  p.max_errors_before_stop = 3;
  error_tracker tracker{p, nullptr};
  CHECK(tracker.should_continue());
  tracker.record(info_for(tracker, busy(), t0, 1, false));
  tracker.record(info_for(tracker, busy(), t0, 2, false));
  CHECK(tracker.should_continue());
  tracker.record(info_for(tracker, busy(), t0, 3, false));
  CHECK_FALSE(tracker.should_continue());
  auto h = tracker.health(t0);
  CHECK(h.level == health_level::errors);
  CHECK_FALSE(h.healthy());
}

TEST_CASE("should_continue: no limit when max_errors_before_stop is 0",
          "[error_tracker]") {
  error_tracker tracker{policy(error_strategy::continue_on_error), nullptr};
  for (int64_t i = 0; i < 100; ++i)
    tracker.record(info_for(tracker, busy(), t0, i, false));
  CHECK(tracker.should_continue());
}

TEST_CASE("the stop strategy stops after the first error", "[error_tracker]") {
  error_tracker tracker{policy(error_strategy::stop), nullptr};
  CHECK(tracker.should_continue());
  CHECK(tracker.health(t0).healthy());
  tracker.record(info_for(tracker, busy(), t0, 1, false));
  CHECK_FALSE(tracker.should_continue());
  auto h = tracker.health(t0);
  CHECK(h.level == health_level::errors);
  REQUIRE_FALSE(h.errors.empty());
  CHECK(h.errors.front().find("stopped") != std::string::npos);
}

TEST_CASE("health: healthy, warnings for dead letters, errors for the rate",
          "[error_tracker]") {
  auto p = policy();
  p.error_rate_threshold = 3;
  error_tracker tracker{p, nullptr};
  auto h = tracker.health(t0);
  CHECK(h.level == health_level::healthy);
  CHECK(h.healthy());
  CHECK(h.warnings.empty());
  CHECK(h.errors.empty());
  // One event in the DLQ: a warning.
  tracker.record(info_for(tracker, busy(), t0, 1, true));
  h = tracker.health(t0);
  CHECK(h.level == health_level::warnings);
  CHECK_FALSE(h.healthy());
  REQUIRE(h.warnings.size() == 1);
  CHECK(h.warnings.front().find("1 events in the dead-letter queue")
        != std::string::npos);
  CHECK(h.errors.empty());
  // Three errors per minute is not above the threshold of three.
  tracker.record(info_for(tracker, busy(), t0 + 1s, 2, true));
  tracker.record(info_for(tracker, busy(), t0 + 2s, 3, true));
  CHECK(tracker.health(t0 + 2s).level == health_level::warnings);
  // A fourth within the minute is.
  tracker.record(info_for(tracker, busy(), t0 + 3s, 4, true));
  h = tracker.health(t0 + 3s);
  CHECK(h.level == health_level::errors);
  REQUIRE(h.errors.size() == 1);
  CHECK(h.errors.front().find("error rate") != std::string::npos);
  // When the burst has aged out of the window, only the warning is left.
  h = tracker.health(t0 + 2min);
  CHECK(h.level == health_level::warnings);
  CHECK(h.errors.empty());
}

TEST_CASE("health warns about skipped events", "[error_tracker]") {
  error_tracker tracker{policy(error_strategy::continue_on_error), nullptr};
  tracker.record(info_for(tracker, malformed(), t0, 1, false));
  auto h = tracker.health(t0);
  CHECK(h.level == health_level::warnings);
  REQUIRE(h.warnings.size() == 1);
  CHECK(h.warnings.front().find("skipped") != std::string::npos);
}

TEST_CASE("on_severity fires for errors at or above the severity",
          "[error_tracker]") {
  error_tracker tracker{policy(), nullptr};
  std::vector<int64_t> high;
  std::vector<int64_t> critical;
  tracker.on_severity(error_severity::high, [&](const error_info& x) {
    high.push_back(x.global_position);
  });
  tracker.on_severity(error_severity::critical, [&](const error_info& x) {
    critical.push_back(x.global_position);
  });
  tracker.record(info_for(tracker, busy(), t0, 1, false));      // medium
  tracker.record(info_for(tracker, malformed(), t0, 2, false)); // high
  tracker.record(info_for(tracker, corrupt(), t0, 3, false));   // critical
  CHECK(high == std::vector<int64_t>{2, 3});
  CHECK(critical == std::vector<int64_t>{3});
}

TEST_CASE("on_category fires for errors of that category only",
          "[error_tracker]") {
  error_tracker tracker{policy(), nullptr};
  std::vector<int64_t> transient;
  std::vector<int64_t> permanent;
  tracker.on_category(error_category::transient, [&](const error_info& x) {
    transient.push_back(x.global_position);
  });
  tracker.on_category(error_category::permanent, [&](const error_info& x) {
    permanent.push_back(x.global_position);
    CHECK(x.message.find("malformed_payload") != std::string::npos);
  });
  tracker.record(info_for(tracker, busy(), t0, 1, false));
  tracker.record(info_for(tracker, malformed(), t0, 2, true));
  tracker.record(info_for(tracker, corrupt(), t0, 3, false));
  tracker.record(info_for(tracker, busy(), t0, 4, false));
  CHECK(transient == std::vector<int64_t>{1, 4});
  CHECK(permanent == std::vector<int64_t>{2});
}

TEST_CASE("the tracker classifies with the classifier it is given",
          "[error_tracker]") {
  auto classifier = std::make_shared<error_classifier>();
  classifier->add_code_rule(
    caf::atom("es_store"), static_cast<uint8_t>(store_errc::storage_busy),
    {error_category::application, error_severity::low, false, "custom"});
  error_tracker tracker{policy(), classifier};
  CHECK(tracker.classify(busy()).category == error_category::application);
  error_tracker plain{policy(), nullptr};
  CHECK(plain.classify(busy()).category == error_category::transient);
}

TEST_CASE("strategy and health names", "[error_tracker]") {
  CHECK(std::string{to_string(error_strategy::retry_then_dlq)}
        == "retry_then_dlq");
  CHECK(std::string{to_string(health_level::warnings)} == "warnings");
  error_policy defaults;
  CHECK(defaults.strategy == error_strategy::retry_then_dlq);
  CHECK(defaults.retry_only_retryable);
}
