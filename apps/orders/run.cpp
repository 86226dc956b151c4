// orders run: drives the order workload through the Order region while the
// projections keep their read models; continues unfinished orders.
#include "es/actors/aggregate_region.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/brokers/brokers.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/sqlite/sqlite.hpp"
#ifdef ORDERS_WITH_OPS
#  include "es/ops/endpoints.hpp"
#endif
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/state_stores.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "cli.hpp"
#include "order.hpp"
#include "order_summary.hpp"
#include "views.hpp"
#include "workload.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace orders {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// Sums the clients' reports.
client_report merge(const std::vector<client_report>& reports) {
  client_report all;
  for (const auto& r : reports) {
    all.accepted += r.accepted;
    all.failed += r.failed;
    if (all.first_failure.empty())
      all.first_failure = r.first_failure;
    for (const auto& [reason, n] : r.rejected)
      all.rejected[reason] += n;
    all.latencies_us.insert(all.latencies_us.end(), r.latencies_us.begin(),
                            r.latencies_us.end());
  }
  std::sort(all.latencies_us.begin(), all.latencies_us.end());
  return all;
}

/// The name of the views' run lease (see `hold_views`).
constexpr const char* run_lease_name = "orders run";

/// Takes the views' run lease, waiting up to `timeout` while another
/// `orders run` holds it. Each projection has a lease of its own, so two
/// runs started together could each take one and then wait for the other's
/// for good; holding the views for the whole run keeps a second run from
/// starting anything until the first has ended (or died).
caf::expected<es::projection_lease_ptr>
hold_views(const views& v, const std::string& path,
           std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  bool told = false;
  for (;;) {
    auto lease = v.db->checkpoints()->try_lease(run_lease_name);
    if (lease || !es::has_code(lease.error(), es::store_errc::lease_held)
        || clock_type::now() >= deadline)
      return lease;
    if (!told) {
      std::printf("another orders run is using the views %s (%s); waiting "
                  "as a standby until it ends\n",
                  path.c_str(), es::error_description(lease.error()).c_str());
      std::fflush(stdout);
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

/// `err` from waiting for projection `name`, with the projection's own
/// account of why it stopped (its status detail: a hole, the failing
/// event) when the error does not carry it.
std::string describe_stop(es::projection_coordinator& pc,
                          const std::string& name, const caf::error& err) {
  auto text = es::describe(err);
  auto st = pc.status(name);
  if (st && !st->detail.empty() && text.find(st->detail) == std::string::npos)
    text += " (" + st->detail + ")";
  return text;
}

/// The bus of a run: the in-process one, or a broker (Redis, RabbitMQ) fed
/// by the outbox relay.
struct run_bus {
  es::event_bus_ptr bus;
  es::outbox_relay_actor relay;
};

caf::expected<run_bus> open_bus(caf::actor_system& sys,
                                const orders_config& cfg,
                                const es::event_store_ptr& store) {
  if (cfg.bus.empty())
    return run_bus{es::make_in_process_bus(sys), {}};
  if (cfg.store.rfind("sqlite:", 0) != 0 && !on_postgres(cfg))
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--bus needs a sqlite:PATH or postgres:DSN "
                                "store (its outbox feeds the broker)");
  es::broker_bus_settings settings;
  settings.name = cfg.bus_prefix;
  settings.group = "orders-views";
  settings.block = std::chrono::milliseconds(200);
  auto bus = es::open_broker_bus(sys, cfg.bus, settings);
  if (!bus)
    return std::move(bus.error());
  std::printf("bus: %s at %s (%s), fed by the outbox relay\n",
              es::broker_of(cfg.bus).c_str(), es::masked_url(cfg.bus).c_str(),
              cfg.bus_prefix.c_str());
  auto outbox = open_outbox(cfg);
  if (!outbox)
    return std::move(outbox.error());
  es::outbox_relay_config relay_cfg;
  relay_cfg.outbox = *outbox;
  relay_cfg.store = store;
  relay_cfg.bus = *bus;
  relay_cfg.name = "orders-relay";
  relay_cfg.poll_interval = std::chrono::milliseconds(20);
  return run_bus{*bus, es::spawn_outbox_relay(sys, relay_cfg)};
}

#ifdef ORDERS_WITH_OPS
std::atomic<bool> stop_requested{false};

extern "C" void on_stop_signal(int) {
  stop_requested = true;
}

/// Blocks until SIGINT or SIGTERM arrives (on any thread).
void wait_for_stop_signal() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  while (!stop_requested)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}
#endif

} // namespace

int run(caf::actor_system& sys, const orders_config& cfg) {
#ifdef ORDERS_WITH_OPS
  // Served before anything starts, so a bad address ends the run at once;
  // the parts are registered as they come up.
  std::unique_ptr<es::ops::endpoints> endpoints;
  if (!cfg.http.empty()) {
    endpoints = std::make_unique<es::ops::endpoints>();
    if (auto err = endpoints->serve(cfg.http)) {
      std::cerr << "orders: --http: " << es::describe(err) << "\n";
      return 2;
    }
  }
#endif
  auto store = open_store(cfg, false);
  if (!store) {
    std::cerr << "orders: " << es::describe(store.error()) << "\n";
    return 2;
  }
  auto v = open_views(cfg, false);
  if (!v) {
    std::cerr << "orders: " << es::describe(v.error()) << "\n";
    return 2;
  }
  auto registry = make_registry();
  std::printf(
    "orders run: store %s, views %s, %lld new orders, %lld "
    "clients%s\n",
    cfg.store.c_str(), views_path(cfg).c_str(),
    static_cast<long long>(cfg.orders), static_cast<long long>(cfg.clients),
    cfg.fail_cancellations ? ", customer_stats failing on cancellations" : "");
  auto held = hold_views(*v, views_path(cfg), std::chrono::minutes(10));
  if (!held) {
    std::cerr << "orders: cannot hold the views for this run: "
              << es::describe(held.error()) << "\n";
    return 1;
  }
  auto before = v->db->checkpoints()->load(order_summary_view::projection_name);
  auto head = (*store)->head_position();
  if (!before || !head) {
    std::cerr << "orders: "
              << es::describe(!before ? before.error() : head.error()) << "\n";
    return 1;
  }
  int64_t from = *before ? (*before)->position : 0;
  auto metrics_before = (*store)->metrics();
  // Wiring: region -> store actor -> bus -> projection actors; with --bus,
  // region -> store actor (and its outbox) -> relay -> broker -> projection
  // actors.
  auto opened = open_bus(sys, cfg, *store);
  if (!opened) {
    std::cerr << "orders: cannot open the bus: " << es::describe(opened.error())
              << "\n";
    return 2;
  }
  auto bus = opened->bus;
  es::store_actor_config sac;
  if (cfg.bus.empty())
    sac.bus = bus->handle();
  auto store_handle = es::spawn_store_actor(sys, *store, sac);
  es::projection_coordinator projections{sys};
  if (auto err = start_projections(projections, *v, *store, bus->handle(),
                                   cfg.fail_cancellations)) {
    std::cerr << "orders: cannot start the projections: " << es::describe(err)
              << "\n";
    return 1;
  }
  if (auto err = bus->start()) {
    std::cerr << "orders: cannot start the bus: " << es::describe(err) << "\n";
    return 1;
  }
  // Recovery: the order summary catches up from its checkpoint; its rows
  // say which orders are unfinished.
  auto recover_start = clock_type::now();
  if (auto err = projections.wait_until_caught_up(
        order_summary_view::projection_name, std::chrono::minutes(10))) {
    std::cerr << "orders: the order summary did not catch up: "
              << describe_stop(projections, order_summary_view::projection_name,
                               err)
              << "\n";
    return 1;
  }
  auto recovered = v->summary->rows();
  if (!recovered) {
    std::cerr << "orders: " << es::describe(recovered.error()) << "\n";
    return 1;
  }
  if (!recovered->empty()) {
    std::printf("recovered %zu orders of %lld events from the read model "
                "(checkpoint %lld, caught up %lld events in %.2f s):\n",
                recovered->size(), static_cast<long long>(*head),
                static_cast<long long>(from),
                static_cast<long long>(*head - from),
                seconds_since(recover_start));
    print_status_counts(*recovered);
  }
  es::region_options ro;
  ro.max_live = static_cast<size_t>(std::max<int64_t>(cfg.max_live, 1));
  es::aggregate_options ao;
  ao.store = store_handle;
  ao.registry = registry;
  auto region = es::spawn_region<order>(sys, ao, ro);
#ifdef ORDERS_WITH_OPS
  // Stops serving before the parts it watches go away, on every way out.
  struct stop_serving {
    es::ops::endpoints* ep;
    ~stop_serving() {
      if (ep != nullptr)
        ep->stop();
    }
  } serving_guard{endpoints.get()};
  if (endpoints) {
    // [endpoints]
    endpoints->watch_store("orders", *store);
    endpoints->watch_projections(projections);
    endpoints->watch_bus("orders", *bus);
    if (opened->relay)
      endpoints->watch_relay("orders-relay", sys, opened->relay);
    endpoints->watch_region("orders", sys, caf::actor_cast<caf::actor>(region));
    endpoints->watch_aggregates("orders", ao.metrics);
    endpoints->watch_dead_letters("views", v->db->dead_letters());
    // [/endpoints]
    std::printf("serving /live, /ready, /health and /metrics on port %u\n",
                static_cast<unsigned>(endpoints->port()));
    std::fflush(stdout);
  }
#endif
  // The workload: new orders plus the continuation of unfinished ones.
  auto seed = cfg.seed != 0
                ? cfg.seed
                : static_cast<uint64_t>(
                  std::chrono::system_clock::now().time_since_epoch().count());
  auto w = std::make_shared<workload>();
  w->plans = make_plans(static_cast<size_t>(std::max<int64_t>(cfg.orders, 0)),
                        *recovered, seed);
  for (const auto& p : w->plans)
    w->total_commands += p.commands.size();
  auto clients = static_cast<size_t>(std::max<int64_t>(cfg.clients, 1));
  w->reports.resize(clients);
  std::printf("running %zu order plans (%llu commands, seed %llu)\n",
              w->plans.size(),
              static_cast<unsigned long long>(w->total_commands),
              static_cast<unsigned long long>(seed));
  progress_display progress{cfg.progress, w->total_commands, "commands"};
  caf::scoped_actor self{sys};
  auto start = clock_type::now();
  for (size_t i = 0; i < clients; ++i)
    spawn_client(sys, region, w, i, self);
  size_t finished = 0;
  while (finished < clients)
    self->receive(
      [&](caf::ok_atom, uint64_t) {
        ++finished;
      },
      caf::after(std::chrono::milliseconds(200)) >>
        [&] {
          progress.update(w->commands_done.load());
        });
  auto seconds = seconds_since(start);
  progress.finish(w->commands_done.load());
  // With a broker: everything the store committed leaves the outbox before
  // the summary.
  std::optional<es::outbox_relay_status> relayed;
  if (opened->relay) {
    self->request(opened->relay, std::chrono::minutes(2), caf::flush_atom_v)
      .receive([](uint64_t) {},
               [&](caf::error& err) {
                 std::cerr << "orders: the outbox relay failed: "
                           << es::describe(err) << "\n";
               });
    // And the broker handed all of it to the projections' group.
    if (auto err = bus->drain(std::chrono::minutes(1)))
      std::cerr << "orders: the bus did not drain: " << es::describe(err)
                << "\n";
    self->request(opened->relay, std::chrono::minutes(1), es::stats_atom_v)
      .receive(
        [&](es::outbox_relay_status& s) {
          relayed = std::move(s);
        },
        [](caf::error&) {});
  }
  // Both projections see every event before the summary.
  bool caught_up = true;
  for (const auto* name : {order_summary_view::projection_name,
                           customer_stats_view::projection_name})
    if (auto err
        = projections.wait_until_caught_up(name, std::chrono::minutes(2))) {
      std::cerr << "orders: projection " << name << " did not catch up: "
                << describe_stop(projections, name, err) << "\n";
      caught_up = false;
    }
  auto all = merge(w->reports);
  auto pct = [&](double p) {
    if (all.latencies_us.empty())
      return 0.0;
    return all.latencies_us[static_cast<size_t>(
      p * static_cast<double>(all.latencies_us.size() - 1))];
  };
  uint64_t rejected = 0;
  for (const auto& [reason, n] : all.rejected)
    rejected += n;
  auto m = (*store)->metrics();
  auto head_after = (*store)->head_position();
  auto rows = v->summary->rows();
  auto statuses = projections.status();
  auto dead = v->db->dead_letters()->stats();
  if (!rows || !head_after || !dead) {
    std::cerr << "orders: cannot read the results: "
              << es::describe(!rows         ? rows.error()
                              : !head_after ? head_after.error()
                                            : dead.error())
              << "\n";
    return 1;
  }
  std::printf("\nsummary\n");
  print_status_counts(*rows);
  std::printf("  %-28s %10llu  (%llu transactions)\n", "events written",
              static_cast<unsigned long long>(m.events_appended
                                              - metrics_before.events_appended),
              static_cast<unsigned long long>(m.transactions
                                              - metrics_before.transactions));
  std::printf("  %-28s %10lld\n", "events in the log",
              static_cast<long long>(*head_after));
  std::printf("  %-28s %10llu\n", "commands accepted",
              static_cast<unsigned long long>(all.accepted));
  std::printf("  %-28s %10llu\n", "commands rejected",
              static_cast<unsigned long long>(rejected));
  for (const auto& [reason, n] : all.rejected)
    std::printf("    %-26s %10llu\n", reason.c_str(),
                static_cast<unsigned long long>(n));
  if (all.failed > 0)
    std::printf("  %-28s %10llu  first: %s\n", "commands failed",
                static_cast<unsigned long long>(all.failed),
                all.first_failure.c_str());
  if (auto n = w->commands_abandoned.load(); n > 0)
    std::printf("  %-28s %10llu  (their plan failed or the run stopped)\n",
                "commands not sent", static_cast<unsigned long long>(n));
  if (w->stopped.load())
    std::printf("  stopped early on an infrastructure failure: %s\n",
                w->stop_reason.c_str());
  std::printf("  %-28s %10.0f  (%.2f s)\n", "commands/s",
              static_cast<double>(all.latencies_us.size()) / seconds, seconds);
  std::printf("  %-28s %10.0f us\n", "command latency p50", pct(0.50));
  std::printf("  %-28s %10.0f us\n", "command latency p99", pct(0.99));
  if (relayed) {
    auto bs = bus->stats();
    std::printf("\nbus (%s, through the outbox)\n",
                es::broker_of(cfg.bus).c_str());
    std::printf("  %-28s %10llu\n", "events relayed",
                static_cast<unsigned long long>(relayed->published));
    std::printf("  %-28s %10lld  (failed %lld, oldest %lld ms)\n",
                "outbox rows waiting", static_cast<long long>(relayed->pending),
                static_cast<long long>(relayed->failed),
                static_cast<long long>(relayed->oldest_waiting_ms));
    std::printf("  %-28s %10llu  (errors %llu)\n", "handlers run from the bus",
                static_cast<unsigned long long>(bs.handlers_invoked),
                static_cast<unsigned long long>(bs.handler_errors));
    if (auto dlq = bus->dead_letters())
      if (auto n = dlq->count())
        std::printf("  %-28s %10lld\n", "bus dead letters",
                    static_cast<long long>(*n));
  }
  std::printf("\nprojections\n");
  print_projections(statuses, *dead);
  if (dead->failed + dead->retrying > 0)
    std::printf("  (`orders dlq list` shows them, `orders dlq replay all` "
                "hands them back)\n");
  // A projection failing is an error unless it was asked to.
  bool projections_ok = caught_up;
  for (const auto& st : statuses) {
    auto expected_failures = cfg.fail_cancellations
                             && st.name == customer_stats_view::projection_name;
    if (st.state == es::projection_state::error
        || st.state == es::projection_state::stopped
        || (st.errors.total > 0 && !expected_failures))
      projections_ok = false;
  }
#ifdef ORDERS_WITH_OPS
  if (endpoints && cfg.keep_serving) {
    std::printf("\nrun finished; serving the endpoints until SIGINT or "
                "SIGTERM\n");
    std::fflush(stdout);
    wait_for_stop_signal();
  }
#endif
#ifdef ORDERS_WITH_OPS
  if (endpoints)
    endpoints->stop();
#endif
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(caf::actor_cast<caf::actor>(store_handle),
                  caf::exit_reason::user_shutdown);
  if (opened->relay)
    self->send_exit(opened->relay, caf::exit_reason::user_shutdown);
  projections.stop();
  static_cast<void>(bus->stop(std::chrono::seconds(10)));
  remove_temporary_views(cfg);
  return all.failed == 0 && projections_ok ? 0 : 1;
}

} // namespace orders
