#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(supervision_errc x) {
  switch (x) {
    case supervision_errc::circuit_open: return "circuit_open";
    case supervision_errc::retries_exhausted: return "retries_exhausted";
    case supervision_errc::too_many_errors: return "too_many_errors";
    case supervision_errc::restart_limit_reached:
      return "restart_limit_reached";
    case supervision_errc::not_found: return "not_found";
  }
  return "unknown";
}

bool is_retryable(supervision_errc x) {
  return x == supervision_errc::circuit_open;
}

std::optional<int64_t> retry_after_ms(const caf::error& err) {
  if (!has_code(err, supervision_errc::circuit_open))
    return std::nullopt;
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string, int64_t>())
    return ctx.get_as<int64_t>(1);
  return std::nullopt;
}

namespace detail {

const char* render_supervision_errc(uint8_t code) {
  return to_string(static_cast<supervision_errc>(code));
}

bool classify_supervision_errc(uint8_t code) {
  return is_retryable(static_cast<supervision_errc>(code));
}

} // namespace detail

void add_supervision_module(caf::actor_system_config& cfg) {
  add_store_module(cfg);
  cfg.add_message_types<caf::id_block::es_supervision>();
  cfg.add_error_category(
    caf::atom("es_superv"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
