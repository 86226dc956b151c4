// Operations endpoints for an application or node: /live, /ready, /health
// and /metrics over HTTP (cpp-httplib), fed by the parts the application
// registers: stores, projections, buses, relays, regions, breakers and
// dead-letter queues.
#pragma once

#include "es/actors/aggregate_actor.hpp"
#include "es/bus/event_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/ops/metrics.hpp"
#include "es/projections/coordinator.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace es::ops {

/// Thresholds of the health verdicts.
struct endpoints_config {
  /// A projection this many seconds behind makes `/health` warn (still
  /// 200), and this many fail (503).
  double lag_warning_seconds = 60;
  double lag_critical_seconds = 300;
  /// `/ready` needs every projection at most this many events behind.
  int64_t ready_max_lag_events = 1000;
  /// How long asking one actor (relay, region, breaker) may take; a source
  /// that does not answer in time counts as failing.
  std::chrono::milliseconds ask_timeout{2'000};
};

/// The verdict on one part.
struct check_result {
  std::string name;
  health_level level = health_level::healthy;
  /// What was found, for people ("reachable in 0.4 ms", "lag 75 s").
  std::string detail;
};

/// The verdicts of all parts.
struct health_report {
  /// The worst of the checks.
  health_level level = health_level::healthy;
  std::vector<check_result> checks;

  /// `{"status": "healthy|warnings|errors", "checks": [...]}`.
  std::string to_json() const;
};

/// Collects metrics and health from registered parts and serves them.
/// Register parts before `serve` or while serving; the parts must outlive
/// this object (or its `stop`). Thread-safe.
///
/// - `GET /live`: 200 while the process serves HTTP.
/// - `GET /ready`: 200 when every readiness check passes (stores reachable
///   with the schema this library expects, projections caught up within
///   `ready_max_lag_events`), else 503; the body says which failed.
/// - `GET /health`: the JSON report; 503 when a check fails, 200 with
///   warnings.
/// - `GET /metrics`: Prometheus text format 0.0.4.
class endpoints {
public:
  explicit endpoints(endpoints_config cfg = {});

  /// Stops serving.
  ~endpoints();

  endpoints(const endpoints&) = delete;
  endpoints& operator=(const endpoints&) = delete;

  /// An event store: its counters, read pool and append latency as
  /// metrics; `check_health` for `/health` and `/ready`.
  void watch_store(std::string name, event_store_ptr store);

  /// The projections of `pc`: position, lag, events processed and failed,
  /// dead letters, state; lag thresholds for `/health`, caught-up for
  /// `/ready`.
  void watch_projections(projection_coordinator& pc);

  /// A bus: published, delivered, failed, pending; its breaker.
  void watch_bus(std::string name, event_bus& bus);

  /// An outbox relay: published, failed, pending rows and the oldest's age.
  void watch_relay(std::string name, caf::actor_system& sys,
                   outbox_relay_actor relay);

  /// An aggregate region (`region_stats_atom`): live, spawned, passivated
  /// aggregates and commands routed.
  void watch_region(std::string name, caf::actor_system& sys,
                    caf::actor region);

  /// The aggregate actors sharing `metrics` (`aggregate_options::metrics`):
  /// commands answered and failed, their latency, conflict retries,
  /// recoveries and snapshots.
  void watch_aggregates(std::string name,
                        std::shared_ptr<aggregate_metrics> metrics);

  /// A circuit breaker actor (`breaker_stats_atom`).
  void watch_breaker(std::string name, caf::actor_system& sys,
                     caf::actor breaker);

  /// A dead-letter store: depth per projection.
  void watch_dead_letters(std::string name, dead_letter_store_ptr dlq);

  /// A check of the application's own; with `readiness`, `/ready` needs it
  /// to pass too.
  void add_check(std::string name, std::function<check_result()> fn,
                 bool readiness = false);

  /// Metrics of the application's own, added to every scrape.
  void add_metrics(std::function<void(metrics_page&)> fn);

  /// The current page of `/metrics`.
  std::string metrics_text();

  /// The report of `/health`.
  health_report health();

  /// The report of `/ready`: only readiness checks.
  health_report readiness();

  /// Serves on `host:port` (port 0: any free port, see `port()`) from a
  /// thread of its own. Errors: the address cannot be bound.
  caf::error serve(const std::string& host, uint16_t port);

  /// Parses `HOST:PORT` and serves there.
  caf::error serve(const std::string& host_port);

  /// The port served on (0 when not serving).
  uint16_t port() const;

  /// Stops serving (idempotent).
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace es::ops
