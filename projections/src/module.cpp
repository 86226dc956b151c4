#include "es/projections/errors.hpp"
#include "es/projections/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(projections_errc x) {
  switch (x) {
    case projections_errc::handler_failed: return "handler_failed";
    case projections_errc::projection_stopped: return "projection_stopped";
    case projections_errc::not_caught_up: return "not_caught_up";
    case projections_errc::unknown_projection: return "unknown_projection";
    case projections_errc::duplicate_projection: return "duplicate_projection";
    case projections_errc::not_running: return "not_running";
    case projections_errc::invalid_config: return "invalid_config";
    case projections_errc::shadow_unsupported: return "shadow_unsupported";
  }
  return "unknown";
}

bool is_retryable(projections_errc x) {
  return x == projections_errc::not_caught_up
         || x == projections_errc::not_running;
}

namespace detail {

const char* render_projections_errc(uint8_t code) {
  return to_string(static_cast<projections_errc>(code));
}

bool classify_projections_errc(uint8_t code) {
  return is_retryable(static_cast<projections_errc>(code));
}

} // namespace detail

void add_projections_module(caf::actor_system_config& cfg) {
  add_actors_module(cfg);
  cfg.add_message_types<caf::id_block::es_projections>();
  cfg.add_error_category(
    caf::atom("es_proj"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
