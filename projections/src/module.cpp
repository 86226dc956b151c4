#include "es/projections/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

void add_projections_module(caf::actor_system_config& cfg) {
  add_actors_module(cfg);
  cfg.add_message_types<caf::id_block::es_projections>();
}

} // namespace es
