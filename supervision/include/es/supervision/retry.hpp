// Retries with exponential backoff and jitter.
#pragma once

#include "es/supervision/errors.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <thread>
#include <type_traits>

namespace es {

/// How to retry: `max_retries` attempts after the first; the n-th retry
/// (n from 0) waits `initial_delay * exponential_base^n`, capped at
/// `max_delay`, then varied by up to +-`jitter` (a fraction) so many
/// retriers do not fire together, and capped again.
struct retry_config {
  uint32_t max_retries = 3;
  caf::timespan initial_delay = std::chrono::milliseconds(100);
  caf::timespan max_delay = std::chrono::seconds(30);
  double exponential_base = 2.0;
  double jitter = 0.1;
};

/// The delay before retry number `attempt` (from 0). `u` in [0, 1) picks the
/// jitter: 0.5 means none, 0 the lowest, towards 1 the highest.
caf::timespan backoff_delay(const retry_config& cfg, uint32_t attempt,
                            double u);

/// The delay before retry number `attempt` with jitter from `rng`.
caf::timespan backoff_delay(const retry_config& cfg, uint32_t attempt,
                            std::mt19937_64& rng);

/// What a retry helper did.
struct retry_stats {
  uint32_t attempts = 0;
  uint32_t failures = 0;
  caf::timespan total_delay{0};
};

/// Calls `op` until it succeeds, fails with an error `retryable` rejects,
/// or `cfg.max_retries` retries are used up; sleeps with backoff in between
/// (for threads, not actors: actors use `spawn_retrying`). `op` returns
/// `caf::error` or `caf::expected<T>`. Exhaustion returns
/// `supervision_errc::retries_exhausted` with the last error's text.
template <class F>
auto retry(const retry_config& cfg, F op,
           const std::function<bool(const caf::error&)>& retryable,
           retry_stats* stats = nullptr) -> std::invoke_result_t<F&> {
  using result_type = std::invoke_result_t<F&>;
  std::mt19937_64 rng{std::random_device{}()};
  retry_stats local;
  auto& st = stats != nullptr ? *stats : local;
  for (uint32_t attempt = 0;; ++attempt) {
    ++st.attempts;
    result_type res = op();
    caf::error err;
    if constexpr (std::is_same_v<result_type, caf::error>)
      err = res;
    else if (!res)
      err = res.error();
    if (!err)
      return res;
    ++st.failures;
    if (!retryable(err))
      return res;
    if (attempt >= cfg.max_retries)
      return caf::make_error(supervision_errc::retries_exhausted,
                             "gave up after " + std::to_string(st.attempts)
                               + " attempts: " + describe(err));
    auto delay = backoff_delay(cfg, attempt, rng);
    st.total_delay += delay;
    std::this_thread::sleep_for(delay);
  }
}

} // namespace es
