// The projection actor: feeds one projection from its checkpoint, live.
#pragma once

#include "es/projections/projection.hpp"
#include "es/projections/subscription.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace es {

/// Spawns the actor that runs `proj` as `cfg` says. It starts from the
/// checkpoint (or as `cfg.start` says), catches up from the store in pages,
/// then goes live: from the bus when `cfg.bus` is set, otherwise by
/// following the store. Live events are taken in global-position order; one
/// at or below the position already reached is ignored and a gap is filled
/// from the store first, so nothing is skipped or handled twice at the
/// switch.
///
/// Handler errors follow `cfg.errors` (stop, continue, retry then continue,
/// retry then dead-letter, dead-letter only). Every event ends handled,
/// skipped by the policy, or in the dead-letter store before the checkpoint
/// passes it. Failures of the store, the checkpoint store or the
/// dead-letter store end the actor with the error, for a supervisor to
/// restart it from its checkpoint.
///
/// A `transactional_projection` handles each batch in one transaction of
/// its database together with the checkpoint and any dead letters.
///
/// Protocol (atoms in es/projections/type_ids.hpp):
/// - `(status_atom) -> projection_status`
/// - `(pause_atom) -> bool`, `(resume_atom) -> bool`
/// - `(reset_atom) -> bool`: clears the read model and the checkpoint and
///   starts over from the beginning (a rebuild)
/// - `(replay_atom, recorded_event) -> void`: handles one event again (a
///   dead-letter replay) without touching the checkpoint
/// - `(deliver_atom, recorded_events) -> (uint64_t, uint64_t)`: live events
///   from the bus
caf::actor spawn_projection_actor(caf::actor_system& sys, projection_ptr proj,
                                  subscription_config cfg);

} // namespace es
