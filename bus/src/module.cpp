#include "es/bus/errors.hpp"
#include "es/bus/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(bus_errc x) {
  switch (x) {
    case bus_errc::handler_failed: return "handler_failed";
    case bus_errc::unknown_subscription: return "unknown_subscription";
    case bus_errc::bus_closed: return "bus_closed";
    case bus_errc::publish_timeout: return "publish_timeout";
    case bus_errc::broker_unavailable: return "broker_unavailable";
  }
  return "unknown";
}

bool is_retryable(bus_errc x) {
  return x == bus_errc::publish_timeout || x == bus_errc::broker_unavailable;
}

namespace detail {

const char* render_bus_errc(uint8_t code) {
  return to_string(static_cast<bus_errc>(code));
}

bool classify_bus_errc(uint8_t code) {
  return is_retryable(static_cast<bus_errc>(code));
}

} // namespace detail

void add_bus_module(caf::actor_system_config& cfg) {
  add_supervision_module(cfg);
  cfg.add_message_types<caf::id_block::es_bus>();
  cfg.add_error_category(
    caf::atom("es_bus"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
