// The projection actor: feeds one projection from its checkpoint, live.
#pragma once

#include "es/bus/event_bus.hpp"
#include "es/projections/projection.hpp"
#include "es/projections/subscription.hpp"
#include "es/projections/type_ids.hpp"
#include "es/supervision/actors.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

namespace es {

/// The projection actor's protocol (atoms in es/projections/type_ids.hpp
/// and below):
/// - `(status_atom) -> projection_status`
/// - `(pause_atom) -> bool`, `(resume_atom) -> bool`: false when it was
///   not paused
/// - `(caf::reset_atom) -> bool`: clears the read model and the checkpoint
///   and starts over from the beginning (a rebuild)
/// - `(reload_atom) -> bool`: starts again from the stored checkpoint, for
///   a read model replaced underneath (a shadow rebuild swapped in)
/// - `(replay_atom, recorded_event) -> void`: handles one event again (a
///   dead-letter replay) without touching the checkpoint
///   (`replay_target_actor`)
/// - `(deliver_atom, recorded_events) -> (uint64_t, uint64_t)`: live events
///   from the bus (`bus_subscriber_actor`); the actor subscribes itself
using projection_actor_handle
  = caf::typed_actor<caf::replies_to<status_atom>::with<projection_status>,
                     caf::replies_to<pause_atom>::with<bool>,
                     caf::replies_to<resume_atom>::with<bool>,
                     caf::replies_to<caf::reset_atom>::with<bool>,
                     caf::replies_to<reload_atom>::with<bool>>::
    extend_with<replay_target_actor, bus_subscriber_actor>;

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
/// Returns an invalid handle when `cfg.store` is not set.
projection_actor_handle spawn_projection_actor(caf::actor_system& sys,
                                               projection_ptr proj,
                                               subscription_config cfg);

} // namespace es
