#include "es/store/errors.hpp"
#include "es/store/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

void add_store_module(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::es_store>();
  cfg.add_error_category(
    caf::atom("es_store"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
