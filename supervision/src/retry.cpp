#include "es/supervision/retry.hpp"

#include <algorithm>
#include <cmath>

namespace es {

caf::timespan backoff_delay(const retry_config& cfg, uint32_t attempt,
                            double u) {
  using ns = std::chrono::duration<double, std::nano>;
  auto base = ns{cfg.initial_delay}.count()
              * std::pow(cfg.exponential_base, static_cast<double>(attempt));
  auto cap = ns{cfg.max_delay}.count();
  base = std::min(base, cap);
  auto jitter = std::clamp(cfg.jitter, 0.0, 1.0);
  auto factor = 1.0 + jitter * (2.0 * std::clamp(u, 0.0, 1.0) - 1.0);
  auto delay = std::min(base * factor, cap);
  return caf::timespan{static_cast<int64_t>(std::max(delay, 0.0))};
}

caf::timespan backoff_delay(const retry_config& cfg, uint32_t attempt,
                            std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist{0.0, 1.0};
  return backoff_delay(cfg, attempt, dist(rng));
}

} // namespace es
