// The aggregate actor: one aggregate instance whose mailbox serialises its
// commands.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"
#include "es/store/codec.hpp"
#include "es/store/histogram.hpp"
#include "es/store/state_stores.hpp"

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/duration.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>

namespace es {

/// Lists the command types an aggregate handles: `using commands =
/// es::command_list<create_order, add_item>;`. For each, the aggregate has
/// `caf::error handle(const Cmd&)`. Commands are plain structs with an
/// `inspect` overload and a CAF type id, so they can cross the network.
template <class... Cmds>
struct command_list {};

/// When aggregate actors write snapshots (through the store actor, which
/// needs `store_actor_config::snapshots`).
struct snapshot_policy {
  /// Write a snapshot whenever the version crosses a multiple of this many
  /// events; 0 disables.
  uint32_t every_events = 0;
  /// Write a snapshot when the actor is passivated.
  bool on_passivation = false;
  /// Load the latest snapshot before replaying events.
  bool load = true;
};

/// Counters shared by the aggregate actors of one region. Thread-safe.
struct aggregate_metrics {
  std::atomic<uint64_t> recoveries{0};
  std::atomic<uint64_t> events_replayed{0};
  std::atomic<uint64_t> snapshots_loaded{0};
  /// Snapshots found but not used: other schema version or unreadable.
  std::atomic<uint64_t> snapshot_misses{0};
  std::atomic<uint64_t> snapshots_written{0};
  /// Commands answered, and of them those answered with an error (a
  /// refusal by the aggregate included).
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> commands_failed{0};
  /// Commands run again after a version conflict.
  std::atomic<uint64_t> conflict_retries{0};
  /// From a command's arrival at its aggregate actor to its answer, in
  /// seconds (loading the aggregate and retries included).
  histogram command_seconds{histogram::latency_bounds()};
};

/// What aggregate actors need from their environment.
struct aggregate_options {
  store_actor store;
  std::shared_ptr<const event_registry> registry;
  /// When set, emitted events carry this tenant and loading another
  /// tenant's stream fails with `store_errc::tenant_mismatch`.
  std::optional<uuid> tenant_id;
  /// How often a command runs again after `wrong_expected_version` (another
  /// writer appended first) before the conflict goes to the caller.
  uint32_t max_conflict_retries = 3;
  /// How long to wait for the store actor. Infinite by default: the store
  /// actor answers every request (with an error if it must), and adapters
  /// bound their own waits (SQLite's busy timeout, PostgreSQL's statement
  /// timeout). A finite value costs a timer per request.
  caf::duration store_timeout = caf::infinite;
  /// Events per page when loading.
  size_t page_size = 1000;
  /// How long a part of a joint command waits for the coordinator's
  /// verdict (joint_command.hpp); on timeout the actor ends, since the
  /// coordinator may have committed (the coordinator then answers from the
  /// store's results). Keep it above the coordinator's whole run.
  caf::duration joint_timeout = caf::duration{std::chrono::minutes(5)};
  snapshot_policy snapshots;
  std::shared_ptr<aggregate_metrics> metrics
    = std::make_shared<aggregate_metrics>();
};

template <class A>
struct aggregate_actor_state {
  static inline const char* name = "es.aggregate";
  std::unique_ptr<A> agg;
  bool recovered = false;
  /// The sender of the joint command part being run.
  caf::actor joint_coordinator;
};

template <class A>
using aggregate_actor_type = caf::stateful_actor<aggregate_actor_state<A>>;

} // namespace es

#include "es/actors/detail/aggregate_actor_impl.hpp"

namespace es {

/// The aggregate actor for aggregate class `A` and instance `id`. It loads
/// its stream on the first command, then runs commands one at a time:
/// handler, append with the expected version, apply, reply. A command that
/// fails a business rule is answered with that error and changes nothing. A
/// handler that throws is answered with `handler_failed` and ends the actor.
/// `(passivate_atom)` ends it after the commands before it.
template <class A>
caf::behavior aggregate_actor(aggregate_actor_type<A>* self, uuid id,
                              std::shared_ptr<const aggregate_options> opts) {
  self->state.agg = std::make_unique<A>(id, opts->registry);
  self->state.agg->set_tenant(opts->tenant_id);
  return detail::aggregate_behavior<A>(self, opts, typename A::commands{});
}

} // namespace es
