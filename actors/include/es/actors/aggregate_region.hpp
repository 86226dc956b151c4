// The aggregate region: routes commands to aggregate actors by id.
#pragma once

#include "es/actors/aggregate_actor.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/local_actor.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace es {

/// How a region manages its aggregate actors.
struct region_options {
  /// Passivate an aggregate actor after this long without commands; zero
  /// disables the idle check.
  caf::timespan idle_timeout = std::chrono::minutes(5);
  /// Most aggregate actors alive at once; beyond it the least recently used
  /// one is passivated.
  size_t max_live = 100'000;
};

/// Spawns an aggregate actor for one id, as a child of the region.
using aggregate_spawner
  = std::function<caf::actor(caf::local_actor* region, const uuid& id)>;

/// Spawns a region that spawns its aggregates with `spawner`. Prefer
/// `spawn_region<A>`.
caf::actor spawn_region_with(caf::actor_system& sys, region_options opts,
                             aggregate_spawner spawner);

/// Spawns the region for aggregate class `A`.
///
/// Protocol:
/// - `(command_envelope, Cmd) -> command_result`: routed to the aggregate
///   actor for `envelope.aggregate_id`, spawned on demand. A command for a
///   live aggregate is put into its actor's mailbox during the send (the
///   region is an actor pool whose dispatch looks the aggregate up), so the
///   region adds no message to it. The aggregate answers the sender
///   directly (a request's sender, and the sender of an asynchronous
///   message: the coordinator of a joint command, see joint_command.hpp).
///   Commands for an aggregate whose actor is being spawned or passivated
///   wait in the region and go, in order, to its next actor.
/// - `(passivate_atom, uuid) -> bool`: passivates one aggregate now.
/// - `(passivate_atom, shard_set) -> uint64_t`: passivates the live
///   aggregates of those shards (a cluster node that lost them); returns
///   how many.
/// - `(snapshot_atom, uuid) -> bool`: the live aggregate writes a snapshot
///   now (false if it is not live or its state has no codec).
/// - `(region_stats_atom) -> region_stats`.
/// An aggregate actor that crashes is forgotten; its command got an error
/// and the next command for that id gets a fresh actor.
template <class A>
caf::actor spawn_region(caf::actor_system& sys, aggregate_options aggregates,
                        region_options opts = {}) {
  auto shared
    = std::make_shared<const aggregate_options>(std::move(aggregates));
  return spawn_region_with(
    sys, opts, [shared](caf::local_actor* region, const uuid& id) {
      return region->spawn(aggregate_actor<A>, id, shared);
    });
}

} // namespace es
