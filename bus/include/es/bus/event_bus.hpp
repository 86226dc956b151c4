// The event bus port: fans committed events out to subscribers.
#pragma once

#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace es {

/// Handles one event. Returning an error (or throwing) counts as a handler
/// error; the bus goes on with the next event and the other handlers.
using event_handler_fn = std::function<caf::error(const recorded_event&)>;

/// An object that handles events of the types it declares (the
/// `subscribe_all` form). An empty `subscribed_to` means all events.
class event_subscriber {
public:
  virtual ~event_subscriber();

  virtual std::vector<std::string> subscribed_to() const = 0;

  virtual caf::error handle(const recorded_event& ev) = 0;
};

/// Identifies a subscription for `unsubscribe`.
using subscription_id = uint64_t;

/// How one subscription receives events.
struct subscribe_options {
  /// Most events queued for this subscriber before publishers wait.
  size_t max_queued_events = 10'000;
  /// Run the handler on its own thread: set for handlers that block (disk,
  /// network). Otherwise it runs on CAF's cooperative scheduler and must
  /// return quickly.
  bool blocking = false;
};

/// Counters of a bus since it started.
struct bus_stats {
  uint64_t events_published = 0;
  uint64_t handlers_invoked = 0;
  uint64_t handler_errors = 0;
  /// Deliveries handed to subscribers and not yet finished (the bus's
  /// background tasks).
  uint64_t deliveries_in_flight = 0;
  uint64_t deliveries_completed = 0;
  uint64_t subscribers = 0;
  /// Publishes held back because a subscriber's queue is full.
  uint64_t publishes_waiting = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, bus_stats& x) {
    return f(caf::meta::type_name("es.bus_stats"), x.events_published,
             x.handlers_invoked, x.handler_errors, x.deliveries_in_flight,
             x.deliveries_completed, x.subscribers, x.publishes_waiting);
  }
};

/// The event bus port. The in-process bus implements it; broker bridges
/// (Redis Streams, RabbitMQ, Kafka) implement it later.
///
/// Publishers publish only committed events (the store actor does it after
/// each append). Delivery order per publisher is kept. Handler errors are
/// isolated: one failing handler does not stop the others.
///
/// Thread-safety: all member functions may be called from any thread that
/// is not a cooperative CAF actor (they block until the bus answers).
/// Actors talk to `handle()` with messages instead (see type_ids.hpp).
class event_bus {
public:
  virtual ~event_bus();

  /// The bus actor, for actors that publish or subscribe with messages.
  virtual caf::actor handle() const = 0;

  /// Publishes `events`; returns once every subscriber queue accepted them
  /// (waits while a queue is full: backpressure).
  virtual caf::error publish(recorded_events events) = 0;

  /// Subscribes `fn` to events of `event_type`.
  virtual subscription_id subscribe(std::string event_type, event_handler_fn fn,
                                    subscribe_options opts = {})
    = 0;

  /// Subscribes `sub` to the types it declares.
  virtual subscription_id subscribe_all(std::shared_ptr<event_subscriber> sub,
                                        subscribe_options opts = {})
    = 0;

  /// Subscribes `fn` to every event.
  virtual subscription_id
  subscribe_to_all_events(event_handler_fn fn, subscribe_options opts = {})
    = 0;

  /// Subscribes an actor: it receives `(deliver_atom, recorded_events)`
  /// requests and must reply (with anything) when done; an error reply
  /// counts as a handler error. Empty `event_types` means all events.
  virtual subscription_id subscribe_actor(caf::actor target,
                                          std::vector<std::string> event_types,
                                          subscribe_options opts = {})
    = 0;

  /// Ends a subscription: its handler is stopped before it handles events
  /// still queued for it (the one it is handling finishes). Returns false
  /// for an unknown id.
  virtual bool unsubscribe(subscription_id id) = 0;

  /// Returns the counters.
  virtual bus_stats stats() = 0;

  /// Waits until every published event has been handled, or `timeout`.
  virtual caf::error drain(std::chrono::milliseconds timeout) = 0;
};

using event_bus_ptr = std::shared_ptr<event_bus>;

/// Subscribes a handler for the typed event `T`: the bus decodes payloads
/// with `registry` (upcasting old versions) and calls `fn(const T&, const
/// recorded_event&)`. A payload that does not decode counts as a handler
/// error.
template <typed_event T, class F>
subscription_id subscribe_typed(event_bus& bus,
                                std::shared_ptr<const event_registry> registry,
                                F fn, subscribe_options opts = {}) {
  auto handler = [registry = std::move(registry),
                  fn = std::move(fn)](const recorded_event& ev) -> caf::error {
    auto x = registry->decode_as<T>(ev);
    if (!x)
      return std::move(x.error());
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const T&,
                                                      const recorded_event&>>) {
      fn(*x, ev);
      return caf::none;
    } else {
      return fn(*x, ev);
    }
  };
  return bus.subscribe(std::string{T::event_type}, std::move(handler), opts);
}

} // namespace es
