#include "es/actors/errors.hpp"
#include "es/actors/type_ids.hpp"
#include "es/bus/errors.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(actors_errc x) {
  switch (x) {
    case actors_errc::command_rejected: return "command_rejected";
    case actors_errc::unhandled_event: return "unhandled_event";
    case actors_errc::aggregate_not_found: return "aggregate_not_found";
    case actors_errc::handler_failed: return "handler_failed";
    case actors_errc::recovery_failed: return "recovery_failed";
    case actors_errc::version_gap: return "version_gap";
    case actors_errc::invalid_command: return "invalid_command";
    case actors_errc::timeout: return "timeout";
    case actors_errc::shard_moved: return "shard_moved";
    case actors_errc::no_shard_owner: return "no_shard_owner";
    case actors_errc::outcome_unknown: return "outcome_unknown";
  }
  return "unknown";
}

bool is_retryable(actors_errc x) {
  return x == actors_errc::timeout || x == actors_errc::recovery_failed
         || x == actors_errc::shard_moved || x == actors_errc::no_shard_owner;
}

caf::error reject(std::string reason, std::string description) {
  return caf::make_error(actors_errc::command_rejected, std::move(description),
                         std::move(reason));
}

std::string rejection_reason(const caf::error& err) {
  if (!has_code(err, actors_errc::command_rejected))
    return {};
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string, std::string>())
    return ctx.get_as<std::string>(1);
  return {};
}

namespace detail {

const char* render_actors_errc(uint8_t code) {
  return to_string(static_cast<actors_errc>(code));
}

bool classify_actors_errc(uint8_t code) {
  return is_retryable(static_cast<actors_errc>(code));
}

} // namespace detail

void add_actors_module(caf::actor_system_config& cfg) {
  add_bus_module(cfg);
  cfg.add_message_types<caf::id_block::es_actors>();
  cfg.add_error_category(
    caf::atom("es_actors"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
