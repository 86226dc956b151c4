// The circuit breaker: stops calling a failing resource for a while.
#pragma once

#include "es/supervision/classifier.hpp"

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>

namespace es {

enum class circuit_state : uint8_t { closed, open, half_open };

const char* to_string(circuit_state x);

struct circuit_breaker_config {
  /// Consecutive failures that open the breaker.
  uint32_t failure_threshold = 5;
  /// How long an open breaker refuses calls before letting test calls
  /// through (half-open).
  caf::timespan recovery_timeout = std::chrono::seconds(30);
  /// Test calls allowed at once while half-open; one success closes the
  /// breaker, one failure opens it again.
  uint32_t half_open_max_calls = 1;
  /// The breaker actor gives up on a call after this long and counts it as
  /// a failure (`sec::request_timeout`), so a target that never answers
  /// cannot hold a test call forever.
  caf::timespan call_timeout = std::chrono::seconds(30);
};

/// The breaker's state machine, driven by the caller's clock. Not
/// thread-safe: it lives inside one actor (or behind a lock).
class circuit_breaker {
public:
  using time_point = caf::actor_clock::time_point;

  explicit circuit_breaker(circuit_breaker_config cfg = {}) : cfg_(cfg) {
    // nop
  }

  /// Asks to make a call at `now`. Returns whether it may; when it may not,
  /// `retry_after` (if given) receives the time until a test call is
  /// allowed.
  bool allow(time_point now, caf::timespan* retry_after = nullptr);

  /// Reports the outcome of an allowed call.
  void record_success();
  void record_failure(time_point now);

  circuit_state state(time_point now) const;

  uint32_t consecutive_failures() const noexcept {
    return failures_;
  }

  const circuit_breaker_config& config() const noexcept {
    return cfg_;
  }

private:
  circuit_breaker_config cfg_;
  circuit_state state_ = circuit_state::closed;
  uint32_t failures_ = 0;
  uint32_t half_open_calls_ = 0;
  time_point opened_at_{};
};

/// Counters of a breaker actor.
struct circuit_breaker_stats {
  circuit_state state = circuit_state::closed;
  uint32_t consecutive_failures = 0;
  uint64_t calls = 0;
  uint64_t successes = 0;
  uint64_t failures = 0;
  /// Calls answered at once because the breaker was open.
  uint64_t rejected = 0;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, circuit_breaker_stats& x) {
    return f(caf::meta::type_name("es.circuit_breaker_stats"), x.state,
             x.consecutive_failures, x.calls, x.successes, x.failures,
             x.rejected);
  }
};

/// Spawns a breaker in front of `target`: every request to it is forwarded
/// to `target` and the answer passed back, while the breaker is closed or
/// half-open. An error answer counts as a failure when `classifier` calls it
/// transient or infrastructure (a refusal by business rules does not mean
/// the resource is failing); any other answer is a success. While open, it
/// answers at once with `supervision_errc::circuit_open`, whose context says
/// how many milliseconds remain (`retry_after_ms`). `(breaker_stats_atom)`
/// returns `circuit_breaker_stats`. Dynamically typed: it forwards requests
/// of any protocol (cast a typed target with `caf::actor_cast`).
caf::actor spawn_circuit_breaker(
  caf::actor_system& sys, caf::actor target, circuit_breaker_config cfg = {},
  std::shared_ptr<const error_classifier> classifier = nullptr);

} // namespace es
