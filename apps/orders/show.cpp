// orders show: one order's history, its state after each event.
#include "es/store/errors.hpp"

#include "cli.hpp"
#include "order.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace orders {

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
