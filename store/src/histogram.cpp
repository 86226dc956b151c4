#include "es/store/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace es {

histogram::histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  if (bounds_.size() > max_buckets)
    bounds_.resize(max_buckets);
}

std::vector<double> histogram::latency_bounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

std::vector<double> histogram::size_bounds() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
}

void histogram::observe(double x) noexcept {
  auto i = static_cast<size_t>(
    std::lower_bound(bounds_.begin(), bounds_.end(), x) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(std::llround(x * 1e6), std::memory_order_relaxed);
}

histogram_snapshot histogram::snapshot() const {
  histogram_snapshot result;
  result.bounds = bounds_;
  uint64_t total = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    result.cumulative.push_back(total);
  }
  total += counts_[bounds_.size()].load(std::memory_order_relaxed);
  result.count = total;
  result.sum
    = static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
  return result;
}

} // namespace es
