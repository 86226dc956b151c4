// What the orders commands share: options, opening the store and the views,
// starting the projections, and printing.
#pragma once

#include "es/projections/coordinator.hpp"
#include "es/store/event_store.hpp"
#include "es/store/outbox.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include "order.hpp"
#include "views.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace orders {

struct orders_config : caf::actor_system_config {
  int64_t orders = 2000;
  int64_t clients = 16;
  std::string store = "sqlite:./data/orders.db";
  std::string views;
  std::string sync = "full";
  uint64_t seed = 0;
  int64_t max_live = 10000;
  std::string progress = "auto";
  bool fail_cancellations = false;
  std::string projection;
  std::string status;
  std::string by;
  int64_t limit = 50;
  int64_t older_than_days = 30;
  /// run: a broker URL (Redis, RabbitMQ); events then go through the
  /// store's outbox, a relay and the broker to the projections instead of
  /// the in-process bus.
  std::string bus;
  /// run: the bus's name at the broker (Redis: `<prefix>:stream`;
  /// RabbitMQ: the exchange).
  std::string bus_prefix = "orders";
  /// run: serve /live, /ready, /health and /metrics on HOST:PORT.
  std::string http;
  /// run --http: keep serving after the workload until SIGINT or SIGTERM.
  bool keep_serving = false;
  /// The library's log lines on stderr: text or json.
  std::string log_format = "text";
  /// Traces to an OpenTelemetry collector: http://HOST:PORT (OTLP/HTTP).
  std::string otlp;

  orders_config();
};

caf::expected<es::event_store_ptr> open_store(const orders_config& cfg,
                                              bool must_exist);

/// Whether `--store` names a PostgreSQL database (`postgres:DSN`).
bool on_postgres(const orders_config& cfg);

/// The outbox of the store's database.
caf::expected<es::outbox_ptr> open_outbox(const orders_config& cfg);

/// Whether the views exist (their SQLite file; always on PostgreSQL, where
/// they live in the store's database unless `--views` names a file).
bool views_exist(const orders_config& cfg);

/// The views database: `--views`, or next to a SQLite store
/// ("orders.db" -> "orders-views.db"), or the PostgreSQL store's own
/// database, or a temporary file for the memory store (removed by
/// `remove_temporary_views`).
std::string views_path(const orders_config& cfg);

/// Opens the views; with `must_exist`, fails on a missing file.
caf::expected<views> open_views(const orders_config& cfg, bool must_exist);

void remove_temporary_views(const orders_config& cfg);

/// Adds both projections to `pc`: live from `bus` if valid, otherwise by
/// following the store.
caf::error start_projections(es::projection_coordinator& pc, const views& v,
                             const es::event_store_ptr& store,
                             es::bus_actor bus, bool fail_cancellations);

std::string money(int64_t cents);

/// A progress bar on a terminal, lines at each tenth otherwise, or nothing.
class progress_display {
public:
  progress_display(std::string mode, uint64_t total, std::string unit);

  void set_total(uint64_t total);

  /// Shows `done` of the total; `extra` follows the count.
  void update(uint64_t done, const std::string& extra = {});

  void finish(uint64_t done, const std::string& extra = {});

private:
  std::string mode_;
  uint64_t total_;
  std::string unit_;
  int last_step_ = 0;
};

void print_status_counts(const std::map<es::uuid, summary_row>& rows);

/// One line per projection (position, lag, processed, errors, dead
/// letters, state) and the dead-letter totals.
void print_projections(const std::vector<es::projection_status>& all,
                       const es::dead_letter_stats& dlq);

void print_dead_letter_totals(const es::dead_letter_stats& dlq);

} // namespace orders

namespace caf {
class actor_system;
} // namespace caf

namespace orders {

// The commands (main.cpp and admin.cpp). Each returns the exit code: 0 on
// success, 1 on a failure or a difference found, 2 on bad input.

int run(caf::actor_system& sys, const orders_config& cfg);
int verify(const orders_config& cfg);
int show(const orders_config& cfg, const std::string& id);
int status(const orders_config& cfg);
int dlq(caf::actor_system& sys, const orders_config& cfg,
        const std::vector<std::string>& args);
int rebuild(caf::actor_system& sys, const orders_config& cfg,
            const std::string& projection);

} // namespace orders
