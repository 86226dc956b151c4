// The filled store the read-all and project scenarios read, and the event
// type its rows hold.
#pragma once

#include "es/store/event_store.hpp"

#include "store_scenarios.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace es::bench {

// The decoded form of sample_payload().
struct shipping_info {
  std::string method;
  std::string country;
};

template <class F>
bool fields(F& f, shipping_info& x) {
  return f("method", x.method) && f("country", x.country);
}

struct bench_item {
  static constexpr std::string_view event_type = "ItemAdded";
  static constexpr int32_t event_version = 1;
  std::string order_id;
  std::string customer;
  std::string sku;
  int32_t quantity = 0;
  int64_t unit_price_cents = 0;
  std::string currency;
  std::string note;
  std::vector<std::string> tags;
  shipping_info shipping;
};

template <class F>
bool fields(F& f, bench_item& x) {
  return f("order_id", x.order_id) && f("customer", x.customer)
         && f("sku", x.sku) && f("quantity", x.quantity)
         && f("unit_price_cents", x.unit_price_cents)
         && f("currency", x.currency) && f("note", x.note) && f("tags", x.tags)
         && f("shipping", x.shipping);
}

/// The store of the read scenarios, filled once per process with
/// `params.events` events so the framework and the raw runs read the same
/// rows. PostgreSQL stores live in a schema of their own, dropped at exit.
struct read_fixture {
  std::shared_ptr<void> keep;
  event_store_ptr store;
  std::string sqlite_path;
  std::string pg_dsn;
};

/// Returns the store, filling it on the first call.
read_fixture& shared_read_fixture(const bench_params& params);

} // namespace es::bench
