// The in-process event bus: actors inside one actor system.
#pragma once

#include "es/bus/event_bus.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace es {

/// Spawns the bus actor. Its protocol (all atoms from es/bus/type_ids.hpp):
/// - `(publish_atom, recorded_events) -> void`: answered once every
///   matching subscriber queue accepted the events. While one is full the
///   answer waits, so a publisher that awaits each publish cannot outrun
///   its slowest subscriber.
/// - `(subscribe_atom, caf::actor delivery, std::vector<std::string> types,
///   uint64_t max_queued_events) -> subscription_id`: `delivery` receives
///   `(deliver_atom, recorded_events)` requests and answers them with
///   `(uint64_t handlers_invoked, uint64_t handler_errors)` when done. The
///   bus owns `delivery` from then on and stops it on unsubscribe.
/// - `(unsubscribe_atom, subscription_id) -> bool`
/// - `(stats_atom) -> bus_stats`
/// - `(drain_atom) -> void`: answered when nothing is queued or in flight.
caf::actor spawn_in_process_bus(caf::actor_system& sys);

/// Creates an in-process bus in `sys` with its blocking facade.
event_bus_ptr make_in_process_bus(caf::actor_system& sys);

} // namespace es
