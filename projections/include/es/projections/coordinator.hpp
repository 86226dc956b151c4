// The coordinator: runs many projections under a supervisor.
#pragma once

#include "es/projections/projection.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/subscription.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace es {

/// Progress of a rebuild: events done of total, and the rate so far.
struct rebuild_progress {
  int64_t done = 0;
  int64_t total = 0;
  double events_per_second = 0;
};

/// Runs projections as supervised projection actors: a crashed one is
/// restarted from its checkpoint with backoff, up to the restart policy's
/// limit. Blocking API for threads (not for actors). Thread-safe.
class projection_coordinator {
public:
  explicit projection_coordinator(caf::actor_system& sys,
                                  restart_policy restarts = {});

  /// Stops every projection.
  ~projection_coordinator();

  projection_coordinator(const projection_coordinator&) = delete;
  projection_coordinator& operator=(const projection_coordinator&) = delete;

  /// Starts `proj` as `cfg` says. Its name must be new
  /// (`projections_errc::duplicate_projection`); without a projection or a
  /// store, `invalid_config`.
  caf::error add(projection_ptr proj, subscription_config cfg);

  /// Starts `count` workers of one projection: worker k gets the aggregates
  /// whose id hashes to k, its own projection object from `make(k)` and its
  /// own checkpoint ("name#k/count").
  caf::error add_partitioned(std::function<projection_ptr(uint32_t)> make,
                             uint32_t count, subscription_config cfg);

  /// Stops the projection `name` and forgets it (its checkpoint stays):
  /// a cluster node that lost a partition's lease. Errors:
  /// `unknown_projection`.
  caf::error remove(const std::string& name);

  /// Names of the running projections (partition workers included).
  std::vector<std::string> names() const;

  /// The status of each projection.
  std::vector<projection_status> status();

  caf::expected<projection_status> status(const std::string& name);

  caf::error pause(const std::string& name);
  caf::error resume(const std::string& name);

  /// Waits until the projection has caught up with the head of the feed as
  /// of the call. Errors (`es/projections/errors.hpp`):
  /// `unknown_projection`, `projection_stopped` (its status says why),
  /// `not_caught_up` once `timeout` passed.
  caf::error wait_until_caught_up(const std::string& name,
                                  std::chrono::milliseconds timeout);

  /// Builds the read model anew from the whole feed, calling `progress`
  /// about every `every` until it caught up or `timeout` passed.
  /// Transactional projections that name their tables and can run on
  /// another database (`transactional_projection::tables`, `with_db`) are
  /// rebuilt in a shadow database while the live model keeps serving and
  /// its projection keeps running; when the shadow has caught up, the live
  /// projection pauses, the shadow catches up with the last events, and
  /// its tables, checkpoint and dead letters replace the live ones in one
  /// transaction. A failed or interrupted rebuild leaves the live model as
  /// it was (the shadow is discarded, or replaced by the next rebuild).
  /// One rebuild of a projection runs at a time, across processes.
  /// Other projections are cleared and replayed in place. Errors as for
  /// `wait_until_caught_up`, and `shadow_unsupported` for a projection that
  /// names its tables but has no `with_db`.
  caf::error
  rebuild(const std::string& name,
          const std::function<void(const rebuild_progress&)>& progress = {},
          std::chrono::milliseconds timeout = std::chrono::minutes(10),
          std::chrono::milliseconds every = std::chrono::milliseconds(200));

  /// The projection's actor now (it changes when the supervisor restarts
  /// it), for dead-letter replays; `not_running` while it restarts or after
  /// it failed for good.
  caf::expected<projection_actor_handle> actor(const std::string& name);

  /// Supervision view: restarts and failures.
  std::vector<child_status> supervision();

  /// One verdict over all projections: errors if one stopped or failed,
  /// warnings if one has dead letters, skipped events or lags.
  health_status health();

  /// Stops every projection (also done by the destructor).
  void stop();

private:
  caf::expected<projection_actor_handle> current(const std::string& name);

  /// What the coordinator needs to report on a projection whose actor is
  /// down: where its checkpoint lives and the feed it follows.
  struct entry {
    checkpoint_store_ptr checkpoints;
    event_store_ptr store;
    projection_ptr proj;
    subscription_config cfg;
  };

  /// `rebuild` into a shadow database, swapped in when caught up.
  caf::error rebuild_in_shadow(
    const std::string& name, const entry& e,
    const std::function<void(const rebuild_progress&)>& progress,
    std::chrono::milliseconds timeout, std::chrono::milliseconds every);

  caf::actor_system& sys_;
  supervisor_actor supervisor_;
  mutable std::mutex mtx_;
  std::vector<std::string> names_;
  std::map<std::string, entry> entries_;
};

} // namespace es
