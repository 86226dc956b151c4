// Supervision as actors: retrying wrapper, supervisor, dead-letter actor.
#pragma once

#include "es/store/event.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/supervision/child.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/retry.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace es {

/// Spawns an actor that forwards every request to `target` and, when the
/// answer is an error `classifier` calls retryable, sends it again after a
/// backoff, up to `cfg.max_retries` times; then it answers with
/// `supervision_errc::retries_exhausted`. Other answers pass through.
/// Dynamically typed: it forwards requests of any protocol (cast a typed
/// target with `caf::actor_cast`).
caf::actor
spawn_retrying(caf::actor_system& sys, caf::actor target, retry_config cfg,
               std::shared_ptr<const error_classifier> classifier = nullptr);

// -- supervisor ---------------------------------------------------------------

/// How a supervisor restarts crashed children.
struct restart_policy {
  /// Restarts allowed per child before it is reported unhealthy.
  uint32_t max_restarts = 5;
  /// Backoff between a crash and the restart.
  retry_config backoff{0, std::chrono::milliseconds(100),
                       std::chrono::seconds(10), 2.0, 0.1};
};

/// The supervisor's protocol (atoms in es/supervision/type_ids.hpp):
/// - `(supervise_atom, std::string name, std::shared_ptr<child_factory>)
///   -> caf::actor`: starts the child (ending one of the same name first)
///   and returns its first actor; `not_found` when the factory returns none
/// - `(children_atom) -> std::vector<child_status>`
/// - `(child_atom, std::string name) -> caf::actor`: the current actor
///   (`not_found` for unknown names, an invalid handle while restarting)
/// - `(stop_atom, std::string name) -> bool`: stops a child for good.
///
/// The children themselves stay `caf::actor`: a supervisor starts, monitors
/// and restarts actors of any protocol (see `child_factory`).
using supervisor_actor = caf::typed_actor<
  caf::replies_to<supervise_atom, std::string,
                  std::shared_ptr<child_factory>>::with<caf::actor>,
  caf::replies_to<children_atom>::with<std::vector<child_status>>,
  caf::replies_to<child_atom, std::string>::with<caf::actor>,
  caf::replies_to<stop_atom, std::string>::with<bool>>;

/// Spawns a supervisor. It monitors its children and restarts one that
/// ends with an error, after a backoff, up to the policy's limit; then the
/// child is `failed`. A child that ends normally is `stopped`. Children end
/// with the supervisor.
supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  restart_policy policy = {});

/// Starts `factory`'s child under `supervisor` as `name` and returns its
/// first actor. Blocking: call it from a thread, not from an actor.
caf::expected<caf::actor>
supervise(caf::actor_system& sys, const supervisor_actor& supervisor,
          const std::string& name, child_factory factory);

// -- dead letters -------------------------------------------------------------

/// What a dead-letter replay hands an event to: `(replay_atom,
/// recorded_event) -> void` handles the event once more; an error answer is
/// a failed replay. The projection actor speaks it
/// (`projection_actor_handle` converts to it).
using replay_target_actor
  = caf::typed_actor<caf::replies_to<replay_atom, recorded_event>::with<void>>;

/// The dead-letter actor's protocol (atoms in es/supervision/type_ids.hpp):
/// - `(dlq_add_atom, dead_letter) -> int64_t` id (repeated failures of an
///   event in a projection update one entry)
/// - `(dlq_list_atom, dead_letter_query) -> std::vector<dead_letter>`
/// - `(dlq_get_atom, int64_t id) -> std::vector<dead_letter>` (0 or 1)
/// - `(dlq_retrying_atom, int64_t id) -> bool`
/// - `(dlq_resolve_atom, int64_t id, std::string by) -> bool`
/// - `(dlq_stats_atom) -> dead_letter_stats`
/// - `(dlq_purge_atom, int64_t older_than_seconds) -> int64_t`
/// - `(dlq_replay_atom, int64_t id, replay_target_actor projection) ->
///   bool`: marks the entry retrying, sends the event to the projection as
///   `(replay_atom, recorded_event)`, and on success marks it resolved by
///   "replay"; on failure the entry records the new failure. With `events`,
///   the event is read from the log again (so a repaired event is replayed
///   as repaired); otherwise, and when the log no longer has it, the copy
///   kept in the entry is.
///
/// Store errors come back as the store's `caf::error`s (`false` or an empty
/// vector for unknown ids).
using dead_letter_actor = caf::typed_actor<
  caf::replies_to<dlq_add_atom, dead_letter>::with<int64_t>,
  caf::replies_to<dlq_list_atom,
                  dead_letter_query>::with<std::vector<dead_letter>>,
  caf::replies_to<dlq_get_atom, int64_t>::with<std::vector<dead_letter>>,
  caf::replies_to<dlq_retrying_atom, int64_t>::with<bool>,
  caf::replies_to<dlq_resolve_atom, int64_t, std::string>::with<bool>,
  caf::replies_to<dlq_stats_atom>::with<dead_letter_stats>,
  caf::replies_to<dlq_purge_atom, int64_t>::with<int64_t>,
  caf::replies_to<dlq_replay_atom, int64_t, replay_target_actor>::with<bool>>;

/// Spawns the dead-letter actor over `store` (on its own thread: the store
/// blocks); `events`, when given, is the log replays read events from.
dead_letter_actor spawn_dead_letter_actor(caf::actor_system& sys,
                                          dead_letter_store_ptr store,
                                          event_store_ptr events = nullptr);

} // namespace es
