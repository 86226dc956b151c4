#include "es/ops/endpoints.hpp"

#include "es/actors/type_ids.hpp"
#include "es/bus/type_ids.hpp"
#include "es/projections/subscription.hpp"
#include "es/store/errors.hpp"
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/scoped_actor.hpp>

#include "rapidjson.hpp"
#include <httplib.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

namespace es::ops {

namespace {

health_level worst(health_level a, health_level b) {
  return static_cast<uint8_t>(a) >= static_cast<uint8_t>(b) ? a : b;
}

std::string fixed(double x, int digits = 1) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

double as_double(uint64_t x) {
  return static_cast<double>(x);
}

double as_double(int64_t x) {
  return static_cast<double>(x);
}

/// 0 closed, 1 half-open, 2 open: the breakers' gauge.
double breaker_gauge(circuit_state x) {
  switch (x) {
    case circuit_state::closed: return 0;
    case circuit_state::half_open: return 1;
    case circuit_state::open: return 2;
  }
  return 0;
}

check_result breaker_check(std::string name, circuit_state x) {
  check_result result{std::move(name), health_level::healthy,
                      std::string{"breaker "} + to_string(x)};
  if (x == circuit_state::open)
    result.level = health_level::errors;
  else if (x == circuit_state::half_open)
    result.level = health_level::warnings;
  return result;
}

void add_histogram(metrics_page& page, std::string_view name,
                   std::string_view help, const histogram_snapshot& h,
                   const labels& ls) {
  std::vector<std::pair<double, uint64_t>> buckets;
  for (size_t i = 0; i < h.bounds.size() && i < h.cumulative.size(); ++i)
    buckets.emplace_back(h.bounds[i], h.cumulative[i]);
  page.histogram(name, help, buckets, h.count, h.sum, ls);
}

/// Asks `target` for `T` with `atom`, waiting up to `timeout`.
template <class T, class Handle, class Atom>
caf::expected<T> ask(caf::actor_system& sys, const Handle& target, Atom atom,
                     std::chrono::milliseconds timeout) {
  if (!target)
    return make_store_error(store_errc::invalid_argument, "no actor");
  caf::scoped_actor self{sys};
  caf::expected<T> result{caf::error{}};
  self
    ->request(caf::actor_cast<caf::actor>(target), caf::timespan{timeout}, atom)
    .receive(
      [&](T& x) {
        result = std::move(x);
      },
      [&](caf::error& err) {
        result = std::move(err);
      });
  return result;
}

} // namespace

std::string health_report::to_json() const {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.StartObject();
  w.Key("status");
  w.String(to_string(level));
  w.Key("checks");
  w.StartArray();
  for (const auto& c : checks) {
    w.StartObject();
    w.Key("name");
    w.String(c.name.c_str());
    w.Key("status");
    w.String(to_string(c.level));
    w.Key("detail");
    w.String(c.detail.c_str());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return buf.GetString();
}

/// One registered part.
struct source {
  std::function<void(metrics_page&)> metrics;
  /// Checks for /health.
  std::function<std::vector<check_result>()> health;
  /// Checks for /ready (none: the part does not gate readiness).
  std::function<std::vector<check_result>()> readiness;
};

struct endpoints::impl {
  endpoints_config cfg;
  std::mutex mtx;
  std::vector<std::shared_ptr<source>> sources;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  uint16_t port = 0;

  void add(source s) {
    std::lock_guard guard{mtx};
    sources.push_back(std::make_shared<source>(std::move(s)));
  }

  std::vector<std::shared_ptr<source>> all() {
    std::lock_guard guard{mtx};
    return sources;
  }
};

endpoints::endpoints(endpoints_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = cfg;
}

endpoints::~endpoints() {
  stop();
}

void endpoints::watch_store(std::string name, event_store_ptr store) {
  source s;
  labels ls{{"store", name}};
  s.metrics = [store, ls](metrics_page& page) {
    auto m = store->metrics();
    page.counter("es_store_append_requests_total",
                 "Append requests handled (each of a group counts).",
                 as_double(m.append_requests), ls);
    page.counter("es_store_events_appended_total",
                 "Events written (replays and refusals excluded).",
                 as_double(m.events_appended), ls);
    page.counter("es_store_transactions_total", "Write transactions committed.",
                 as_double(m.transactions), ls);
    page.counter("es_store_version_conflicts_total",
                 "Append requests refused with wrong_expected_version.",
                 as_double(m.version_conflicts), ls);
    page.counter("es_store_deduplicated_total",
                 "Append requests answered as idempotent replays.",
                 as_double(m.deduplicated), ls);
    page.counter("es_store_decided_again_total",
                 "Groups decided again under the position lock.",
                 as_double(m.decided_again), ls);
    page.counter("es_store_reads_total", "Read calls (read_stream, read_all).",
                 as_double(m.reads), ls);
    page.counter("es_store_events_read_total", "Events returned by reads.",
                 as_double(m.events_read), ls);
    page.gauge("es_store_read_connections_open",
               "Read connections open (PostgreSQL).",
               as_double(m.read_connections_open), ls);
    page.gauge("es_store_read_connections_in_use",
               "Read connections in use (PostgreSQL).",
               as_double(m.read_connections_in_use), ls);
    page.gauge("es_store_read_connections_waiting",
               "Readers waiting for a connection (PostgreSQL).",
               as_double(m.read_connections_waiting), ls);
    page.counter("es_store_read_waits_timed_out_total",
                 "Reads refused with pool_exhausted.",
                 as_double(m.read_waits_timed_out), ls);
    add_histogram(page, "es_store_append_seconds",
                  "Append call latency as callers saw it.", m.append_seconds,
                  ls);
    add_histogram(page, "es_store_group_size",
                  "Append requests per committed transaction.", m.group_size,
                  ls);
    auto head = store->head_position();
    page.gauge("es_store_up", "1 when the store answered this scrape.",
               head ? 1 : 0, ls);
    if (head)
      page.gauge("es_store_head_position",
                 "Highest global position in the store.", as_double(*head), ls);
  };
  auto check = [store, name] {
    auto h = store->check_health();
    check_result result{"store " + name, health_level::healthy, {}};
    if (h.healthy()) {
      result.detail = "reachable in " + fixed(h.latency_ms, 2)
                      + " ms, schema version "
                      + std::to_string(h.schema_version);
    } else {
      result.level = health_level::errors;
      result.detail = h.problem;
    }
    return std::vector<check_result>{std::move(result)};
  };
  s.health = check;
  s.readiness = check;
  impl_->add(std::move(s));
}

void endpoints::watch_projections(projection_coordinator& pc) {
  source s;
  auto* coordinator = &pc;
  s.metrics = [coordinator](metrics_page& page) {
    for (const auto& st : coordinator->status()) {
      labels ls{{"projection", st.name}};
      page.gauge("es_projection_position",
                 "Last global position the projection accounted for.",
                 as_double(st.position), ls);
      page.gauge("es_projection_head", "Head of the feed as last seen.",
                 as_double(st.head), ls);
      page.gauge("es_projection_lag_events", "Events behind the head.",
                 as_double(st.lag_events), ls);
      page.gauge("es_projection_lag_seconds",
                 "Age of the last handled event while lagging.", st.lag_seconds,
                 ls);
      page.counter("es_projection_events_processed_total", "Events handled.",
                   as_double(st.events_processed), ls);
      page.counter("es_projection_events_failed_total",
                   "Handler failures (each attempt counts).",
                   as_double(st.errors.total), ls);
      page.counter("es_projection_dead_lettered_total",
                   "Events sent to the dead-letter queue.",
                   as_double(st.errors.sent_to_dlq), ls);
      page.counter("es_projection_holes_skipped_total",
                   "Holes in the feed stepped over.",
                   as_double(st.holes_skipped), ls);
      page.counter("es_projection_unknown_events_total",
                   "Events of types the registry does not know.",
                   as_double(st.unknown_events), ls);
      for (auto x : {projection_state::starting, projection_state::catching_up,
                     projection_state::live, projection_state::paused,
                     projection_state::stopped, projection_state::error,
                     projection_state::standby}) {
        auto with_state = ls;
        with_state.emplace_back("state", to_string(x));
        page.gauge("es_projection_state",
                   "1 for the state the projection is in.",
                   st.state == x ? 1 : 0, with_state);
      }
    }
  };
  auto cfg = impl_->cfg;
  s.health = [coordinator, cfg] {
    std::vector<check_result> result;
    for (const auto& st : coordinator->status()) {
      check_result c{"projection " + st.name, health_level::healthy, {}};
      c.detail = std::string{to_string(st.state)} + ", position "
                 + std::to_string(st.position) + ", lag "
                 + std::to_string(st.lag_events) + " events / "
                 + fixed(st.lag_seconds) + " s";
      if (st.lag_seconds >= cfg.lag_critical_seconds)
        c.level = health_level::errors;
      else if (st.lag_seconds >= cfg.lag_warning_seconds)
        c.level = health_level::warnings;
      if (st.state == projection_state::error)
        c.level = health_level::errors;
      c.level = worst(c.level, st.health.level);
      for (const auto& e : st.health.errors)
        c.detail += "; " + e;
      for (const auto& w : st.health.warnings)
        c.detail += "; " + w;
      if (!st.detail.empty())
        c.detail += "; " + st.detail;
      result.push_back(std::move(c));
    }
    return result;
  };
  s.readiness = [coordinator, cfg] {
    std::vector<check_result> result;
    for (const auto& st : coordinator->status()) {
      check_result c{"projection " + st.name, health_level::healthy,
                     "lag " + std::to_string(st.lag_events) + " events"};
      if (st.state == projection_state::error
          || st.lag_events > cfg.ready_max_lag_events)
        c.level = health_level::errors;
      result.push_back(std::move(c));
    }
    return result;
  };
  impl_->add(std::move(s));
}

void endpoints::watch_bus(std::string name, event_bus& bus) {
  source s;
  auto* b = &bus;
  labels ls{{"bus", name}};
  s.metrics = [b, ls](metrics_page& page) {
    auto st = b->stats();
    page.counter("es_bus_published_total", "Events published.",
                 as_double(st.events_published), ls);
    page.counter("es_bus_delivered_total", "Deliveries finished.",
                 as_double(st.deliveries_completed), ls);
    page.counter("es_bus_handled_total", "Handler invocations.",
                 as_double(st.handlers_invoked), ls);
    page.counter("es_bus_failed_total", "Handler errors.",
                 as_double(st.handler_errors), ls);
    page.gauge("es_bus_pending", "Deliveries handed out and not finished.",
               as_double(st.deliveries_in_flight), ls);
    page.gauge("es_bus_publishes_waiting",
               "Publishes held back by a full subscriber queue.",
               as_double(st.publishes_waiting), ls);
    page.gauge("es_bus_subscribers", "Subscribers.", as_double(st.subscribers),
               ls);
    page.counter("es_bus_publish_failures_total",
                 "Publishes that reached the broker and failed.",
                 as_double(st.publish_failures), ls);
    page.counter("es_bus_publishes_rejected_total",
                 "Publishes refused by the open breaker.",
                 as_double(st.publishes_rejected), ls);
    page.gauge("es_bus_breaker_state",
               "Breaker around the broker: 0 closed, 1 half-open, 2 open.",
               breaker_gauge(st.broker_circuit), ls);
    page.counter("es_bus_consumer_restarts_total", "Consumer actors restarted.",
                 as_double(st.consumer_restarts), ls);
    page.counter("es_bus_broker_reconnects_total",
                 "Broker connections opened again.",
                 as_double(st.broker_reconnects), ls);
  };
  s.health = [b, name] {
    return std::vector<check_result>{
      breaker_check("bus " + name, b->stats().broker_circuit)};
  };
  impl_->add(std::move(s));
}

void endpoints::watch_relay(std::string name, caf::actor_system& sys,
                            outbox_relay_actor relay) {
  source s;
  auto* system = &sys;
  auto cfg = impl_->cfg;
  labels ls{{"relay", name}};
  s.metrics = [system, relay, ls, cfg](metrics_page& page) {
    auto st
      = ask<outbox_relay_status>(*system, relay, stats_atom_v, cfg.ask_timeout);
    page.gauge("es_relay_up", "1 when the relay answered this scrape.",
               st ? 1 : 0, ls);
    if (!st)
      return;
    page.counter("es_relay_published_total", "Outbox rows published.",
                 as_double(st->published), ls);
    page.counter("es_relay_publish_failures_total", "Publishes that failed.",
                 as_double(st->publish_failures), ls);
    page.counter("es_relay_given_up_total", "Rows given up after max_retries.",
                 as_double(st->given_up), ls);
    page.gauge("es_outbox_pending", "Outbox rows not published yet.",
               as_double(st->pending), ls);
    page.gauge("es_outbox_failed", "Outbox rows marked failed.",
               as_double(st->failed), ls);
    page.gauge("es_outbox_oldest_pending_seconds",
               "Age of the oldest row not published yet.",
               as_double(st->oldest_waiting_ms) / 1000.0, ls);
  };
  s.health = [system, relay, name, cfg] {
    auto st
      = ask<outbox_relay_status>(*system, relay, stats_atom_v, cfg.ask_timeout);
    check_result c{"relay " + name, health_level::healthy, {}};
    if (!st) {
      c.level = health_level::errors;
      c.detail = "no answer: " + describe(st.error());
      return std::vector<check_result>{c};
    }
    auto age = as_double(st->oldest_waiting_ms) / 1000.0;
    c.detail = std::to_string(st->pending) + " pending, oldest " + fixed(age)
               + " s, " + std::to_string(st->failed) + " failed";
    if (age >= cfg.lag_critical_seconds)
      c.level = health_level::errors;
    else if (age >= cfg.lag_warning_seconds || st->failed > 0)
      c.level = health_level::warnings;
    if (!st->last_error.empty())
      c.detail += "; last error: " + st->last_error;
    return std::vector<check_result>{c};
  };
  impl_->add(std::move(s));
}

void endpoints::watch_region(std::string name, caf::actor_system& sys,
                             caf::actor region) {
  source s;
  auto* system = &sys;
  auto timeout = impl_->cfg.ask_timeout;
  labels ls{{"region", name}};
  s.metrics = [system, region, ls, timeout](metrics_page& page) {
    auto st = ask<region_stats>(*system, region, region_stats_atom_v, timeout);
    if (!st)
      return;
    page.gauge("es_region_aggregates_live", "Aggregate actors alive.",
               as_double(st->live), ls);
    page.counter("es_region_aggregates_spawned_total",
                 "Aggregate actors started.", as_double(st->spawned), ls);
    page.counter("es_region_aggregates_passivated_total",
                 "Aggregate actors passivated.", as_double(st->passivated), ls);
    page.counter("es_region_aggregates_crashed_total",
                 "Aggregate actors that ended with an error.",
                 as_double(st->crashed), ls);
    page.counter("es_region_commands_routed_total", "Commands routed.",
                 as_double(st->commands_routed), ls);
    page.counter("es_region_commands_stashed_total",
                 "Commands held while their aggregate passivated.",
                 as_double(st->commands_stashed), ls);
  };
  impl_->add(std::move(s));
}

void endpoints::watch_aggregates(std::string name,
                                 std::shared_ptr<aggregate_metrics> metrics) {
  source s;
  labels ls{{"aggregates", name}};
  s.metrics = [metrics, ls](metrics_page& page) {
    auto& m = *metrics;
    page.counter("es_aggregate_commands_total", "Commands answered.",
                 as_double(m.commands.load()), ls);
    page.counter("es_aggregate_commands_failed_total",
                 "Commands answered with an error (refusals included).",
                 as_double(m.commands_failed.load()), ls);
    page.counter("es_aggregate_conflict_retries_total",
                 "Commands run again after a version conflict.",
                 as_double(m.conflict_retries.load()), ls);
    add_histogram(page, "es_aggregate_command_seconds",
                  "From a command's arrival at its aggregate to its answer.",
                  m.command_seconds.snapshot(), ls);
    page.counter("es_aggregate_recoveries_total",
                 "Aggregates loaded from the store.",
                 as_double(m.recoveries.load()), ls);
    page.counter("es_aggregate_events_replayed_total",
                 "Events replayed while loading.",
                 as_double(m.events_replayed.load()), ls);
    page.counter("es_aggregate_snapshots_loaded_total", "Snapshots used.",
                 as_double(m.snapshots_loaded.load()), ls);
    page.counter("es_aggregate_snapshots_written_total", "Snapshots written.",
                 as_double(m.snapshots_written.load()), ls);
  };
  impl_->add(std::move(s));
}

void endpoints::watch_breaker(std::string name, caf::actor_system& sys,
                              caf::actor breaker) {
  source s;
  auto* system = &sys;
  auto timeout = impl_->cfg.ask_timeout;
  labels ls{{"breaker", name}};
  s.metrics = [system, breaker, ls, timeout](metrics_page& page) {
    auto st = ask<circuit_breaker_stats>(*system, breaker, breaker_stats_atom_v,
                                         timeout);
    if (!st)
      return;
    page.gauge("es_breaker_state", "0 closed, 1 half-open, 2 open.",
               breaker_gauge(st->state), ls);
    page.counter("es_breaker_calls_total", "Calls through the breaker.",
                 as_double(st->calls), ls);
    page.counter("es_breaker_failures_total", "Calls that failed.",
                 as_double(st->failures), ls);
    page.counter("es_breaker_rejected_total", "Calls refused while open.",
                 as_double(st->rejected), ls);
  };
  s.health = [system, breaker, name, timeout] {
    auto st = ask<circuit_breaker_stats>(*system, breaker, breaker_stats_atom_v,
                                         timeout);
    if (!st)
      return std::vector<check_result>{{"breaker " + name, health_level::errors,
                                        "no answer: " + describe(st.error())}};
    return std::vector<check_result>{
      breaker_check("breaker " + name, st->state)};
  };
  impl_->add(std::move(s));
}

void endpoints::watch_dead_letters(std::string name,
                                   dead_letter_store_ptr dlq) {
  source s;
  labels ls{{"dlq", name}};
  s.metrics = [dlq, ls](metrics_page& page) {
    auto st = dlq->stats();
    if (!st)
      return;
    for (const auto& [projection, n] : st->by_projection) {
      auto with = ls;
      with.emplace_back("projection", projection);
      page.gauge("es_dlq_depth", "Unresolved dead letters.", as_double(n),
                 with);
    }
    page.gauge("es_dlq_unresolved", "Unresolved dead letters in all.",
               as_double(st->failed + st->retrying), ls);
    double age = 0;
    if (st->oldest_unresolved)
      age = std::chrono::duration<double>(now_utc() - *st->oldest_unresolved)
              .count();
    page.gauge("es_dlq_oldest_unresolved_seconds",
               "Age of the oldest unresolved dead letter.", age, ls);
  };
  s.health = [dlq, name] {
    auto st = dlq->stats();
    check_result c{"dlq " + name, health_level::healthy, {}};
    if (!st) {
      c.level = health_level::errors;
      c.detail = describe(st.error());
    } else {
      auto open = st->failed + st->retrying;
      c.detail = std::to_string(open) + " unresolved";
      if (open > 0)
        c.level = health_level::warnings;
    }
    return std::vector<check_result>{c};
  };
  impl_->add(std::move(s));
}

void endpoints::add_check(std::string name, std::function<check_result()> fn,
                          bool readiness) {
  source s;
  auto run = [name, fn] {
    auto c = fn();
    if (c.name.empty())
      c.name = name;
    return std::vector<check_result>{std::move(c)};
  };
  s.health = run;
  if (readiness)
    s.readiness = run;
  impl_->add(std::move(s));
}

void endpoints::add_metrics(std::function<void(metrics_page&)> fn) {
  source s;
  s.metrics = std::move(fn);
  impl_->add(std::move(s));
}

std::string endpoints::metrics_text() {
  metrics_page page;
  for (const auto& s : impl_->all())
    if (s->metrics)
      s->metrics(page);
  return page.text();
}

health_report endpoints::health() {
  health_report result;
  for (const auto& s : impl_->all())
    if (s->health)
      for (auto& c : s->health()) {
        result.level = worst(result.level, c.level);
        result.checks.push_back(std::move(c));
      }
  return result;
}

health_report endpoints::readiness() {
  health_report result;
  for (const auto& s : impl_->all())
    if (s->readiness)
      for (auto& c : s->readiness()) {
        // Readiness is yes or no: warnings do not hold it back.
        if (c.level == health_level::warnings)
          c.level = health_level::healthy;
        result.level = worst(result.level, c.level);
        result.checks.push_back(std::move(c));
      }
  return result;
}

caf::error endpoints::serve(const std::string& host, uint16_t port) {
  stop();
  auto server = std::make_unique<httplib::Server>();
  // httplib's default also sets SO_REUSEPORT, which would let a second
  // process share the port unnoticed: a taken port must be an error.
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->Get("/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("live\n", "text/plain");
  });
  server->Get("/ready",
              [this](const httplib::Request&, httplib::Response& res) {
                auto report = readiness();
                res.status = report.level == health_level::errors ? 503 : 200;
                res.set_content(report.to_json(), "application/json");
              });
  server->Get("/health",
              [this](const httplib::Request&, httplib::Response& res) {
                auto report = health();
                res.status = report.level == health_level::errors ? 503 : 200;
                res.set_content(report.to_json(), "application/json");
              });
  server->Get("/metrics",
              [this](const httplib::Request&, httplib::Response& res) {
                res.set_content(metrics_text(), "text/plain; version=0.0.4");
              });
  int bound = port;
  if (port == 0)
    bound = server->bind_to_any_port(host);
  else if (!server->bind_to_port(host, port))
    bound = -1;
  if (bound <= 0)
    return make_store_error(store_errc::invalid_argument,
                            "cannot serve HTTP on " + host + ":"
                              + std::to_string(port));
  auto* raw = server.get();
  auto ended = std::make_shared<std::atomic<bool>>(false);
  impl_->thread = std::thread{[raw, ended] {
    raw->listen_after_bind();
    *ended = true;
  }};
  // httplib's stop() does nothing before the loop runs, and the loop would
  // then never end: serve returns only once it runs (or gave up).
  while (!raw->is_running() && !*ended)
    std::this_thread::yield();
  impl_->server = std::move(server);
  impl_->port = static_cast<uint16_t>(bound);
  return caf::none;
}

caf::error endpoints::serve(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size())
    return make_store_error(store_errc::invalid_argument,
                            "expected HOST:PORT, got '" + host_port + "'");
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(host_port.substr(colon + 1), &used);
    if (used != host_port.size() - colon - 1)
      port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    return make_store_error(store_errc::invalid_argument,
                            "bad port in '" + host_port + "'");
  return serve(host_port.substr(0, colon), static_cast<uint16_t>(port));
}

uint16_t endpoints::port() const {
  return impl_->port;
}

void endpoints::stop() {
  if (impl_->server)
    impl_->server->stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
  impl_->server.reset();
  impl_->port = 0;
}

} // namespace es::ops
