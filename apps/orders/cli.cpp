#include "cli.hpp"

#include "es/brokers/brokers.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#ifdef ORDERS_WITH_POSTGRES
#  include "es/postgres/postgres.hpp"
#endif
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/supervision/classifier.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace orders {

namespace {

/// `err` (same category and code) with its description prefixed by
/// `what`, so that a damaged file is named: the store and the views are
/// both SQLite files and fail with the same words.
caf::error in_file_context(const caf::error& err, const std::string& what) {
  auto desc = es::error_description(err);
  return caf::error{
    err.code(), err.category(),
    caf::make_message(what + ": " + (desc.empty() ? es::describe(err) : desc))};
}

#ifdef ORDERS_WITH_POSTGRES
es::postgres_config pg_config(const orders_config& cfg) {
  es::postgres_config pc;
  pc.dsn = cfg.store.substr(9);
  pc.application_name = "orders";
  // With a broker, every append writes the outbox rows the relay publishes.
  pc.outbox = !cfg.bus.empty();
  return pc;
}
#endif

} // namespace

orders_config::orders_config() {
  opt_group{custom_options_, "global"}
    .add(orders, "orders", "new orders to create in a run (default 2000)")
    .add(clients, "clients",
         "concurrent client actors sending commands (default 16)")
    .add(store, "store",
         "event store: sqlite:PATH (default sqlite:./data/orders.db), "
         "postgres:DSN (a libpq connection string or URI) or memory")
    .add(views, "views",
         "read-model database (SQLite file; default: next to a SQLite "
         "store, orders.db -> orders-views.db, or in the PostgreSQL "
         "store's database)")
    .add(sync, "sync",
         "SQLite durability: full (fsync per commit, default), normal, off")
    .add(seed, "seed", "workload seed (default: from the clock)")
    .add(max_live, "max-live",
         "most aggregate actors alive at once before passivating the "
         "least recently used (default 10000)")
    .add(progress, "progress",
         "progress display: auto (bar on a terminal, lines otherwise), "
         "bar, lines, off")
    .add(fail_cancellations, "fail-cancellations",
         "make the customer_stats projection fail on every OrderCancelled "
         "event, so they go to the dead-letter queue")
    .add(projection, "projection", "dlq list/replay: only this projection")
    .add(status, "status",
         "dlq list: only entries in this state (failed, retrying, resolved)")
    .add(by, "by", "dlq resolve: who resolves (default: $USER)")
    .add(limit, "limit", "dlq list: most entries shown (default 50)")
    .add(older_than_days, "older-than-days",
         "dlq purge: delete resolved entries older than this (default 30)");
  opt_group{custom_options_, "global"}
    .add(bus, "bus",
         "run, status: a broker URL (redis://[:password@]host:port/db, "
         "amqp://user:password@host:port/vhost or kafka://host:port,...); "
         "the events go through the store's outbox, a relay and the broker "
         "to the projections")
    .add(http, "http",
         "run: serve /live, /ready, /health and /metrics on HOST:PORT "
         "(port 0: any free port, printed)")
    .add(log_format, "log-format",
         "the library's log lines on stderr: text (default) or json, one "
         "object per line with level, module, message and context fields")
    .add(otlp, "otlp",
         "send traces to an OpenTelemetry collector at http://HOST:PORT "
         "(OTLP/HTTP with JSON)")
    .add(keep_serving, "keep-serving",
         "run --http: keep serving the endpoints after the workload until "
         "SIGINT or SIGTERM")
    .add(bus_prefix, "bus-prefix",
         "run --bus: the Redis stream prefix, the RabbitMQ exchange or the "
         "Kafka topic prefix (default orders)");
  set("scheduler.max-threads", 2);
  es::add_projections_module(*this);
  es::add_broker_modules(*this);
  add_message_types<caf::id_block::orders>();
}

caf::expected<es::event_store_ptr> open_store(const orders_config& cfg,
                                              bool must_exist) {
  if (cfg.store == "memory") {
    if (must_exist)
      return es::make_store_error(es::store_errc::invalid_argument,
                                  "the memory store keeps nothing between "
                                  "runs: use --store=sqlite:PATH");
    return es::make_memory_event_store();
  }
  if (on_postgres(cfg)) {
#ifdef ORDERS_WITH_POSTGRES
    auto store = es::make_postgres_event_store(pg_config(cfg));
    if (!store)
      return in_file_context(store.error(), "event store " + cfg.store);
    return store;
#else
    return es::make_store_error(es::store_errc::invalid_argument,
                                "this build has no PostgreSQL support");
#endif
  }
  if (cfg.store.rfind("sqlite:", 0) != 0)
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--store must be sqlite:PATH, postgres:DSN or "
                                "memory");
  es::sqlite_config sc;
  sc.path = cfg.store.substr(7);
  if (cfg.sync == "normal")
    sc.synchronous = es::sqlite_sync::normal;
  else if (cfg.sync == "off")
    sc.synchronous = es::sqlite_sync::off;
  else if (cfg.sync != "full")
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--sync must be full, normal or off");
  // With a broker, every append writes the outbox rows the relay publishes.
  sc.outbox = !cfg.bus.empty();
  std::filesystem::path path{sc.path};
  if (must_exist && !std::filesystem::exists(path))
    return es::make_store_error(es::store_errc::invalid_argument,
                                "no event store at " + sc.path
                                  + " (run `orders run` first)");
  if (path.has_parent_path())
    std::filesystem::create_directories(path.parent_path());
  auto store = es::make_sqlite_event_store(sc);
  if (!store)
    return in_file_context(store.error(), "event store " + sc.path);
  return store;
}

bool on_postgres(const orders_config& cfg) {
  return cfg.store.rfind("postgres:", 0) == 0;
}

caf::expected<es::outbox_ptr> open_outbox(const orders_config& cfg) {
#ifdef ORDERS_WITH_POSTGRES
  if (on_postgres(cfg))
    return es::make_postgres_outbox(pg_config(cfg));
#endif
  if (cfg.store.rfind("sqlite:", 0) != 0)
    return es::make_store_error(es::store_errc::invalid_argument,
                                "the outbox needs a sqlite:PATH or "
                                "postgres:DSN store");
  return es::make_sqlite_outbox(cfg.store.substr(7));
}

bool views_exist(const orders_config& cfg) {
  if (on_postgres(cfg) && cfg.views.empty())
    return true;
  return std::filesystem::exists(views_path(cfg));
}

std::string views_path(const orders_config& cfg) {
  if (!cfg.views.empty())
    return cfg.views;
  if (on_postgres(cfg))
    return "the store's PostgreSQL database";
  if (cfg.store.rfind("sqlite:", 0) == 0) {
    std::filesystem::path store{cfg.store.substr(7)};
    auto name = store.stem().string() + "-views"
                + (store.has_extension() ? store.extension().string()
                                         : std::string{".db"});
    return (store.parent_path() / name).string();
  }
  return (std::filesystem::temp_directory_path()
          / ("orders-views-" + std::to_string(getpid()) + ".db"))
    .string();
}

caf::expected<views> open_views(const orders_config& cfg, bool must_exist) {
#ifdef ORDERS_WITH_POSTGRES
  if (on_postgres(cfg) && cfg.views.empty()) {
    auto db = es::make_postgres_read_model_db(pg_config(cfg));
    if (!db)
      return in_file_context(db.error(), "read-model database " + cfg.store);
    return open_views(*db, make_registry(), cfg.fail_cancellations);
  }
#endif
  auto path = views_path(cfg);
  if (must_exist && !std::filesystem::exists(path))
    return es::make_store_error(es::store_errc::invalid_argument,
                                "no read-model database at " + path
                                  + " (run `orders run` first)");
  std::filesystem::path p{path};
  if (p.has_parent_path())
    std::filesystem::create_directories(p.parent_path());
  auto v = open_views(path, make_registry(), cfg.fail_cancellations);
  if (!v)
    return in_file_context(v.error(), "read-model database " + path);
  return v;
}

void remove_temporary_views(const orders_config& cfg) {
  if (!cfg.views.empty() || cfg.store != "memory")
    return;
  auto path = views_path(cfg);
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix, ec);
}

caf::error start_projections(es::projection_coordinator& pc, const views& v,
                             const es::event_store_ptr& store,
                             es::bus_actor bus, bool fail_cancellations) {
  es::subscription_config base;
  base.store = store;
  base.bus = std::move(bus);
  base.poll_interval = std::chrono::milliseconds(50);
  // Transient failures (a busy database) are retried quickly a few times.
  base.errors.retry.max_retries = 3;
  base.errors.retry.initial_delay = std::chrono::milliseconds(20);
  base.errors.retry.max_delay = std::chrono::milliseconds(500);
  if (auto err = pc.add(v.summary, base))
    return err;
  auto customers = base;
  if (fail_cancellations) {
    // The injected failure is a bug, not bad luck: retrying cannot help, so
    // the classifier sends it to the dead-letter queue at once.
    auto classifier = std::make_shared<es::error_classifier>();
    es::error_classification c;
    c.category = es::error_category::application;
    c.severity = es::error_severity::medium;
    c.retryable = false;
    c.description = "the demo's deliberate handler failure";
    classifier->add_pattern_rule(customer_stats_view::injected_failure, c);
    customers.classifier = std::move(classifier);
  }
  return pc.add(v.customers, customers);
}

std::string money(int64_t cents) {
  char buf[32];
  auto sign = cents < 0 ? "-" : "";
  auto abs = cents < 0 ? -cents : cents;
  std::snprintf(buf, sizeof(buf), "%s%lld.%02lld", sign,
                static_cast<long long>(abs / 100),
                static_cast<long long>(abs % 100));
  return buf;
}

// -- progress -----------------------------------------------------------------

progress_display::progress_display(std::string mode, uint64_t total,
                                   std::string unit)
  : total_(std::max<uint64_t>(total, 1)), unit_(std::move(unit)) {
  if (mode == "auto")
    mode = isatty(STDOUT_FILENO) ? "bar" : "lines";
  mode_ = mode;
}

void progress_display::set_total(uint64_t total) {
  total_ = std::max<uint64_t>(total, 1);
}

void progress_display::update(uint64_t done, const std::string& extra) {
  done = std::min(done, total_);
  if (mode_ == "bar") {
    constexpr int width = 40;
    auto filled = static_cast<int>(width * done / total_);
    // "\033[K" clears what a longer earlier line left.
    std::printf("\r  [%s%s] %3d%%  %llu/%llu %s%s\033[K",
                std::string(static_cast<size_t>(filled), '#').c_str(),
                std::string(static_cast<size_t>(width - filled), ' ').c_str(),
                static_cast<int>(100 * done / total_),
                static_cast<unsigned long long>(done),
                static_cast<unsigned long long>(total_), unit_.c_str(),
                extra.c_str());
    std::fflush(stdout);
  } else if (mode_ == "lines") {
    auto step = static_cast<int>(10 * done / total_);
    if (step > last_step_) {
      last_step_ = step;
      std::printf("  progress: %3d%% (%llu/%llu %s%s)\n", step * 10,
                  static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(total_), unit_.c_str(),
                  extra.c_str());
      std::fflush(stdout);
    }
  }
}

void progress_display::finish(uint64_t done, const std::string& extra) {
  update(done, extra);
  if (mode_ == "bar")
    std::printf("\n");
}

// -- printing -----------------------------------------------------------------

void print_status_counts(const std::map<es::uuid, summary_row>& rows) {
  std::map<order_status, size_t> counts;
  for (const auto& [id, row] : rows)
    ++counts[row.status];
  std::printf("  %-12s %8zu\n", "orders", rows.size());
  for (auto s : {order_status::draft, order_status::paid, order_status::shipped,
                 order_status::cancelled})
    std::printf("    %-10s %8zu\n", to_string(s), counts[s]);
}

void print_projections(const std::vector<es::projection_status>& all,
                       const es::dead_letter_stats& dlq) {
  std::printf("  %-16s %9s %7s %8s %10s %7s %6s  %s\n", "projection",
              "position", "lag", "lag (s)", "processed", "errors", "DLQ",
              "state");
  for (const auto& st : all) {
    auto i = dlq.by_projection.find(st.name);
    auto dead = i == dlq.by_projection.end() ? int64_t{0} : i->second;
    std::printf("  %-16s %9lld %7lld %8.2f %10llu %7llu %6lld  %s (%s)\n",
                st.name.c_str(), static_cast<long long>(st.position),
                static_cast<long long>(st.lag_events), st.lag_seconds,
                static_cast<unsigned long long>(st.events_processed),
                static_cast<unsigned long long>(st.errors.total),
                static_cast<long long>(dead), es::to_string(st.state),
                es::to_string(st.health.level));
  }
  print_dead_letter_totals(dlq);
}

void print_dead_letter_totals(const es::dead_letter_stats& dlq) {
  std::printf("  dead letters: %lld unresolved (%lld failed, %lld retrying), "
              "%lld resolved\n",
              static_cast<long long>(dlq.failed + dlq.retrying),
              static_cast<long long>(dlq.failed),
              static_cast<long long>(dlq.retrying),
              static_cast<long long>(dlq.resolved));
}

} // namespace orders
