// orders verify: replays the log into fresh models and compares them with
// every aggregate and both read models; reports every bad event.
#include "es/actors/repository.hpp"
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/state_stores.hpp"

#include "cli.hpp"
#include "order.hpp"
#include "order_summary.hpp"
#include "views.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace orders {

namespace {

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
    // The ids as 32 hex digits: a BLOB on SQLite, a uuid on PostgreSQL.
    auto rows = tx.query(tx.dialect() == "postgres"
                           ? "SELECT replace(event_id::text, '-', '')"
                             " FROM processed_events"
                             " WHERE projection_name = ?1"
                           : "SELECT lower(hex(event_id)) FROM processed_events"
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
  if (views_exist(cfg)) {
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

} // namespace orders
