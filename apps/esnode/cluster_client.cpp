#include "cluster_client.hpp"

#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include "order.hpp"
#include "order_summary.hpp"
#include "views.hpp"

namespace esnode {

namespace {

using steady = std::chrono::steady_clock;

/// A poll interval of the waits below, not a synchronisation.
constexpr auto poll = std::chrono::milliseconds(20);

} // namespace

// -- order_workload -----------------------------------------------------------

order_workload::order_workload(caf::actor_system& sys, picker pick,
                               size_t clients, uint64_t max_orders)
  : sys_(sys), pick_(std::move(pick)), max_orders_(max_orders) {
  for (size_t i = 0; i < clients; ++i)
    threads_.emplace_back([this, i] {
      run(i);
    });
}

order_workload::~order_workload() {
  stop();
}

void order_workload::stop() {
  stop_ = true;
  join();
}

void order_workload::join() {
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
}

bool order_workload::wait_for_commands(uint64_t n,
                                       std::chrono::milliseconds limit) const {
  auto target = done_ + n;
  auto deadline = steady::now() + limit;
  while (done_ < target) {
    if (steady::now() > deadline)
      return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

std::map<es::uuid, command_record> order_workload::records() const {
  std::lock_guard guard{mtx_};
  return records_;
}

template <class Cmd>
bool order_workload::send(caf::scoped_actor& self, std::mt19937_64& rng,
                          const es::uuid& order, Cmd cmd) {
  auto env = es::command_envelope::to(order);
  command_record rec;
  rec.aggregate = order;
  rec.type = caf::type_name_by_id<caf::type_id<Cmd>::value>::value;
  self
    ->request(pick_(rng), caf::timespan{std::chrono::seconds(15)}, env,
              std::move(cmd))
    .receive(
      [&](es::command_result& res) {
        rec.acked = true;
        rec.events = res.events;
      },
      [&](caf::error& err) {
        rec.error = es::describe(err);
        rec.unknown = es::has_code(err, es::actors_errc::outcome_unknown)
                      || err == caf::sec::request_timeout
                      || err == caf::sec::request_receiver_down;
      });
  {
    std::lock_guard guard{mtx_};
    records_[env.command_id] = rec;
  }
  ++done_;
  return rec.acked;
}

void order_workload::run(size_t index) {
  caf::scoped_actor self{sys_};
  std::mt19937_64 rng{index * 7919 + 17};
  while (!stop_) {
    if (max_orders_ > 0 && orders_started_++ >= max_orders_)
      return;
    auto order = es::uuid::random();
    auto customer = "c" + std::to_string(rng() % 50);
    auto price = static_cast<int64_t>(100 + rng() % 900);
    // An order stops at its first failed command: the later ones would
    // only be refused for what did not happen.
    static_cast<void>(
      send(self, rng, order, orders::create_order{customer, "EUR"})
      && send(self, rng, order, orders::add_item{"sku-a", 2, price})
      && send(self, rng, order, orders::add_item{"sku-b", 1, price + 1})
      && send(self, rng, order,
              orders::pay_order{3 * price + 1, "pay-" + order.to_string()})
      && send(self, rng, order, orders::ship_order{"track"}));
  }
}

// -- verify_cluster -----------------------------------------------------------

caf::expected<verify_report>
verify_cluster(const std::string& dsn, uint32_t partitions,
               const std::map<es::uuid, command_record>* records,
               std::chrono::milliseconds catch_up) {
  es::postgres_config cfg;
  cfg.dsn = dsn;
  cfg.application_name = "esnode/verify";
  cfg.registry = orders::make_registry();
  auto store = es::make_postgres_event_store(cfg);
  if (!store)
    return std::move(store.error());
  verify_report rep;
  auto problem = [&](std::string what) {
    if (rep.problems.size() < 50)
      rep.problems.push_back(std::move(what));
  };
  // The whole log: events per command, versions per stream.
  std::map<es::uuid, uint32_t> by_command;
  std::map<es::uuid, int64_t> last_version;
  es::read_all_options opts;
  for (;;) {
    auto page = (*store)->read_all(opts);
    if (!page)
      return std::move(page.error());
    for (const auto& ev : page->events) {
      ++rep.events;
      if (ev.causation_id)
        ++by_command[*ev.causation_id];
      auto& v = last_version[ev.aggregate_id];
      if (ev.aggregate_version != v + 1)
        problem("stream " + ev.aggregate_id.to_string() + ": version "
                + std::to_string(ev.aggregate_version) + " follows "
                + std::to_string(v));
      v = ev.aggregate_version;
    }
    if (page->events.empty() || page->end_of_feed)
      break;
    opts.after_position = page->next_position;
  }
  rep.aggregates = last_version.size();
  if (records != nullptr) {
    for (const auto& [id, rec] : *records) {
      auto i = by_command.find(id);
      auto n = i == by_command.end() ? 0u : i->second;
      auto what = rec.type + " " + id.to_string();
      if (rec.acked) {
        ++rep.acked;
        if (n != rec.events || n == 0)
          problem("acknowledged " + what + " has " + std::to_string(n)
                  + " events, its answer said " + std::to_string(rec.events));
        continue;
      }
      ++rep.failures[rec.type + ": " + rec.error.substr(0, 90)];
      if (rec.unknown) {
        ++rep.unknown;
        rep.unknown_applied += n > 0 ? 1 : 0;
        if (n > 1)
          problem("unknown-outcome " + what + " has " + std::to_string(n)
                  + " events");
      } else {
        ++rep.refused;
        if (n != 0)
          problem("refused " + what + " (" + rec.error + ") has "
                  + std::to_string(n) + " events");
      }
    }
    for (const auto& [id, n] : by_command)
      if (records->count(id) == 0)
        problem("events of command " + id.to_string()
                + ", which no client sent");
  }
  // The read model, once every partition's worker has reached the head.
  auto head = (*store)->head_position();
  if (!head)
    return std::move(head.error());
  auto checkpoints = es::make_postgres_checkpoint_store(cfg);
  if (!checkpoints)
    return std::move(checkpoints.error());
  auto deadline = steady::now() + catch_up;
  for (uint32_t k = 0; k < partitions; ++k) {
    auto name = std::string{orders::order_summary_view::projection_name} + "#"
                + std::to_string(k) + "/" + std::to_string(partitions);
    for (;;) {
      auto cp = (*checkpoints)->load(name);
      if (!cp)
        return std::move(cp.error());
      if (*cp && (*cp)->position >= *head)
        break;
      if (steady::now() > deadline)
        return es::make_store_error(es::store_errc::timeout,
                                    name + " did not catch up with position "
                                      + std::to_string(*head));
      std::this_thread::sleep_for(poll);
    }
  }
  orders::order_summary expected{cfg.registry};
  if (auto err = expected.catch_up(**store))
    return err;
  auto db = es::make_postgres_read_model_db(cfg);
  if (!db)
    return std::move(db.error());
  orders::order_summary_view view{*db, cfg.registry};
  auto rows = view.rows();
  if (!rows)
    return std::move(rows.error());
  auto want = expected.rows();
  for (const auto& [id, row] : want) {
    auto i = rows->find(id);
    if (i == rows->end())
      problem("order_summary lacks order " + id.to_string());
    else if (!(i->second == row))
      problem("order_summary differs from the log for order " + id.to_string());
  }
  for (const auto& [id, row] : *rows)
    if (want.count(id) == 0)
      problem("order_summary has order " + id.to_string()
              + ", which the log does not");
  return rep;
}

} // namespace esnode
