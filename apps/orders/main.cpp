// orders: the demo of the framework. Drives a mixed order workload through
// an aggregate region on the embedded SQLite store while two projections
// keep read models in a SQLite database of their own; verifies, shows and
// administers what it wrote (status, dead letters, rebuilds).
#include "es/actors/aggregate_region.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
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
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace orders {

namespace {

constexpr const char* usage = R"(usage: orders COMMAND [options]

commands:
  run                  drive a mixed order workload through the Order region
                       while the projections order_summary and customer_stats
                       keep their read models (see --views); on an existing
                       store the order_summary read model catches up from its
                       checkpoint first and unfinished orders are continued
  verify               replay the log into fresh in-memory models and compare
                       them with every aggregate and with both read models;
                       exit 1 on a difference
  show ORDER_ID        print one order's history: its state after each event
  status               the projections' checkpoints and lag, and the
                       dead-letter queue
  dlq list             dead letters (--projection, --status, --limit)
  dlq replay ID|all    hand dead letters back to their projection; resolved
                       on success, failure recorded otherwise
  dlq resolve ID       mark a dead letter resolved by hand (--by)
  dlq purge            delete resolved entries (--older-than-days)
  rebuild PROJECTION   clear a read model and replay the whole log into it,
                       with a progress bar; exit 1 if events of it are
                       left in the dead-letter queue

Options can also be set in caf-application.ini (section [global]).
)";

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

std::string describe_row(const summary_row& row) {
  return std::string{to_string(row.status)} + "/" + std::to_string(row.items)
         + " items/" + money(row.total_cents) + "/paid " + money(row.paid_cents)
         + "/v" + std::to_string(row.version);
}

std::string describe_row(const customer_row& row) {
  return std::to_string(row.orders) + " orders, "
         + std::to_string(row.paid_orders) + " paid, "
         + std::to_string(row.cancelled_orders) + " cancelled, revenue "
         + money(row.revenue_cents);
}

std::string key_text(const es::uuid& x) {
  return x.to_string();
}

std::string key_text(const std::string& x) {
  return x;
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

/// Compares two maps row by row, printing the first few differences.
template <class Key, class Row>
size_t compare_rows(const char* what, const std::map<Key, Row>& expected,
                    const std::map<Key, Row>& actual) {
  size_t differences = 0;
  auto report
    = [&](const Key& key, const std::string& want, const std::string& got) {
        if (++differences <= 10)
          std::printf("  %s %s: expected %s, read model has %s\n", what,
                      key_text(key).c_str(), want.c_str(), got.c_str());
      };
  for (const auto& [key, row] : expected) {
    auto i = actual.find(key);
    if (i == actual.end())
      report(key, describe_row(row), "nothing");
    else if (!(i->second == row))
      report(key, describe_row(row), describe_row(i->second));
  }
  for (const auto& [key, row] : actual)
    if (expected.count(key) == 0)
      report(key, "nothing", describe_row(row));
  return differences;
}

} // namespace

// -- run ----------------------------------------------------------------------

int run(caf::actor_system& sys, const orders_config& cfg) {
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
  // Wiring: region -> store actor -> bus -> projection actors.
  auto bus = es::make_in_process_bus(sys);
  es::store_actor_config sac;
  sac.bus = bus->handle();
  auto store_handle = es::spawn_store_actor(sys, *store, sac);
  es::projection_coordinator projections{sys};
  if (auto err = start_projections(projections, *v, *store, bus->handle(),
                                   cfg.fail_cancellations)) {
    std::cerr << "orders: cannot start the projections: " << es::describe(err)
              << "\n";
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
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(caf::actor_cast<caf::actor>(store_handle),
                  caf::exit_reason::user_shutdown);
  projections.stop();
  remove_temporary_views(cfg);
  return all.failed == 0 && projections_ok ? 0 : 1;
}

// -- verify -------------------------------------------------------------------

namespace {

/// Compares the order summary view with the log up to its checkpoint.
caf::expected<size_t> verify_summary_view(es::event_store& store,
                                          const views& v, int64_t head) {
  auto cp = v.db->checkpoints()->load(order_summary_view::projection_name);
  if (!cp)
    return std::move(cp.error());
  auto at = *cp ? (*cp)->position : 0;
  order_summary expected{make_registry()};
  // Events that cannot be read were reported with the log's replay.
  std::vector<caf::error> unreadable;
  if (auto err = expected.catch_up(store, at, &unreadable))
    return err;
  auto actual = v.summary->rows();
  if (!actual)
    return std::move(actual.error());
  auto differences = compare_rows("order", expected.rows(), *actual);
  std::printf("  order_summary view at position %lld of %lld: ",
              static_cast<long long>(at), static_cast<long long>(head));
  if (differences == 0)
    std::printf("no differences\n");
  else
    std::printf("%zu differences\n", differences);
  return differences;
}

/// The ids of the events `projection` recorded as processed.
caf::expected<std::set<es::uuid>> processed_ids(es::read_model_db& db,
                                                const std::string& projection) {
  std::set<es::uuid> result;
  auto err = db.transact([&](es::sql_transaction& tx) -> caf::error {
    auto rows = tx.query("SELECT lower(hex(event_id)) FROM processed_events"
                         " WHERE projection_name = ?1",
                         {es::sql_value{projection}});
    if (!rows)
      return std::move(rows.error());
    for (const auto& r : *rows) {
      auto hex = es::sql_text(r[0]);
      if (hex.size() != 32)
        return es::make_store_error(es::store_errc::corrupt_database,
                                    "processed_events has a bad id: " + hex);
      auto id = es::uuid::parse(hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-"
                                + hex.substr(12, 4) + "-" + hex.substr(16, 4)
                                + "-" + hex.substr(20));
      if (!id)
        return std::move(id.error());
      result.insert(*id);
    }
    return caf::none;
  });
  if (err)
    return err;
  return result;
}

/// Checks the customer view: it must equal the fold of exactly the events it
/// recorded as processed, and every event up to its checkpoint must be
/// processed or waiting in the dead-letter queue.
caf::expected<size_t> verify_customer_view(es::event_store& store,
                                           const views& v, int64_t head) {
  const std::string name = customer_stats_view::projection_name;
  auto cp = v.db->checkpoints()->load(name);
  if (!cp)
    return std::move(cp.error());
  auto at = *cp ? (*cp)->position : 0;
  auto processed = processed_ids(*v.db, name);
  if (!processed)
    return std::move(processed.error());
  std::set<es::uuid> waiting;
  for (auto state :
       {es::dead_letter_status::failed, es::dead_letter_status::retrying}) {
    es::dead_letter_query q;
    q.projection = name;
    q.status = state;
    q.limit = std::numeric_limits<uint32_t>::max();
    auto entries = v.db->dead_letters()->list(q);
    if (!entries)
      return std::move(entries.error());
    for (const auto& e : *entries)
      waiting.insert(e.event_id);
  }
  auto types = v.customers->subscribed_to();
  customer_totals expected{make_registry()};
  size_t lost = 0;
  es::read_all_options opts;
  auto res = es::for_each_in_feed(store, opts, [&](es::recorded_event& ev) {
    if (processed->count(ev.event_id) > 0) {
      // An unreadable event was reported with the log's replay.
      static_cast<void>(expected.apply(ev));
      return caf::error{};
    }
    if (ev.global_position <= at && waiting.count(ev.event_id) == 0
        && std::find(types.begin(), types.end(), ev.event_type) != types.end()
        && ++lost <= 10)
      std::printf("  event %lld (%s) is neither in customer_stats nor in "
                  "its dead-letter queue\n",
                  static_cast<long long>(ev.global_position),
                  ev.event_type.c_str());
    return caf::error{};
  });
  if (!res)
    return std::move(res.error());
  auto actual = v.customers->rows();
  if (!actual)
    return std::move(actual.error());
  auto differences = lost + compare_rows("customer", expected.rows(), *actual);
  std::printf("  customer_stats view at position %lld of %lld, %zu events "
              "in its dead-letter queue: ",
              static_cast<long long>(at), static_cast<long long>(head),
              waiting.size());
  if (differences == 0)
    std::printf("no differences\n");
  else
    std::printf("%zu differences\n", differences);
  return differences;
}

} // namespace

int verify(const orders_config& cfg) {
  auto store = open_store(cfg, true);
  if (!store) {
    std::cerr << "orders: " << es::describe(store.error()) << "\n";
    return 2;
  }
  auto registry = make_registry();
  order_summary rm{registry};
  // Every event that cannot be read is reported; the others are checked.
  std::vector<caf::error> bad;
  if (auto err
      = rm.catch_up(**store, std::numeric_limits<int64_t>::max(), &bad)) {
    std::cerr << "orders: cannot replay the log: " << es::describe(err) << "\n";
    return 1;
  }
  for (size_t i = 0; i < bad.size() && i < 100; ++i)
    std::printf("  bad event: %s\n", es::describe(bad[i]).c_str());
  if (bad.size() > 100)
    std::printf("  ... and %zu more bad events\n", bad.size() - 100);
  auto head = (*store)->head_position();
  if (!head) {
    std::cerr << "orders: " << es::describe(head.error()) << "\n";
    return 1;
  }
  // Every aggregate, loaded from its stream, against the replayed log.
  es::repository_options ro;
  ro.registry = registry;
  es::aggregate_repository<order> repo{*store, ro};
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
    auto expected = row_of((*agg)->state(), (*agg)->version());
    if (!(expected == row)) {
      ++differences;
      std::printf("  %s: the log says %s, the aggregate %s\n",
                  id.to_string().c_str(), describe_row(row).c_str(),
                  describe_row(expected).c_str());
    }
  }
  std::printf("  %zu aggregates against the log: %zu differences\n",
              rows.size(), differences);
  // The read models, against the log up to their checkpoints.
  auto path = views_path(cfg);
  if (std::filesystem::exists(path)) {
    auto v = open_views(cfg, true);
    if (!v) {
      std::cerr << "orders: " << es::describe(v.error()) << "\n";
      return 1;
    }
    for (auto check : {verify_summary_view, verify_customer_view}) {
      auto n = check(**store, *v, *head);
      if (!n) {
        std::cerr << "orders: " << es::describe(n.error()) << "\n";
        return 1;
      }
      differences += *n;
    }
  } else {
    std::printf("  no read models at %s: not checked\n", path.c_str());
  }
  differences += bad.size();
  std::printf("verified %zu orders, %lld events: ", rows.size(),
              static_cast<long long>(*head));
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
  order agg{*id, make_registry()};
  std::printf("order %s\n", id->to_string().c_str());
  auto err = es::for_each_in_stream(
    **store, agg.stream(), {}, [&](es::recorded_event& ev) -> caf::error {
      if (auto err = agg.apply_stored(ev))
        return es::in_event_context(err, ev);
      const auto& s = agg.state();
      std::printf("  v%-3lld #%-6lld %s  %-15s %s\n",
                  static_cast<long long>(ev.aggregate_version),
                  static_cast<long long>(ev.global_position),
                  es::format_timestamp(ev.occurred_at).c_str(),
                  ev.event_type.c_str(), ev.payload.c_str());
      std::printf("         -> %s, %d items, total %s %s%s%s\n",
                  to_string(s.status), s.item_count(),
                  money(s.total_cents()).c_str(), s.currency.c_str(),
                  s.tracking.empty() ? "" : ", tracking ", s.tracking.c_str());
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

} // namespace orders

namespace {

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
  orders::orders_config cfg;
  if (wants_help(argc, argv))
    std::cout << orders::usage << "\n";
  if (auto err = cfg.parse(static_cast<int>(options.size()), options.data())) {
    std::cerr << "orders: " << caf::to_string(err) << "\n" << orders::usage;
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << "orders: unknown option " << cfg.remainder.front() << "\n";
    return 2;
  }
  if (words.empty()) {
    std::cerr << orders::usage;
    return 2;
  }
  const auto& command = words.front();
  std::vector<std::string> args(words.begin() + 1, words.end());
  auto want_args = [&](size_t n, const char* what) {
    if (args.size() == n)
      return true;
    std::cerr << "orders: " << command << " takes " << what << "\n";
    return false;
  };
  if (command == "verify")
    return want_args(0, "no arguments") ? orders::verify(cfg) : 2;
  if (command == "show")
    return want_args(1, "an ORDER_ID") ? orders::show(cfg, args[0]) : 2;
  if (command == "status")
    return want_args(0, "no arguments") ? orders::status(cfg) : 2;
  if (command != "run" && command != "dlq" && command != "rebuild") {
    std::cerr << "orders: unknown command " << command << "\n" << orders::usage;
    return 2;
  }
  if (command == "run" && !want_args(0, "no arguments"))
    return 2;
  if (command == "rebuild" && !want_args(1, "a PROJECTION name"))
    return 2;
  caf::actor_system sys{cfg};
  if (command == "run")
    return orders::run(sys, cfg);
  if (command == "dlq")
    return orders::dlq(sys, cfg, args);
  return orders::rebuild(sys, cfg, args[0]);
}
