// Building blocks shared by the buses of this library (the in-process bus
// and the broker bridges): the blocking facade over a bus actor and the
// delivery actors that run the facade's handlers. Not part of the stable
// API.
#pragma once

#include "es/bus/event_bus.hpp"

#include <caf/fwd.hpp>

#include <atomic>
#include <memory>
#include <string>

namespace es::detail {

/// Cleared by `unsubscribe` before the bus hears of it: from then on a
/// delivery actor starts no handler, whatever its mailbox still holds.
using active_flag = std::shared_ptr<std::atomic<bool>>;

/// The `event_bus` over a bus actor that speaks `bus_actor`: every call is
/// a request to it; subscriptions get delivery actors of their own. The
/// facade stops the bus actor when it goes.
event_bus_ptr make_bus_facade(caf::actor_system& sys, bus_actor bus);

/// A delivery actor that runs `fn` for each event of a delivery, isolating
/// its failures (an error or an exception counts as a handler error, and
/// the next event goes on), until `active` is cleared. `blocking`: on a
/// thread of its own.
bus_subscriber_actor
spawn_function_delivery(caf::actor_system& sys, event_handler_fn fn,
                        std::string label, bool blocking, active_flag active);

/// A delivery actor that forwards deliveries to `target` and waits for its
/// answer (any answer but an error means done).
bus_subscriber_actor spawn_actor_delivery(caf::actor_system& sys,
                                          caf::actor target,
                                          active_flag active);

} // namespace es::detail
