// The event bus port: fans committed events out to subscribers.
#pragma once

#include "es/bus/bus_stats.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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

/// What the bus sends a subscription's delivery actor: `(deliver_atom,
/// recorded_events) -> (uint64_t handlers_invoked, uint64_t
/// handler_errors)`, answered once the events are handled (or otherwise
/// accounted for). Until then they count against the subscription's queue
/// bound. The projection actor speaks it.
using bus_subscriber_actor = caf::typed_actor<
  caf::replies_to<deliver_atom, recorded_events>::with<uint64_t, uint64_t>>;

/// The bus actor's protocol (`event_bus::handle`, `spawn_in_process_bus`):
/// - `(caf::publish_atom, recorded_events) -> void`: answered once every
///   matching subscriber queue accepted the events. While one is full the
///   answer waits, so a publisher that awaits each publish cannot outrun
///   its slowest subscriber.
/// - `(caf::subscribe_atom, bus_subscriber_actor delivery,
///   std::vector<std::string> types, uint64_t max_queued_events,
///   std::string group) -> subscription_id`: empty `types` means every
///   event; `group` as `subscribe_options::group`. The bus owns `delivery`
///   from then on and stops it on unsubscribe.
/// - `(caf::unsubscribe_atom, subscription_id) -> bool`: false for an
///   unknown id
/// - `(stats_atom) -> bus_stats`
/// - `(drain_atom) -> void`: answered when nothing is queued or in flight.
/// - `(start_atom) -> void`, `(stop_atom) -> void`: as `event_bus::start`
///   and `event_bus::stop` (the stop answered once the handlers finished).
using bus_actor = caf::typed_actor<
  caf::replies_to<caf::publish_atom, recorded_events>::with<void>,
  caf::replies_to<caf::subscribe_atom, bus_subscriber_actor,
                  std::vector<std::string>, uint64_t,
                  std::string>::with<subscription_id>,
  caf::replies_to<caf::unsubscribe_atom, subscription_id>::with<bool>,
  caf::replies_to<stats_atom>::with<bus_stats>,
  caf::replies_to<drain_atom>::with<void>,
  caf::replies_to<start_atom>::with<void>,
  caf::replies_to<stop_atom>::with<void>>;

/// How one subscription receives events.
struct subscribe_options {
  /// Most events queued for this subscriber before publishers wait.
  size_t max_queued_events = 10'000;
  /// Run the handler on its own thread: set for handlers that block (disk,
  /// network). Otherwise it runs on CAF's cooperative scheduler and must
  /// return quickly.
  bool blocking = false;
  /// The consumer group of this subscription. The subscriptions of one
  /// group share its events (each event reaches one of them), and every
  /// group gets every event. Empty: on the in-process bus a group of its
  /// own (the subscription sees every event it wants); on a broker bus the
  /// bus's configured group. The in-process bus hands all of an aggregate's
  /// events to one member, in order, while the members stay the same.
  std::string group;
};

/// A message a broker bus gave up on, as its dead-letter place keeps it.
struct bus_dead_letter {
  /// The broker's id of the dead letter (a stream entry id on Redis).
  std::string id;
  /// The consumer group that gave up on it, and why.
  std::string group;
  std::string error;
  /// How often it had been delivered.
  int64_t deliveries = 0;
  /// When it was given up, as `format_timestamp` writes it.
  std::string failed_at;
  /// The event, when the message was an event envelope; otherwise `raw`
  /// holds the message as it came (another program wrote it).
  std::optional<recorded_event> event;
  std::string raw;
};

/// The dead letters of a broker bus (`event_bus::dead_letters`). Calls
/// block; thread-safe.
class bus_dead_letters {
public:
  virtual ~bus_dead_letters();

  /// Oldest first, up to `limit`, after the dead letter `after` (empty:
  /// from the first).
  virtual caf::expected<std::vector<bus_dead_letter>>
  list(size_t limit, const std::string& after = {}) = 0;

  virtual caf::expected<int64_t> count() = 0;

  /// Publishes the dead letter's event again and removes it: every group
  /// receives it anew (those that had handled it dedupe by event id).
  /// False for an unknown id; `invalid_argument` for a dead letter without
  /// an event (`raw`), which can only be discarded.
  virtual caf::expected<bool> replay(const std::string& id) = 0;

  /// Replays every dead letter that holds an event; returns how many.
  virtual caf::expected<int64_t> replay_all() = 0;

  /// Removes a dead letter without replaying it. False for an unknown id.
  virtual caf::expected<bool> discard(const std::string& id) = 0;
};

/// The event bus port. The in-process bus and the broker bridges (Redis
/// Streams so far) implement it.
///
/// Publishers publish only committed events (the store actor does it after
/// each append). Delivery order per publisher is kept. Handler errors are
/// isolated: one failing handler does not stop the others.
///
/// Thread-safety: all member functions may be called from any thread that
/// is not a cooperative CAF actor (they block until the bus answers).
/// Actors talk to `handle()` with messages instead (see `bus_actor`).
class event_bus {
public:
  virtual ~event_bus();

  /// The bus actor, for actors that publish or subscribe with messages.
  virtual bus_actor handle() const = 0;

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
  /// `target` is dynamically typed because any reply will do; an actor
  /// that answers as the bus wants can subscribe itself at the bus actor
  /// as a `bus_subscriber_actor` instead.
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

  /// Starts consuming. A broker bus reads from the broker only once
  /// started, so subscribe first and then start: no subscription misses the
  /// first events of its group. The in-process bus delivers from the
  /// beginning; `start` lets it take publishes again after `stop`.
  virtual caf::error start() = 0;

  /// Stops consuming: returns once the handlers that are running have
  /// finished (on a broker bus, their messages are acknowledged), or with
  /// `publish_timeout` after `timeout`. No handler starts afterwards until
  /// `start`. The in-process bus, which keeps nothing, refuses publishes
  /// with `bus_closed` while stopped; a broker bus keeps publishing and
  /// the events wait in the broker.
  virtual caf::error stop(std::chrono::milliseconds timeout) = 0;

  /// The broker's dead letters, or nullptr for a bus that keeps none (the
  /// in-process bus: a failed handler is counted and logged).
  virtual std::shared_ptr<bus_dead_letters> dead_letters() {
    return nullptr;
  }
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
