// The node's router: the entry for commands from this process and others.
#pragma once

#include "es/cluster/node.hpp"
#include "es/cluster/view.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <functional>
#include <memory>
#include <typeindex>
#include <unordered_map>
#include <vector>

namespace es::cluster::detail {

/// What the router needs from its node; fixed before the router starts.
struct router_env {
  node_config cfg;
  /// The region that runs each command type.
  std::unordered_map<std::type_index, caf::actor> regions;
  /// Every region once.
  std::vector<caf::actor> all_regions;
  std::function<std::shared_ptr<const cluster_view>()> view;
};

/// Spawns the router. Messages:
/// - `(command_envelope, Cmd) -> command_result`: runs the command on the
///   shard's owner: here, or forwarded to the owner's router; retried after
///   `shard_moved` and while the shard has no owner, until the deadline.
/// - `(forward_atom, command_envelope, Cmd) -> command_result`: from
///   another node's router; runs here if this node serves the shard, else
///   `shard_moved`.
/// - `(leases_atom)`: the lease keeper published a new view; passivates the
///   aggregates of shards no longer served and retries waiting commands.
caf::actor spawn_router(caf::actor_system& sys,
                        std::shared_ptr<const router_env> env);

} // namespace es::cluster::detail
