// Measurement helpers shared by the esbench scenarios.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace es::bench {

using clock = std::chrono::steady_clock;

/// One measured run, printed as a table row and as one JSON line.
struct run_result {
  std::string backend;
  std::string scenario;
  int64_t events = 0;
  int writers = 0;
  int batch = 0;
  double seconds = 0;
  /// Per-call latencies in microseconds.
  std::vector<double> latencies_us;
  /// Free-form note for the table (not part of the JSON line).
  std::string note;

  double events_per_sec() const {
    return seconds > 0 ? static_cast<double>(events) / seconds : 0;
  }

  double percentile(double p) const {
    if (latencies_us.empty())
      return 0;
    auto sorted = latencies_us;
    std::sort(sorted.begin(), sorted.end());
    auto idx = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
    return sorted[idx];
  }
};

/// Returns the run with the median throughput.
run_result median_run(std::vector<run_result> runs);

/// Prints a result's JSON line on stdout.
void print_json(const run_result& r);

/// Prints the table header and rows, and the ratio of each non-raw row to
/// the raw row of the same scenario.
void print_table(const std::vector<run_result>& rows);

/// Returns a JSON payload of about 300 bytes, like the event rows the raw
/// baselines use.
std::string sample_payload(int64_t n);

inline double micros_since(clock::time_point start) {
  return std::chrono::duration<double, std::micro>(clock::now() - start)
    .count();
}

} // namespace es::bench
