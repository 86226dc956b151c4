// Prometheus text exposition (format 0.0.4): the page `/metrics` serves.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace es::ops {

/// Label names and values of one sample, in order.
using labels = std::vector<std::pair<std::string, std::string>>;

/// Builds one scrape: metric families, each with its HELP and TYPE lines
/// once, followed by its samples in the order they were added. Label
/// values are escaped as the format requires; names must already be valid
/// metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
class metrics_page {
public:
  /// A monotonic counter (`name` should end in `_total`).
  void counter(std::string_view name, std::string_view help, double value,
               const labels& ls = {});

  /// A value that goes up and down.
  void gauge(std::string_view name, std::string_view help, double value,
             const labels& ls = {});

  /// A histogram from cumulative bucket counts: `buckets` holds (upper
  /// bound, observations at or below it) in increasing bound order; the
  /// `+Inf` bucket is `count`.
  void histogram(std::string_view name, std::string_view help,
                 const std::vector<std::pair<double, uint64_t>>& buckets,
                 uint64_t count, double sum, const labels& ls = {});

  /// The page in Prometheus text format.
  std::string text() const;

private:
  struct family {
    std::string type;
    std::string help;
    std::vector<std::string> samples;
  };

  family& get(std::string_view name, std::string_view type,
              std::string_view help);

  std::vector<std::string> order_;
  std::map<std::string, family, std::less<>> families_;
};

/// Renders `ls` as `{a="x",b="y"}` (empty for no labels), escaping
/// backslashes, double quotes and newlines in values.
std::string render_labels(const labels& ls);

} // namespace es::ops
