// projections: the read models of docs/projections.md, run by a
// projection coordinator over events of the orders demo. The guide shows
// parts of this file (between "// [name]" markers); tests/docs keeps them
// the same and runs it.
// Laid out as the docs show it (aligned comments, one-line members):
// clang-format off
#include "es/bus/in_process_bus.hpp"
#include "es/projections/coordinator.hpp"
#include "es/projections/projection.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/supervision/actors.hpp"

#include "order.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/make_message.hpp>
#include <caf/scoped_actor.hpp>

#include <filesystem>
#include <functional>
#include <iostream>

using orders::item_added;
using orders::order_created;

// [order-totals]
class order_totals : public es::transactional_projection {
public:
  order_totals(es::read_model_db_ptr db,
               std::shared_ptr<const es::event_registry> registry)
    : transactional_projection(std::move(db)), registry_(std::move(registry)) {}

  std::string name() const override { return "order_totals"; }

  std::vector<std::string> subscribed_to() const override {
    return {"ItemAdded"};
  }

  caf::error handle(es::sql_transaction& tx,
                    const es::recorded_event& ev) override {
    auto item = registry_->decode_as<item_added>(ev);   // upcasts old versions
    if (!item)
      return std::move(item.error());
    return tx.exec("INSERT INTO totals (order_id, quantity) VALUES (?1, ?2)"
                   " ON CONFLICT (order_id) DO UPDATE"
                   " SET quantity = totals.quantity + excluded.quantity",
                   {es::sql_value{ev.aggregate_id.to_string()},
                    es::sql_value{int64_t{item->quantity}}});
  }

  caf::error reset(es::sql_transaction& tx) override {   // for rebuilds
    return tx.exec("DELETE FROM totals");
  }

private:
  std::shared_ptr<const es::event_registry> registry_;
};
// [/order-totals]

// [customer-stats]
class customer_stats : public es::declarative_projection {
public:
  customer_stats(es::read_model_db_ptr db,
                 std::shared_ptr<const es::event_registry> registry)
    : declarative_projection("customer_stats", std::move(registry),
                             db->checkpoints(), db->dead_letters()),
      db_(std::move(db)) {
    on<order_created>([this](const order_created& e,
                             const es::recorded_event& ev) {
      return once(ev, [&](es::sql_transaction& tx) {
        return tx.exec("INSERT INTO customers (name, orders) VALUES (?1, 1)"
                       " ON CONFLICT (name) DO UPDATE"
                       " SET orders = customers.orders + 1",
                       {es::sql_value{e.customer}});
      });
    });
  }

  bool blocking() const override { return true; }   // it writes to disk

private:
  caf::error once(const es::recorded_event& ev,
                  const std::function<caf::error(es::sql_transaction&)>& fn) {
    return db_->transact([&](es::sql_transaction& tx) -> caf::error {
      auto first = db_->mark_processed(tx, name(), ev.event_id);
      if (!first)
        return std::move(first.error());
      return *first ? fn(tx) : caf::error{};
    });
  }

  es::read_model_db_ptr db_;
};
// [/customer-stats]

/// Refuses every order of the customer "mallory": a deliberate failure
/// that ends in the dead-letter queue.
class audit_log : public es::projection {
public:
  std::string name() const override { return "audit_log"; }

  std::vector<std::string> subscribed_to() const override {
    return {"OrderCreated"};
  }

  caf::error handle(const es::recorded_event& ev) override {
    // An error of the application's own category: no built-in rule knows
    // it, so the classifier's pattern rule below decides.
    if (ev.payload.find("mallory") != std::string::npos)
      return caf::error{1, caf::atom("audit"),
                        caf::make_message(std::string{
                          "injected failure: mallory is not audited"})};
    return caf::none;
  }
};

namespace {

int fail(const caf::error& err) {
  std::cerr << es::describe(err) << '\n';
  return 1;
}

/// Appends one order: created, then one item per quantity given.
caf::error place_order(es::event_store& store, const std::string& customer,
                       std::vector<int32_t> quantities) {
  es::event_batch batch;
  auto created = es::make_event(order_created{customer, "EUR"});
  if (!created)
    return std::move(created.error());
  batch.push_back(std::move(*created));
  for (auto q : quantities) {
    auto added = es::make_event(item_added{"pen", q, 150});
    if (!added)
      return std::move(added.error());
    batch.push_back(std::move(*added));
  }
  es::stream_id order{"Order", es::uuid::random()};
  auto res = store.append(order, es::expected_version::no_stream(), batch);
  return res ? caf::error{} : std::move(res.error());
}

} // namespace

int main(int argc, char** argv) {
  std::filesystem::path path = argc > 1 ? argv[1] : "projections-example.db";
  std::filesystem::remove(path); // each run starts afresh
  caf::actor_system_config sys_cfg;
  es::add_projections_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};

  auto registry = orders::make_registry();
  es::event_store_ptr store = es::make_memory_event_store();
  auto bus = es::make_in_process_bus(sys);
  for (auto err : {place_order(*store, "ada", {2, 3}),
                   place_order(*store, "ada", {1}),
                   place_order(*store, "mallory", {4})})
    if (err)
      return fail(err);

  auto opened = es::make_sqlite_read_model_db(path.string());
  if (!opened)
    return fail(opened.error());
  auto db = *opened;
  if (auto err = db->transact([](es::sql_transaction& tx) -> caf::error {
        if (auto e = tx.exec("CREATE TABLE totals (order_id TEXT PRIMARY KEY,"
                             " quantity INTEGER NOT NULL)"))
          return e;
        return tx.exec("CREATE TABLE customers (name TEXT PRIMARY KEY,"
                       " orders INTEGER NOT NULL)");
      }))
    return fail(err);

  {
    // [coordinator]
    es::projection_coordinator projections{sys};      // a supervisor inside
    es::subscription_config cfg;
    cfg.store = store;                                 // catch-up reads
    cfg.bus = bus->handle();                           // live events; omit to poll the store
    if (auto err = projections.add(std::make_shared<order_totals>(db, registry), cfg))
      return fail(err);
    if (auto err = projections.wait_until_caught_up("order_totals", std::chrono::minutes(1)))
      return fail(err);
    // [/coordinator]
    if (auto err = projections.add(
          std::make_shared<customer_stats>(db, registry), cfg))
      return fail(err);
    auto audit = cfg;
    audit.checkpoints = db->checkpoints();
    audit.dead_letters = db->dead_letters();
    // [classifier]
    auto classifier = std::make_shared<es::error_classifier>();
    classifier->add_pattern_rule("injected failure",
                                 {es::error_category::application,
                                  es::error_severity::medium, false, "demo"});
    audit.classifier = classifier;
    // [/classifier]
    if (auto err = projections.add(std::make_shared<audit_log>(), audit))
      return fail(err);
    for (const auto& name : {"customer_stats", "audit_log"})
      if (auto err
          = projections.wait_until_caught_up(name, std::chrono::minutes(1)))
        return fail(err);
  }

  auto rows = [&](const std::string& sql) {
    std::vector<es::sql_row> result;
    auto err = db->transact([&](es::sql_transaction& tx) -> caf::error {
      auto got = tx.query(sql);
      if (!got)
        return std::move(got.error());
      result = std::move(*got);
      return caf::none;
    });
    if (err)
      std::cerr << es::describe(err) << '\n';
    return result;
  };
  int64_t quantity = 0;
  for (const auto& row : rows("SELECT quantity FROM totals"))
    quantity += es::sql_int(row[0]).value_or(0);
  std::cout << "order_totals: " << quantity << " items\n";
  for (const auto& row :
       rows("SELECT name, orders FROM customers ORDER BY name"))
    std::cout << "customer_stats: " << es::sql_text(row[0]) << " placed "
              << es::sql_int(row[1]).value_or(0) << " orders\n";

  auto dlq = es::spawn_dead_letter_actor(sys, db->dead_letters(), store);
  caf::scoped_actor self{sys};
  int result = 1;
  // [dead-letters]
  es::dead_letter_query q;
  q.projection = "audit_log";
  q.status = es::dead_letter_status::failed;
  self->request(dlq, caf::infinite, es::dlq_list_atom_v, q)
    .receive([&](std::vector<es::dead_letter>& xs) {
               for (const auto& x : xs)
                 std::cout << "dead letter: " << x.event_type << " in "
                           << x.projection << ": " << x.error_message << '\n';
               result = xs.size() == 1 ? 0 : 1;
             },
             [&](caf::error& err) { result = fail(err); });
  // [/dead-letters]
  self->send_exit(dlq, caf::exit_reason::user_shutdown);
  return result;
}
