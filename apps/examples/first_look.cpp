// first_look: events as structs, a registry, the SQLite store, one append.
// README.md shows this file; tests/docs keeps the two the same.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_registry.hpp"

#include <iostream>

struct item_added {
  static constexpr std::string_view event_type = "ItemAdded";
  static constexpr int32_t event_version = 1;
  std::string sku;
  int32_t quantity = 0;
};

template <class F>
bool fields(F& f, item_added& x) {
  return f("sku", x.sku) && f("quantity", x.quantity);
}

int main(int argc, char** argv) {
  auto registry = std::make_shared<es::event_registry>();
  if (auto err = registry->add<item_added>()) {
    std::cerr << es::describe(err) << '\n';
    return 1;
  }
  es::sqlite_config cfg;
  cfg.path = argc > 1 ? argv[1] : "events.db";
  cfg.registry = registry; // refuse types the registry does not know
  auto store = es::make_sqlite_event_store(cfg);
  if (!store) {
    std::cerr << es::describe(store.error()) << '\n';
    return 1;
  }
  es::stream_id order{"Order", es::uuid::random()};
  auto ev = es::make_event(item_added{"SKU-1", 2});
  if (!ev) {
    std::cerr << es::describe(ev.error()) << '\n';
    return 1;
  }
  auto res = (*store)->append(order, es::expected_version::no_stream(), {*ev});
  if (!res) {
    // A conflict says which version the stream had: es::get_version_conflict.
    std::cerr << es::describe(res.error()) << '\n';
    return 1;
  }
  std::cout << "appended version " << res->last_version << " at position "
            << res->last_position << '\n';
}
