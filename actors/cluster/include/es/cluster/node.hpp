// A cluster node: one process of a cluster that shares a PostgreSQL store.
// It owns some of the aggregate shards and projection partitions through
// PostgreSQL session advisory locks, runs the aggregates and partition
// workers of what it owns, and forwards commands for other shards to their
// owners over CAF's middleman. See docs/cluster.md.
#pragma once

#include "es/actors/aggregate_region.hpp"
#include "es/cluster/view.hpp"
#include "es/projections/projection.hpp"
#include "es/projections/subscription.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <typeindex>
#include <vector>

namespace es::cluster {

struct node_config {
  /// Unique within the cluster; a node that restarts with the same id
  /// replaces its old row.
  std::string node_id;
  /// Names the cluster: nodes of different clusters can share a database.
  std::string cluster = "default";
  /// Where the middleman listens, and the address other nodes dial.
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  uint16_t port = 0;
  /// The PostgreSQL database that holds the leases (normally the store's).
  std::string dsn;
  /// Aggregate ids hash into this many shards. Every node of a cluster
  /// must use the same count.
  uint32_t shards = 64;
  /// How often a node renews its heartbeat and rebalances.
  std::chrono::milliseconds tick{500};
  /// The server ends a lease session idle this long (`idle_session_timeout`),
  /// releasing its locks: how long a paused node keeps its leases. More
  /// than a few ticks.
  std::chrono::milliseconds lease_ttl{3000};
  /// How long a command may wait for an owner and retry after
  /// `shard_moved`.
  std::chrono::milliseconds command_deadline{10000};
  /// How long a forwarded command may take at the owner before the sender
  /// reports `outcome_unknown`.
  std::chrono::milliseconds forward_timeout{5000};
};

/// Rejects a config that cannot work (empty id or DSN, zero shards, a TTL
/// under two ticks) with `store_errc::invalid_argument`.
caf::error validate(const node_config& cfg);

class node_impl;

/// A cluster node. Add aggregate types and partitioned projections, then
/// `start`. Commands go to `router()`, from this process or any other (the
/// router is published on the node's port): `(command_envelope, Cmd) ->
/// command_result`, answered by the aggregate wherever its shard lives.
/// Errors beyond the command's own: `no_shard_owner` (no owner before the
/// deadline; nothing done), `outcome_unknown` (the owner went down with
/// the command), both from `es/actors/errors.hpp`.
class node {
public:
  node(caf::actor_system& sys, node_config cfg);

  /// Stops the node (`stop`).
  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Runs aggregate class `A` on this node, for the shards it owns.
  template <class A>
  void add_aggregate(aggregate_options opts, region_options ropts = {}) {
    auto shared = std::make_shared<const aggregate_options>(std::move(opts));
    add_region(
      ropts,
      [shared](caf::local_actor* region, const uuid& id) {
        return region->spawn(aggregate_actor<A>, id, shared);
      },
      command_types(typename A::commands{}));
  }

  /// Runs `partitions` workers of a projection across the cluster: each
  /// node runs the workers whose partition lease it holds. `make(k)` builds
  /// worker k; `cfg` as for `projection_coordinator::add_partitioned` (its
  /// checkpoints must live in the shared database so a worker resumes
  /// where its previous node stopped).
  void add_partitioned(std::string name, uint32_t partitions,
                       std::function<projection_ptr(uint32_t)> make,
                       subscription_config cfg);

  /// Creates the cluster tables if needed, publishes the router on the
  /// configured port and starts taking leases. Errors:
  /// `store_errc::invalid_argument` (config), `connection_failed`,
  /// CAF's errors for a port in use.
  caf::error start();

  /// Releases every lease (by ending the lease session), stops the
  /// partition workers and the regions.
  void stop();

  /// Where commands go.
  caf::actor router() const;

  /// The port the router listens on (after `start`).
  uint16_t port() const;

  const node_config& config() const;

  /// The picture after the last lease tick.
  std::shared_ptr<const cluster_view> view() const;

  /// Names of the partition workers running here now.
  std::vector<std::string> running_partitions() const;

private:
  using spawner = std::function<caf::actor(caf::local_actor*, const uuid&)>;

  template <class... Cmds>
  static std::vector<std::type_index> command_types(command_list<Cmds...>) {
    return {std::type_index{typeid(Cmds)}...};
  }

  void add_region(region_options ropts, spawner fn,
                  std::vector<std::type_index> commands);

  std::unique_ptr<node_impl> impl_;
};

/// Registers the cluster's message types and loads CAF's middleman. Call
/// once on the config before starting the system (instead of
/// `add_actors_module`).
void add_cluster_module(caf::actor_system_config& cfg);

} // namespace es::cluster
