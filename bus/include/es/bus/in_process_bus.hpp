// The in-process event bus: actors inside one actor system.
#pragma once

#include "es/bus/event_bus.hpp"

#include <caf/fwd.hpp>

namespace es {

/// Spawns the bus actor; `bus_actor` (es/bus/event_bus.hpp) is its
/// protocol. Each subscription made through the blocking facade gets a
/// delivery actor of its own.
bus_actor spawn_in_process_bus(caf::actor_system& sys);

/// Creates an in-process bus in `sys` with its blocking facade.
event_bus_ptr make_in_process_bus(caf::actor_system& sys);

} // namespace es
