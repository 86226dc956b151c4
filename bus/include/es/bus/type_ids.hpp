// CAF type ids and atoms of the bus module, chained after the
// supervision module's.
#pragma once

#include "es/bus/bus_stats.hpp"
#include "es/bus/relay_status.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/type_id.hpp>

namespace caf {
class actor_system_config;
} // namespace caf

CAF_BEGIN_TYPE_ID_BLOCK(es_bus, caf::id_block::es_supervision::end)

CAF_ADD_TYPE_ID(es_bus, (es::bus_stats))
CAF_ADD_TYPE_ID(es_bus, (es::outbox_relay_status))

// Publishing and subscribing use CAF's own atoms: caf::publish_atom,
// caf::subscribe_atom, caf::unsubscribe_atom.
CAF_ADD_ATOM(es_bus, es, deliver_atom, "deliver")
CAF_ADD_ATOM(es_bus, es, stats_atom, "stats")
CAF_ADD_ATOM(es_bus, es, drain_atom, "drain")
CAF_ADD_ATOM(es_bus, es, start_atom, "start")

CAF_END_TYPE_ID_BLOCK(es_bus)

namespace es {

/// Registers the bus module's types and error category (and the store's).
void add_bus_module(caf::actor_system_config& cfg);

} // namespace es
