// CAF type ids and atoms of the actors module, chained after the bus's.
#pragma once

#include "es/actors/command.hpp"
#include "es/actors/shard.hpp"
#include "es/bus/type_ids.hpp"

#include <caf/type_id.hpp>

namespace caf {
class actor_system_config;
} // namespace caf

namespace es {

/// Counters of an aggregate region.
struct region_stats {
  /// Aggregate actors alive now.
  uint64_t live = 0;
  uint64_t spawned = 0;
  uint64_t passivated = 0;
  uint64_t commands_routed = 0;
  /// Commands held while their aggregate was passivating.
  uint64_t commands_stashed = 0;
  /// Aggregate actors that ended with an error.
  uint64_t crashed = 0;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, region_stats& x) {
    return f(caf::meta::type_name("es.region_stats"), x.live, x.spawned,
             x.passivated, x.commands_routed, x.commands_stashed, x.crashed);
  }
};

} // namespace es

CAF_BEGIN_TYPE_ID_BLOCK(es_actors, caf::id_block::es_bus::end)

CAF_ADD_TYPE_ID(es_actors, (es::command_envelope))
CAF_ADD_TYPE_ID(es_actors, (es::command_result))
CAF_ADD_TYPE_ID(es_actors, (es::region_stats))
CAF_ADD_TYPE_ID(es_actors, (es::shard_set))

CAF_ADD_ATOM(es_actors, es, append_atom, "append")
CAF_ADD_ATOM(es_actors, es, read_stream_atom, "readstream")
CAF_ADD_ATOM(es_actors, es, read_all_atom, "readall")
CAF_ADD_ATOM(es_actors, es, stream_version_atom, "streamver")
CAF_ADD_ATOM(es_actors, es, find_event_atom, "findevent")
CAF_ADD_ATOM(es_actors, es, head_position_atom, "head")
CAF_ADD_ATOM(es_actors, es, metrics_atom, "metrics")
CAF_ADD_ATOM(es_actors, es, passivate_atom, "passivate")
CAF_ADD_ATOM(es_actors, es, region_stats_atom, "regionstat")
CAF_ADD_ATOM(es_actors, es, version_atom, "version")
CAF_ADD_ATOM(es_actors, es, snapshot_atom, "snapshot")
CAF_ADD_ATOM(es_actors, es, snapshot_save_atom, "snapsave")
CAF_ADD_ATOM(es_actors, es, snapshot_load_atom, "snapload")
// The cluster: a command forwarded to its shard's owner, and a change of
// the leases a node holds.
CAF_ADD_ATOM(es_actors, es, forward_atom, "forward")
CAF_ADD_ATOM(es_actors, es, leases_atom, "leases")
// Timers and the store writer's flush use CAF's own caf::tick_atom and
// caf::flush_atom.

// Appends to several streams at once, and causal chains.
CAF_ADD_ATOM(es_actors, es, append_atomic_atom, "appendatom")
CAF_ADD_ATOM(es_actors, es, read_correlated_atom, "readcorr")
// A part of a joint command offering its events (joint_command.hpp).
CAF_ADD_ATOM(es_actors, es, prepared_atom, "prepared")
CAF_ADD_TYPE_ID(es_actors, (std::vector<es::command_result>))

CAF_END_TYPE_ID_BLOCK(es_actors)

namespace es {

/// Registers the actors module's types and error category, and those of the
/// modules below it. Call once on the config before starting the system.
void add_actors_module(caf::actor_system_config& cfg);

} // namespace es
