// orders: the demo of the framework. Drives a mixed order workload through
// an aggregate region on the embedded SQLite store, keeps an order-summary
// read model fed from the bus, and can verify and show what it wrote.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "es/actors/aggregate_region.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/store/codec.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/sqlite_event_store.hpp"

#include "order.hpp"
#include "order_summary.hpp"
#include "workload.hpp"

namespace {

constexpr const char* usage = R"(usage: orders COMMAND [options]

commands:
  run              drive a mixed order workload through the Order region;
                   on an existing store it first recovers every order from
                   the event log, then continues unfinished orders
  verify           replay the whole log into a fresh read model and compare
                   it with every aggregate's state; exit 1 on a difference
  show ORDER_ID    print one order's history: its state after each event

Options can also be set in caf-application.ini (section [global]).
)";

struct orders_config : caf::actor_system_config {
  int64_t orders = 2000;
  int64_t clients = 16;
  std::string store = "sqlite:./data/orders.db";
  std::string sync = "full";
  uint64_t seed = 0;
  int64_t max_live = 10000;
  std::string progress = "auto";

  orders_config() {
    opt_group{custom_options_, "global"}
      .add(orders, "orders", "new orders to create in a run (default 2000)")
      .add(clients, "clients",
           "concurrent client actors sending commands (default 16)")
      .add(store, "store",
           "event store: sqlite:PATH (default sqlite:./data/orders.db) or "
           "memory")
      .add(sync, "sync",
           "SQLite durability: full (fsync per commit, default), normal, off")
      .add(seed, "seed", "workload seed (default: from the clock)")
      .add(max_live, "max-live",
           "most aggregate actors alive at once before passivating the "
           "least recently used (default 10000)")
      .add(progress, "progress",
           "progress display: auto (bar on a terminal, lines otherwise), "
           "bar, lines, off");
    set("scheduler.max-threads", 2);
    es::add_actors_module(*this);
    add_message_types<caf::id_block::orders>();
  }
};

caf::expected<es::event_store_ptr> open_store(const orders_config& cfg,
                                              bool must_exist) {
  if (cfg.store == "memory")
    return es::make_memory_event_store();
  if (cfg.store.rfind("sqlite:", 0) != 0)
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--store must be sqlite:PATH or memory");
  es::sqlite_config sc;
  sc.path = cfg.store.substr(7);
  if (cfg.sync == "normal")
    sc.synchronous = es::sqlite_sync::normal;
  else if (cfg.sync == "off")
    sc.synchronous = es::sqlite_sync::off;
  else if (cfg.sync != "full")
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--sync must be full, normal or off");
  std::filesystem::path path{sc.path};
  if (must_exist && !std::filesystem::exists(path))
    return es::make_store_error(es::store_errc::invalid_argument,
                                "no event store at " + sc.path
                                  + " (run `orders run` first)");
  if (path.has_parent_path())
    std::filesystem::create_directories(path.parent_path());
  return es::make_sqlite_event_store(sc);
}

std::string money(int64_t cents) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld.%02lld",
                static_cast<long long>(cents / 100),
                static_cast<long long>(cents % 100));
  return buf;
}

// -- progress -----------------------------------------------------------------

class progress_display {
public:
  progress_display(std::string mode, uint64_t total)
    : total_(std::max<uint64_t>(total, 1)) {
    if (mode == "auto")
      mode = isatty(STDOUT_FILENO) ? "bar" : "lines";
    mode_ = mode;
  }

  void update(uint64_t done) {
    if (mode_ == "bar") {
      constexpr int width = 40;
      auto filled = static_cast<int>(width * done / total_);
      std::printf("\r  [%s%s] %3d%%  %llu/%llu commands", 
                  std::string(static_cast<size_t>(filled), '#').c_str(),
                  std::string(static_cast<size_t>(width - filled), ' ').c_str(),
                  static_cast<int>(100 * done / total_),
                  static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(total_));
      std::fflush(stdout);
    } else if (mode_ == "lines") {
      auto step = static_cast<int>(10 * done / total_);
      if (step > last_step_) {
        last_step_ = step;
        std::printf("  progress: %3d%% (%llu/%llu commands)\n", step * 10,
                    static_cast<unsigned long long>(done),
                    static_cast<unsigned long long>(total_));
        std::fflush(stdout);
      }
    }
  }

  void finish(uint64_t done) {
    update(done);
    if (mode_ == "bar")
      std::printf("\n");
  }

private:
  std::string mode_;
  uint64_t total_;
  int last_step_ = 0;
};

void print_status_counts(const orders::order_summary& rm) {
  auto counts = rm.counts_by_status();
  size_t total = 0;
  for (auto& [status, n] : counts)
    total += n;
  std::printf("  %-12s %8zu\n", "orders", total);
  for (auto s : {orders::order_status::draft, orders::order_status::paid,
                 orders::order_status::shipped,
                 orders::order_status::cancelled})
    std::printf("    %-10s %8zu\n", orders::to_string(s), counts[s]);
}

// -- run ----------------------------------------------------------------------

int run(caf::actor_system& sys, const orders_config& cfg) {
  auto store = open_store(cfg, false);
  if (!store) {
    std::cerr << "orders: " << es::describe(store.error()) << "\n";
    return 2;
  }
  auto registry = orders::make_registry();
  auto rm = std::make_shared<orders::order_summary>(registry);
  std::printf("orders run: store %s, %lld new orders, %lld clients\n",
              cfg.store.c_str(), static_cast<long long>(cfg.orders),
              static_cast<long long>(cfg.clients));
  // Recovery: the read model replays the whole log before anything runs.
  auto recover_start = std::chrono::steady_clock::now();
  if (auto err = rm->catch_up(**store)) {
    std::cerr << "orders: cannot replay the log: " << es::describe(err)
              << "\n";
    return 1;
  }
  auto recovered = rm->rows();
  if (!recovered.empty()) {
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                              - recover_start)
                  .count();
    std::printf("recovered %zu orders from %llu events in %.2f s:\n",
                recovered.size(),
                static_cast<unsigned long long>(rm->events_applied()), secs);
    print_status_counts(*rm);
  }
  auto metrics_before = (*store)->metrics();
  // Wiring: bus <- store actor <- region; the read model listens on the bus.
  auto bus = es::make_in_process_bus(sys);
  es::store_actor_config sac;
  sac.bus = bus->handle();
  auto store_handle = es::spawn_store_actor(sys, *store, sac);
  bus->subscribe_to_all_events(
    [rm](const es::recorded_event& ev) { return rm->apply(ev); });
  es::aggregate_options ao;
  ao.store = store_handle;
  ao.registry = registry;
  es::region_options ro;
  ro.max_live = static_cast<size_t>(std::max<int64_t>(cfg.max_live, 1));
  auto region = es::spawn_region<orders::order>(sys, ao, ro);
  // The workload: new orders plus the continuation of unfinished ones.
  auto seed = cfg.seed != 0
                ? cfg.seed
                : static_cast<uint64_t>(
                  std::chrono::system_clock::now().time_since_epoch().count());
  auto w = std::make_shared<orders::workload>();
  w->plans = orders::make_plans(static_cast<size_t>(std::max<int64_t>(
                                  cfg.orders, 0)),
                                recovered, seed);
  for (const auto& p : w->plans)
    w->total_commands += p.commands.size();
  auto clients = static_cast<size_t>(std::max<int64_t>(cfg.clients, 1));
  w->reports.resize(clients);
  std::printf("running %zu order plans (%llu commands, seed %llu)\n",
              w->plans.size(),
              static_cast<unsigned long long>(w->total_commands),
              static_cast<unsigned long long>(seed));
  progress_display progress{cfg.progress, w->total_commands};
  caf::scoped_actor self{sys};
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < clients; ++i)
    orders::spawn_client(sys, region, w, i, self);
  size_t finished = 0;
  while (finished < clients)
    self->receive([&](caf::ok_atom, uint64_t) { ++finished; },
                  caf::after(std::chrono::milliseconds(200)) >>
                    [&] { progress.update(w->commands_done.load()); });
  auto seconds = std::chrono::duration<double>(
                   std::chrono::steady_clock::now() - start)
                   .count();
  progress.finish(w->commands_done.load());
  if (auto err = bus->drain(std::chrono::seconds(60)))
    std::cerr << "orders: read model did not catch up: " << es::describe(err)
              << "\n";
  // Summary.
  orders::client_report all;
  for (auto& r : w->reports) {
    all.accepted += r.accepted;
    all.failed += r.failed;
    if (all.first_failure.empty())
      all.first_failure = r.first_failure;
    for (auto& [reason, n] : r.rejected)
      all.rejected[reason] += n;
    all.latencies_us.insert(all.latencies_us.end(), r.latencies_us.begin(),
                            r.latencies_us.end());
  }
  std::sort(all.latencies_us.begin(), all.latencies_us.end());
  auto pct = [&](double p) {
    if (all.latencies_us.empty())
      return 0.0;
    return all.latencies_us[static_cast<size_t>(
      p * static_cast<double>(all.latencies_us.size() - 1))];
  };
  uint64_t rejected = 0;
  for (auto& [reason, n] : all.rejected)
    rejected += n;
  auto m = (*store)->metrics();
  auto bus_stats = bus->stats();
  std::printf("\nsummary\n");
  print_status_counts(*rm);
  std::printf("  %-28s %10llu  (%llu transactions)\n", "events written",
              static_cast<unsigned long long>(m.events_appended
                                              - metrics_before.events_appended),
              static_cast<unsigned long long>(m.transactions
                                              - metrics_before.transactions));
  std::printf("  %-28s %10llu\n", "events in the log",
              static_cast<unsigned long long>(rm->last_position()));
  std::printf("  %-28s %10llu\n", "commands accepted",
              static_cast<unsigned long long>(all.accepted));
  std::printf("  %-28s %10llu\n", "commands rejected",
              static_cast<unsigned long long>(rejected));
  for (auto& [reason, n] : all.rejected)
    std::printf("    %-26s %10llu\n", reason.c_str(),
                static_cast<unsigned long long>(n));
  if (all.failed > 0)
    std::printf("  %-28s %10llu  first: %s\n", "commands failed",
                static_cast<unsigned long long>(all.failed),
                all.first_failure.c_str());
  std::printf("  %-28s %10.0f  (%.2f s)\n", "commands/s",
              static_cast<double>(all.latencies_us.size()) / seconds, seconds);
  std::printf("  %-28s %10.0f us\n", "command latency p50", pct(0.50));
  std::printf("  %-28s %10.0f us\n", "command latency p99", pct(0.99));
  std::printf("  %-28s %10llu  (handler errors %llu)\n",
              "events to the read model",
              static_cast<unsigned long long>(bus_stats.handlers_invoked),
              static_cast<unsigned long long>(bus_stats.handler_errors));
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(caf::actor_cast<caf::actor>(store_handle),
                  caf::exit_reason::user_shutdown);
  return all.failed == 0 && bus_stats.handler_errors == 0 ? 0 : 1;
}

// -- verify -------------------------------------------------------------------

int verify(const orders_config& cfg) {
  auto store = open_store(cfg, true);
  if (!store) {
    std::cerr << "orders: " << es::describe(store.error()) << "\n";
    return 2;
  }
  auto registry = orders::make_registry();
  orders::order_summary rm{registry};
  if (auto err = rm.catch_up(**store)) {
    std::cerr << "orders: cannot replay the log: " << es::describe(err)
              << "\n";
    return 1;
  }
  es::repository_options ro;
  ro.registry = registry;
  es::aggregate_repository<orders::order> repo{*store, ro};
  size_t differences = 0;
  auto rows = rm.rows();
  for (const auto& [id, row] : rows) {
    auto agg = repo.load(id);
    if (!agg) {
      ++differences;
      std::printf("  %s: cannot load: %s\n", id.to_string().c_str(),
                  es::describe(agg.error()).c_str());
      continue;
    }
    auto expected = orders::row_of((*agg)->state(), (*agg)->version());
    if (!(expected == row)) {
      ++differences;
      std::printf("  %s: read model says %s/%d items/%s, aggregate says "
                  "%s/%d items/%s\n",
                  id.to_string().c_str(), orders::to_string(row.status),
                  row.items, money(row.total_cents).c_str(),
                  orders::to_string(expected.status), expected.items,
                  money(expected.total_cents).c_str());
    }
  }
  auto head = (*store)->head_position();
  std::printf("verified %zu orders, %lld events: ", rows.size(),
              static_cast<long long>(head ? *head : -1));
  if (differences == 0) {
    std::printf("no differences\n");
    return 0;
  }
  std::printf("%zu differences\n", differences);
  return 1;
}

// -- show ---------------------------------------------------------------------

int show(const orders_config& cfg, const std::string& id_text) {
  auto id = es::uuid::parse(id_text);
  if (!id) {
    std::cerr << "orders: " << es::describe(id.error()) << "\n";
    return 2;
  }
  auto store = open_store(cfg, true);
  if (!store) {
    std::cerr << "orders: " << es::describe(store.error()) << "\n";
    return 2;
  }
  auto registry = orders::make_registry();
  orders::order agg{*id, registry};
  std::printf("order %s\n", id->to_string().c_str());
  auto err = es::for_each_in_stream(
    **store, agg.stream(), {}, [&](es::recorded_event& ev) -> caf::error {
      if (auto err = agg.apply_stored(ev))
        return err;
      const auto& s = agg.state();
      std::printf("  v%-3lld #%-6lld %s  %-15s %s\n",
                  static_cast<long long>(ev.aggregate_version),
                  static_cast<long long>(ev.global_position),
                  es::format_timestamp(ev.occurred_at).c_str(),
                  ev.event_type.c_str(), ev.payload.c_str());
      std::printf("         -> %s, %d items, total %s %s%s%s\n",
                  orders::to_string(s.status), s.item_count(),
                  money(s.total_cents()).c_str(), s.currency.c_str(),
                  s.tracking.empty() ? "" : ", tracking ",
                  s.tracking.c_str());
      return caf::none;
    });
  if (err) {
    std::cerr << "orders: " << es::describe(err) << "\n";
    return 1;
  }
  if (agg.version() == 0) {
    std::printf("  (no events)\n");
    return 1;
  }
  return 0;
}

bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "-?")
      return true;
  }
  return false;
}

} // namespace

int main(int argc, char** argv) {
  // CAF stops parsing options at the first positional argument, so take
  // the command words out first: `orders run --orders=10` and
  // `orders --orders=10 run` both work.
  std::vector<std::string> words;
  std::vector<char*> options{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-')
      options.push_back(argv[i]);
    else
      words.emplace_back(argv[i]);
  }
  orders_config cfg;
  if (wants_help(argc, argv))
    std::cout << usage << "\n";
  if (auto err = cfg.parse(static_cast<int>(options.size()), options.data())) {
    std::cerr << "orders: " << caf::to_string(err) << "\n" << usage;
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << "orders: unknown option " << cfg.remainder.front() << "\n";
    return 2;
  }
  if (words.empty()) {
    std::cerr << usage;
    return 2;
  }
  const auto& command = words.front();
  if (command == "verify")
    return verify(cfg);
  if (command == "show") {
    if (words.size() < 2) {
      std::cerr << "orders: show needs an ORDER_ID\n";
      return 2;
    }
    return show(cfg, words[1]);
  }
  if (command != "run") {
    std::cerr << "orders: unknown command " << command << "\n" << usage;
    return 2;
  }
  caf::actor_system sys{cfg};
  return run(sys, cfg);
}
