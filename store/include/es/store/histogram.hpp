// A histogram with fixed buckets that many threads can feed without a lock:
// append latencies and group sizes for the metrics endpoint.
#pragma once

#include <caf/meta/type_name.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace es {

/// What a histogram holds at one moment.
struct histogram_snapshot {
  /// Upper bounds of the buckets, increasing.
  std::vector<double> bounds;
  /// Observations at or below each bound (cumulative, as Prometheus wants).
  std::vector<uint64_t> cumulative;
  uint64_t count = 0;
  double sum = 0;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, histogram_snapshot& x) {
    return f(caf::meta::type_name("es.histogram_snapshot"), x.bounds,
             x.cumulative, x.count, x.sum);
  }
};

/// Counts observations into buckets. Thread-safe; `observe` is a few
/// relaxed atomic adds.
class histogram {
public:
  static constexpr size_t max_buckets = 24;

  /// `bounds`: increasing upper bounds, at most `max_buckets` (the rest are
  /// ignored).
  explicit histogram(std::vector<double> bounds);

  /// Bounds for latencies in seconds, 100 us to 10 s.
  static std::vector<double> latency_bounds();

  /// Bounds for sizes of groups and batches, 1 to 4096.
  static std::vector<double> size_bounds();

  void observe(double x) noexcept;

  histogram_snapshot snapshot() const;

private:
  std::vector<double> bounds_;
  /// Per bucket (not cumulative); the last one past the highest bound.
  std::array<std::atomic<uint64_t>, max_buckets + 1> counts_{};
  /// The sum in millionths, so it adds atomically.
  std::atomic<int64_t> sum_micro_{0};
};

} // namespace es
