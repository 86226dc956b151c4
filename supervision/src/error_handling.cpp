#include "es/supervision/error_handling.hpp"

#include <algorithm>

namespace es {

const char* to_string(error_strategy x) {
  switch (x) {
    case error_strategy::stop: return "stop";
    case error_strategy::continue_on_error: return "continue";
    case error_strategy::retry_then_continue: return "retry_then_continue";
    case error_strategy::retry_then_dlq: return "retry_then_dlq";
    case error_strategy::dlq_only: return "dlq_only";
  }
  return "?";
}

const char* to_string(health_level x) {
  switch (x) {
    case health_level::healthy: return "healthy";
    case health_level::warnings: return "warnings";
    case health_level::errors: return "errors";
  }
  return "?";
}

error_tracker::error_tracker(error_policy policy,
                             std::shared_ptr<const error_classifier> classifier)
  : policy_(std::move(policy)), classifier_(std::move(classifier)) {
  if (!classifier_)
    classifier_ = std::make_shared<error_classifier>();
}

error_classification error_tracker::classify(const caf::error& err) const {
  return classifier_->classify(err);
}

void error_tracker::record(error_info info) {
  ++stats_.total;
  if (info.sent_to_dlq)
    ++stats_.sent_to_dlq;
  else if (!info.stopped)
    ++stats_.skipped;
  ++stats_.by_category[to_string(info.classification.category)];
  auto type = info.message.substr(0, info.message.find(':'));
  ++stats_.by_type[type];
  window_.push_back(info.at);
  while (!window_.empty()
         && window_.front() < info.at - std::chrono::minutes(1))
    window_.pop_front();
  stats_.recent.push_back(info);
  while (stats_.recent.size() > policy_.max_recent_errors)
    stats_.recent.erase(stats_.recent.begin());
  if (policy_.strategy == error_strategy::stop)
    stopped_ = true;
  for (auto& [sev, fn] : by_severity_)
    if (info.classification.severity >= sev)
      fn(info);
  for (auto& [cat, fn] : by_category_)
    if (info.classification.category == cat)
      fn(info);
}

bool error_tracker::should_continue() const {
  if (stopped_)
    return false;
  return policy_.max_errors_before_stop == 0
         || stats_.total < policy_.max_errors_before_stop;
}

void error_tracker::on_severity(error_severity severity, callback fn) {
  by_severity_.emplace_back(severity, std::move(fn));
}

void error_tracker::on_category(error_category category, callback fn) {
  by_category_.emplace_back(category, std::move(fn));
}

double error_tracker::rate(timestamp now) const {
  auto since = now - std::chrono::minutes(1);
  auto n = std::count_if(window_.begin(), window_.end(), [&](timestamp t) {
    return t >= since;
  });
  return static_cast<double>(n);
}

error_stats error_tracker::stats(timestamp now) const {
  auto result = stats_;
  result.rate_per_minute = rate(now);
  return result;
}

health_status error_tracker::health(timestamp now) const {
  health_status h;
  auto r = rate(now);
  if (!should_continue())
    h.errors.push_back("stopped after " + std::to_string(stats_.total)
                       + " errors");
  if (policy_.error_rate_threshold > 0 && r > policy_.error_rate_threshold)
    h.errors.push_back("error rate " + std::to_string(r)
                       + "/min above threshold "
                       + std::to_string(policy_.error_rate_threshold));
  if (stats_.sent_to_dlq > 0)
    h.warnings.push_back(std::to_string(stats_.sent_to_dlq)
                         + " events in the dead-letter queue");
  if (stats_.skipped > 0)
    h.warnings.push_back(std::to_string(stats_.skipped)
                         + " events skipped after errors");
  if (!h.errors.empty())
    h.level = health_level::errors;
  else if (!h.warnings.empty())
    h.level = health_level::warnings;
  return h;
}

} // namespace es
