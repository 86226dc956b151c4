// CAF type ids and atoms of the projections module.
#pragma once

#include "es/actors/type_ids.hpp"
#include "es/projections/subscription.hpp"

#include <caf/type_id.hpp>

namespace caf {
class actor_system_config;
} // namespace caf

CAF_BEGIN_TYPE_ID_BLOCK(es_projections, caf::id_block::es_actors::end)

CAF_ADD_TYPE_ID(es_projections, (es::projection_status))
CAF_ADD_TYPE_ID(es_projections, (std::vector<es::projection_status>))

CAF_ADD_ATOM(es_projections, es, status_atom, "status")
CAF_ADD_ATOM(es_projections, es, pause_atom, "pause")
CAF_ADD_ATOM(es_projections, es, resume_atom, "resume")
CAF_ADD_ATOM(es_projections, es, pump_atom, "pump")
CAF_ADD_ATOM(es_projections, es, lease_atom, "lease")
CAF_ADD_ATOM(es_projections, es, reload_atom, "reload")
// A rebuild uses CAF's own caf::reset_atom, timers caf::tick_atom.

CAF_END_TYPE_ID_BLOCK(es_projections)

namespace es {

/// Registers the projections module's types (and those of the modules
/// below it).
void add_projections_module(caf::actor_system_config& cfg);

} // namespace es
