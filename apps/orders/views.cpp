#include "views.hpp"

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include <caf/sec.hpp>

namespace orders {

namespace {

using es::sql_transaction;
using es::sql_value;

std::optional<order_status> parse_status(const std::string& x) {
  for (auto s : {order_status::none, order_status::draft, order_status::paid,
                 order_status::shipped, order_status::cancelled})
    if (x == to_string(s))
      return s;
  return std::nullopt;
}

// BIGINT: 64-bit on PostgreSQL, integer affinity on SQLite.
caf::error create_summary_tables(sql_transaction& tx) {
  if (auto err = tx.exec("CREATE TABLE IF NOT EXISTS order_summary ("
                         " order_id TEXT PRIMARY KEY,"
                         " customer TEXT NOT NULL,"
                         " status TEXT NOT NULL,"
                         " items BIGINT NOT NULL DEFAULT 0,"
                         " total_cents BIGINT NOT NULL DEFAULT 0,"
                         " paid_cents BIGINT NOT NULL DEFAULT 0,"
                         " version BIGINT NOT NULL)"))
    return err;
  return tx.exec("CREATE TABLE IF NOT EXISTS order_lines ("
                 " order_id TEXT NOT NULL,"
                 " sku TEXT NOT NULL,"
                 " quantity BIGINT NOT NULL,"
                 " unit_price_cents BIGINT NOT NULL,"
                 " PRIMARY KEY (order_id, sku))");
}

caf::error create_customer_tables(sql_transaction& tx) {
  if (auto err = tx.exec("CREATE TABLE IF NOT EXISTS customer_stats ("
                         " customer TEXT PRIMARY KEY,"
                         " orders BIGINT NOT NULL DEFAULT 0,"
                         " paid_orders BIGINT NOT NULL DEFAULT 0,"
                         " cancelled_orders BIGINT NOT NULL DEFAULT 0,"
                         " revenue_cents BIGINT NOT NULL DEFAULT 0)"))
    return err;
  // Which customer an order belongs to and what it paid: the later events
  // name neither.
  return tx.exec("CREATE TABLE IF NOT EXISTS customer_orders ("
                 " order_id TEXT PRIMARY KEY,"
                 " customer TEXT NOT NULL,"
                 " paid_cents BIGINT NOT NULL DEFAULT 0)");
}

caf::error missing_row(const es::recorded_event& ev, const char* table) {
  return es::make_store_error(es::store_errc::invalid_argument,
                              std::string{table} + " has no row for order "
                                + ev.aggregate_id.to_string() + " (event "
                                + ev.event_type + " at position "
                                + std::to_string(ev.global_position) + ")");
}

} // namespace

// -- order_summary_view -------------------------------------------------------

order_summary_view::order_summary_view(
  es::read_model_db_ptr db, std::shared_ptr<const es::event_registry> registry)
  : transactional_projection(std::move(db)), registry_(std::move(registry)) {
  // nop
}

const es::event_registry* order_summary_view::type_registry() const {
  return registry_.get();
}

std::vector<std::string> order_summary_view::tables() const {
  return {"order_summary", "order_lines"};
}

caf::error order_summary_view::create_tables(sql_transaction& tx) {
  return create_summary_tables(tx);
}

std::shared_ptr<es::transactional_projection>
order_summary_view::with_db(es::read_model_db_ptr db) const {
  return std::make_shared<order_summary_view>(std::move(db), registry_);
}

std::string order_summary_view::name() const {
  return projection_name;
}

std::vector<std::string> order_summary_view::subscribed_to() const {
  return {std::string{order_created::event_type},
          std::string{item_added::event_type},
          std::string{item_removed::event_type},
          std::string{order_paid::event_type},
          std::string{order_shipped::event_type},
          std::string{order_cancelled::event_type}};
}

caf::error order_summary_view::handle(sql_transaction& tx,
                                      const es::recorded_event& ev) {
  auto decoded = registry_->decode(ev);
  if (!decoded)
    return std::move(decoded.error());
  sql_value id{ev.aggregate_id.to_string()};
  sql_value version{ev.aggregate_version};
  if (auto* created = decoded->as<order_created>())
    return tx.exec("INSERT INTO order_summary (order_id, customer, status,"
                   " version) VALUES (?1, ?2, 'draft', ?3)"
                   " ON CONFLICT (order_id) DO NOTHING",
                   {id, sql_value{created->customer}, version});
  // Every other event updates the row the creation made, in stream order:
  // an event the row already has changes nothing (a replay), and one that
  // does not follow the row's version is refused, so a late dead-letter
  // replay never moves a row backwards (replay the earlier entries first,
  // or rebuild).
  auto found
    = tx.query("SELECT version FROM order_summary WHERE order_id = ?1", {id});
  if (!found)
    return std::move(found.error());
  if (found->empty())
    return missing_row(ev, "order_summary");
  auto at = es::sql_int(found->front().at(0)).value_or(0);
  if (ev.aggregate_version <= at)
    return caf::none;
  if (ev.aggregate_version != at + 1)
    return caf::make_error(
      es::store_errc::invalid_argument,
      "order_summary: order " + ev.aggregate_id.to_string() + " is at version "
        + std::to_string(at) + "; version "
        + std::to_string(ev.aggregate_version)
        + " does not follow (the events between are missing from the view: "
          "replay them first, or rebuild)");
  caf::error err;
  if (auto* added = decoded->as<item_added>()) {
    err
      = tx.exec("INSERT INTO order_lines (order_id, sku, quantity,"
                " unit_price_cents) VALUES (?1, ?2, ?3, ?4)"
                " ON CONFLICT (order_id, sku) DO UPDATE SET"
                " quantity = order_lines.quantity + excluded.quantity,"
                " unit_price_cents = excluded.unit_price_cents",
                {id, sql_value{added->sku}, sql_value{int64_t{added->quantity}},
                 sql_value{added->unit_price_cents}});
  } else if (auto* removed = decoded->as<item_removed>()) {
    err = tx.exec("DELETE FROM order_lines WHERE order_id = ?1 AND sku = ?2",
                  {id, sql_value{removed->sku}});
  } else if (auto* paid = decoded->as<order_paid>()) {
    err = tx.exec("UPDATE order_summary SET status = 'paid', paid_cents = ?2"
                  " WHERE order_id = ?1",
                  {id, sql_value{paid->amount_cents}});
  } else if (decoded->as<order_shipped>() != nullptr) {
    err = tx.exec("UPDATE order_summary SET status = 'shipped'"
                  " WHERE order_id = ?1",
                  {id});
  } else if (decoded->as<order_cancelled>() != nullptr) {
    err = tx.exec("UPDATE order_summary SET status = 'cancelled'"
                  " WHERE order_id = ?1",
                  {id});
  }
  if (err)
    return err;
  return tx.exec("UPDATE order_summary SET version = ?2,"
                 " items = (SELECT COALESCE(SUM(quantity), 0) FROM order_lines"
                 "          WHERE order_id = ?1),"
                 " total_cents = (SELECT COALESCE(SUM(quantity"
                 "                * unit_price_cents), 0)"
                 "                FROM order_lines WHERE order_id = ?1)"
                 " WHERE order_id = ?1",
                 {id, version});
}

caf::error order_summary_view::reset(sql_transaction& tx) {
  if (auto err = create_summary_tables(tx))
    return err;
  if (auto err = tx.exec("DELETE FROM order_lines"))
    return err;
  return tx.exec("DELETE FROM order_summary");
}

caf::expected<std::map<es::uuid, summary_row>> order_summary_view::rows() {
  std::map<es::uuid, summary_row> result;
  auto err = db().transact([&](sql_transaction& tx) -> caf::error {
    auto rows = tx.query("SELECT order_id, customer, status, items,"
                         " total_cents, paid_cents, version"
                         " FROM order_summary");
    if (!rows)
      return std::move(rows.error());
    for (auto& r : *rows) {
      auto id = es::uuid::parse(es::sql_text(r[0]));
      auto status = parse_status(es::sql_text(r[2]));
      if (!id || !status)
        return es::make_store_error(es::store_errc::corrupt_database,
                                    "order_summary has a bad row: "
                                      + es::sql_text(r[0]) + " "
                                      + es::sql_text(r[2]));
      summary_row row;
      row.customer = es::sql_text(r[1]);
      row.status = *status;
      row.items = static_cast<int32_t>(es::sql_int(r[3]).value_or(0));
      row.total_cents = es::sql_int(r[4]).value_or(0);
      row.paid_cents = es::sql_int(r[5]).value_or(0);
      row.version = es::sql_int(r[6]).value_or(0);
      result.emplace(*id, std::move(row));
    }
    return caf::none;
  });
  if (err)
    return err;
  return result;
}

// -- customer_totals ----------------------------------------------------------

customer_totals::customer_totals(
  std::shared_ptr<const es::event_registry> registry)
  : registry_(std::move(registry)) {
  // nop
}

caf::error customer_totals::apply(const es::recorded_event& ev) {
  auto decoded = registry_->decode(ev);
  if (!decoded)
    return std::move(decoded.error());
  if (auto* created = decoded->as<order_created>()) {
    orders_[ev.aggregate_id] = {created->customer, 0};
    ++rows_[created->customer].orders;
    return caf::none;
  }
  auto i = orders_.find(ev.aggregate_id);
  if (i == orders_.end())
    return caf::none;
  auto& [customer, paid_cents] = i->second;
  auto& row = rows_[customer];
  if (auto* paid = decoded->as<order_paid>()) {
    paid_cents = paid->amount_cents;
    ++row.paid_orders;
    row.revenue_cents += paid->amount_cents;
  } else if (decoded->as<order_cancelled>() != nullptr) {
    ++row.cancelled_orders;
    row.revenue_cents -= paid_cents;
  }
  return caf::none;
}

// -- customer_stats_view ------------------------------------------------------

customer_stats_view::customer_stats_view(
  es::read_model_db_ptr db, std::shared_ptr<const es::event_registry> registry,
  bool fail_on_cancellations)
  : declarative_projection(projection_name, std::move(registry),
                           db->checkpoints(), db->dead_letters()),
    db_(std::move(db)), fail_on_cancellations_(fail_on_cancellations) {
  on<order_created>(
    [this](const order_created& e, const es::recorded_event& ev) {
      return once(ev, [&](sql_transaction& tx) -> caf::error {
        sql_value customer{e.customer};
        if (auto err
            = tx.exec("INSERT INTO customer_orders (order_id,"
                      " customer) VALUES (?1, ?2)",
                      {sql_value{ev.aggregate_id.to_string()}, customer}))
          return err;
        return tx.exec("INSERT INTO customer_stats (customer, orders)"
                       " VALUES (?1, 1) ON CONFLICT (customer) DO UPDATE"
                       " SET orders = customer_stats.orders + 1",
                       {customer});
      });
    });
  on<order_paid>([this](const order_paid& e, const es::recorded_event& ev) {
    return once(ev, [&](sql_transaction& tx) -> caf::error {
      sql_value id{ev.aggregate_id.to_string()};
      sql_value amount{e.amount_cents};
      auto customer = tx.query("UPDATE customer_orders SET paid_cents = ?2"
                               " WHERE order_id = ?1 RETURNING customer",
                               {id, amount});
      if (!customer)
        return std::move(customer.error());
      if (customer->empty())
        return missing_row(ev, "customer_orders");
      return tx.exec("UPDATE customer_stats SET paid_orders = paid_orders"
                     " + 1, revenue_cents = revenue_cents + ?2"
                     " WHERE customer = ?1",
                     {customer->front().front(), amount});
    });
  });
  on<order_cancelled>(
    [this](const order_cancelled&, const es::recorded_event& ev) -> caf::error {
      if (fail_on_cancellations_)
        return caf::make_error(caf::sec::runtime_error,
                               std::string{injected_failure}
                                 + ": customer_stats refuses OrderCancelled"
                                   " (--fail-cancellations)");
      return once(ev, [&](sql_transaction& tx) -> caf::error {
        auto order = tx.query("SELECT customer, paid_cents FROM customer_orders"
                              " WHERE order_id = ?1",
                              {sql_value{ev.aggregate_id.to_string()}});
        if (!order)
          return std::move(order.error());
        if (order->empty())
          return missing_row(ev, "customer_orders");
        auto& row = order->front();
        return tx.exec("UPDATE customer_stats SET cancelled_orders ="
                       " cancelled_orders + 1, revenue_cents = revenue_cents"
                       " - ?2 WHERE customer = ?1",
                       {row[0], row[1]});
      });
    });
}

bool customer_stats_view::blocking() const {
  return true;
}

caf::error customer_stats_view::once(
  const es::recorded_event& ev,
  const std::function<caf::error(sql_transaction&)>& fn) {
  return db_->transact([&](sql_transaction& tx) -> caf::error {
    auto first = db_->mark_processed(tx, projection_name, ev.event_id);
    if (!first)
      return std::move(first.error());
    if (!*first)
      return caf::none;
    return fn(tx);
  });
}

caf::error customer_stats_view::clear() {
  return db_->transact([](sql_transaction& tx) -> caf::error {
    if (auto err = tx.exec("DELETE FROM customer_orders"))
      return err;
    if (auto err = tx.exec("DELETE FROM customer_stats"))
      return err;
    return tx.exec("DELETE FROM processed_events WHERE projection_name = ?1",
                   {sql_value{std::string{projection_name}}});
  });
}

caf::expected<std::map<std::string, customer_row>> customer_stats_view::rows() {
  std::map<std::string, customer_row> result;
  auto err = db_->transact([&](sql_transaction& tx) -> caf::error {
    auto rows = tx.query("SELECT customer, orders, paid_orders,"
                         " cancelled_orders, revenue_cents"
                         " FROM customer_stats");
    if (!rows)
      return std::move(rows.error());
    for (auto& r : *rows) {
      customer_row row;
      row.orders = es::sql_int(r[1]).value_or(0);
      row.paid_orders = es::sql_int(r[2]).value_or(0);
      row.cancelled_orders = es::sql_int(r[3]).value_or(0);
      row.revenue_cents = es::sql_int(r[4]).value_or(0);
      result.emplace(es::sql_text(r[0]), row);
    }
    return caf::none;
  });
  if (err)
    return err;
  return result;
}

// -- views --------------------------------------------------------------------

caf::expected<views>
open_views(es::read_model_db_ptr db,
           std::shared_ptr<const es::event_registry> registry,
           bool fail_on_cancellations) {
  // Nodes or runs starting together race on CREATE TABLE IF NOT EXISTS
  // (PostgreSQL): a failed attempt is tried again.
  caf::error err;
  for (int attempt = 0; attempt < 5; ++attempt) {
    err = db->transact([](sql_transaction& tx) -> caf::error {
      if (auto err = create_summary_tables(tx))
        return err;
      return create_customer_tables(tx);
    });
    if (!err)
      break;
  }
  if (err)
    return err;
  views result;
  result.db = db;
  result.summary = std::make_shared<order_summary_view>(db, registry);
  result.customers = std::make_shared<customer_stats_view>(
    db, std::move(registry), fail_on_cancellations);
  return result;
}

caf::expected<views>
open_views(const std::string& path,
           std::shared_ptr<const es::event_registry> registry,
           bool fail_on_cancellations) {
  auto db = es::make_sqlite_read_model_db(path);
  if (!db)
    return std::move(db.error());
  return open_views(*db, std::move(registry), fail_on_cancellations);
}

} // namespace orders
