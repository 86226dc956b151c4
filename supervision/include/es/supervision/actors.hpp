// Supervision as actors: retrying wrapper, supervisor, dead-letter actor.
#pragma once

#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/retry.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace es {

/// Spawns an actor that forwards every request to `target` and, when the
/// answer is an error `classifier` calls retryable, sends it again after a
/// backoff, up to `cfg.max_retries` times; then it answers with
/// `supervision_errc::retries_exhausted`. Other answers pass through.
caf::actor
spawn_retrying(caf::actor_system& sys, caf::actor target, retry_config cfg,
               std::shared_ptr<const error_classifier> classifier = nullptr);

// -- supervisor ---------------------------------------------------------------

/// Spawns (or respawns) one supervised child. A child that keeps state
/// elsewhere (a projection's checkpoint) resumes from it when respawned.
using child_factory = std::function<caf::actor(caf::actor_system&)>;

/// How a supervisor restarts crashed children.
struct restart_policy {
  /// Restarts allowed per child before it is reported unhealthy.
  uint32_t max_restarts = 5;
  /// Backoff between a crash and the restart.
  retry_config backoff{0, std::chrono::milliseconds(100),
                       std::chrono::seconds(10), 2.0, 0.1};
};

enum class child_state : uint8_t { running, restarting, failed, stopped };

const char* to_string(child_state x);

/// What a supervisor reports about one child.
struct child_status {
  std::string name;
  child_state state = child_state::running;
  uint32_t restarts = 0;
  std::string last_error;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, child_status& x) {
    return f(caf::meta::type_name("es.child_status"), x.name, x.state,
             x.restarts, x.last_error);
  }
};

/// Spawns a supervisor. It monitors its children and restarts one that
/// ends with an error, after a backoff, up to the policy's limit; then the
/// child is `failed`. A child that ends normally is `stopped`. Children end
/// with the supervisor. Protocol:
/// - `(children_atom) -> std::vector<child_status>`
/// - `(child_atom, std::string name) -> caf::actor`: the current actor
///   (`not_found` for unknown names, an invalid handle while restarting)
/// - `(stop_atom, std::string name) -> bool`: stops a child for good.
caf::actor spawn_supervisor(caf::actor_system& sys, restart_policy policy = {});

/// Starts `factory`'s child under `supervisor` as `name` and returns its
/// first actor. Blocking: call it from a thread, not from an actor.
caf::expected<caf::actor>
supervise(caf::actor_system& sys, const caf::actor& supervisor,
          const std::string& name, child_factory factory);

// -- dead letters -------------------------------------------------------------

/// Spawns the dead-letter actor over `store` (on its own thread: the store
/// blocks). Protocol (atoms in es/supervision/type_ids.hpp):
/// - `(dlq_add_atom, dead_letter) -> int64_t` id (repeated failures of an
///   event in a projection update one entry)
/// - `(dlq_list_atom, std::string projection, std::string status,
///   uint64_t limit, uint64_t offset) -> std::vector<dead_letter>` (empty
///   strings select all)
/// - `(dlq_get_atom, int64_t id) -> std::vector<dead_letter>` (0 or 1)
/// - `(dlq_retrying_atom, int64_t id) -> bool`
/// - `(dlq_resolve_atom, int64_t id, std::string by) -> bool`
/// - `(dlq_stats_atom) -> dead_letter_stats`
/// - `(dlq_purge_atom, int64_t older_than_seconds) -> int64_t`
/// - `(dlq_replay_atom, int64_t id, caf::actor projection) -> bool`: marks
///   the entry retrying, sends the event to the projection as
///   `(replay_atom, recorded_event)`, and on success marks it resolved by
///   "replay"; on failure the entry records the new failure. With `events`,
///   the event is read from the log again (so a repaired event is replayed
///   as repaired); otherwise, and when the log no longer has it, the copy
///   kept in the entry is.
caf::actor spawn_dead_letter_actor(caf::actor_system& sys,
                                   dead_letter_store_ptr store,
                                   event_store_ptr events = nullptr);

} // namespace es
