#include "es/ops/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace es::ops {

namespace {

std::string number(double x) {
  if (std::isnan(x))
    return "NaN";
  if (std::isinf(x))
    return x > 0 ? "+Inf" : "-Inf";
  // Integers print without a fraction; others with the fewest digits that
  // read back as the same double (0.00025, not 0.00025000000000000001).
  char buf[64];
  if (std::fabs(x) < 9.0e15 && x == std::floor(x)) {
    std::snprintf(buf, sizeof(buf), "%.0f", x);
    return buf;
  }
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x)
      break;
  }
  return buf;
}

labels with(const labels& ls, std::string name, std::string value) {
  auto result = ls;
  result.emplace_back(std::move(name), std::move(value));
  return result;
}

} // namespace

std::string render_labels(const labels& ls) {
  if (ls.empty())
    return {};
  std::string result = "{";
  for (size_t i = 0; i < ls.size(); ++i) {
    if (i > 0)
      result += ',';
    result += ls[i].first;
    result += "=\"";
    for (char c : ls[i].second) {
      switch (c) {
        case '\\': result += "\\\\"; break;
        case '"': result += "\\\""; break;
        case '\n': result += "\\n"; break;
        default: result += c;
      }
    }
    result += '"';
  }
  result += '}';
  return result;
}

metrics_page::family& metrics_page::get(std::string_view name,
                                        std::string_view type,
                                        std::string_view help) {
  auto i = families_.find(name);
  if (i == families_.end()) {
    order_.emplace_back(name);
    i = families_
          .emplace(std::string{name},
                   family{std::string{type}, std::string{help}, {}})
          .first;
  }
  return i->second;
}

void metrics_page::counter(std::string_view name, std::string_view help,
                           double value, const labels& ls) {
  get(name, "counter", help)
    .samples.push_back(std::string{name} + render_labels(ls) + ' '
                       + number(value));
}

void metrics_page::gauge(std::string_view name, std::string_view help,
                         double value, const labels& ls) {
  get(name, "gauge", help)
    .samples.push_back(std::string{name} + render_labels(ls) + ' '
                       + number(value));
}

void metrics_page::histogram(
  std::string_view name, std::string_view help,
  const std::vector<std::pair<double, uint64_t>>& buckets, uint64_t count,
  double sum, const labels& ls) {
  auto& f = get(name, "histogram", help);
  std::string base{name};
  for (const auto& [bound, n] : buckets)
    f.samples.push_back(base + "_bucket"
                        + render_labels(with(ls, "le", number(bound))) + ' '
                        + number(static_cast<double>(n)));
  f.samples.push_back(base + "_bucket" + render_labels(with(ls, "le", "+Inf"))
                      + ' ' + number(static_cast<double>(count)));
  f.samples.push_back(base + "_sum" + render_labels(ls) + ' ' + number(sum));
  f.samples.push_back(base + "_count" + render_labels(ls) + ' '
                      + number(static_cast<double>(count)));
}

std::string metrics_page::text() const {
  std::string result;
  for (const auto& name : order_) {
    const auto& f = families_.find(name)->second;
    result += "# HELP " + name + ' ' + f.help + '\n';
    result += "# TYPE " + name + ' ' + f.type + '\n';
    for (const auto& s : f.samples) {
      result += s;
      result += '\n';
    }
  }
  return result;
}

} // namespace es::ops
