// What a subscription does with handler errors, and what it counts.
#pragma once

#include "es/store/event.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/retry.hpp"

#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace es {

/// What to do when a handler fails on an event.
enum class error_strategy : uint8_t {
  /// Stop the subscription (it reports the error state).
  stop,
  /// Log, count and go on with the next event.
  continue_on_error,
  /// Retry with backoff; when retries are used up, go on.
  retry_then_continue,
  /// Retry with backoff; when retries are used up, put the event in the
  /// dead-letter queue and go on (the default).
  retry_then_dlq,
  /// Put the event in the dead-letter queue at once and go on.
  dlq_only,
};

const char* to_string(error_strategy x);

/// The error policy of one subscription.
struct error_policy {
  error_strategy strategy = error_strategy::retry_then_dlq;
  retry_config retry;
  /// Stop after this many errors in total (0: no limit).
  uint64_t max_errors_before_stop = 0;
  /// Errors per minute above which health reports errors (0: no
  /// threshold).
  double error_rate_threshold = 0;
  /// Recent errors kept for inspection.
  size_t max_recent_errors = 50;
  /// Errors classified as not retryable skip the retries and go straight to
  /// the strategy's final step.
  bool retry_only_retryable = true;
};

/// One handler failure as recorded.
struct error_info {
  uuid event_id;
  std::string event_type;
  int64_t global_position = 0;
  std::string message;
  error_classification classification;
  uint32_t attempts = 1;
  bool sent_to_dlq = false;
  timestamp at;
  /// The subscription stopped at this event: it was neither dead-lettered
  /// nor skipped.
  bool stopped = false;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, error_info& x) {
    return f(caf::meta::type_name("es.error_info"), x.event_id, x.event_type,
             x.global_position, x.message, x.classification, x.attempts,
             x.sent_to_dlq, x.at, x.stopped);
  }
};

/// Error counters of one subscription.
struct error_stats {
  uint64_t total = 0;
  uint64_t sent_to_dlq = 0;
  uint64_t skipped = 0;
  std::map<std::string, uint64_t> by_category;
  /// By error category and code, for example "es_store.timeout".
  std::map<std::string, uint64_t> by_type;
  /// Errors in the last 60 seconds.
  double rate_per_minute = 0;
  std::vector<error_info> recent;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, error_stats& x) {
    return f(caf::meta::type_name("es.error_stats"), x.total, x.sent_to_dlq,
             x.skipped, x.by_category, x.by_type, x.rate_per_minute, x.recent);
  }
};

enum class health_level : uint8_t { healthy, warnings, errors };

const char* to_string(health_level x);

/// A health verdict with its reasons.
struct health_status {
  health_level level = health_level::healthy;
  std::vector<std::string> warnings;
  std::vector<std::string> errors;

  bool healthy() const noexcept {
    return level == health_level::healthy;
  }

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, health_status& x) {
    return f(caf::meta::type_name("es.health_status"), x.level, x.warnings,
             x.errors);
  }
};

/// Keeps the error statistics of one subscription and applies its policy's
/// limits. Not thread-safe (one per subscription actor).
class error_tracker {
public:
  using callback = std::function<void(const error_info&)>;

  error_tracker(error_policy policy,
                std::shared_ptr<const error_classifier> classifier);

  const error_policy& policy() const noexcept {
    return policy_;
  }

  /// Classifies `err`.
  error_classification classify(const caf::error& err) const;

  /// Records a final failure (after retries, if any) at time `now`.
  void record(error_info info);

  /// Whether the subscription may go on (limits not exceeded and strategy
  /// not `stop` after an error).
  bool should_continue() const;

  /// Calls `fn` for each recorded error of at least `severity`.
  void on_severity(error_severity severity, callback fn);

  /// Calls `fn` for each recorded error of `category`.
  void on_category(error_category category, callback fn);

  error_stats stats(timestamp now) const;

  health_status health(timestamp now) const;

private:
  double rate(timestamp now) const;

  error_policy policy_;
  std::shared_ptr<const error_classifier> classifier_;
  error_stats stats_;
  std::deque<timestamp> window_;
  std::vector<std::pair<error_severity, callback>> by_severity_;
  std::vector<std::pair<error_category, callback>> by_category_;
  bool stopped_ = false;
};

} // namespace es
