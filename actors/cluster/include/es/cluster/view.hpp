// What a cluster node knows about the cluster: live nodes, who owns each
// shard and projection partition, and which leases this node holds.
#pragma once

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace es::cluster {

/// The lease kind of the aggregate shards; projection partitions use
/// "projection:<name>".
inline constexpr const char* shard_kind = "shards";

/// Returns the lease kind of partitioned projection `name`.
inline std::string projection_kind(const std::string& name) {
  return "projection:" + name;
}

/// A node whose PostgreSQL session is alive.
struct node_info {
  std::string node_id;
  std::string host;
  uint16_t port = 0;
  /// Process id on its host.
  int32_t pid = 0;
  /// Seconds since the epoch (UTC) of its last heartbeat and its start.
  double heartbeat_at = 0;
  double started_at = 0;
};

/// The holder of one lease item (a shard or a partition).
struct lease_owner {
  std::string node_id;
  /// Grows by one with every acquisition of the item by any node.
  int64_t epoch = 0;
  /// Seconds since the epoch (UTC).
  double acquired_at = 0;
};

/// One node's picture of the cluster after its last lease tick.
struct cluster_view {
  std::string self;
  /// Whether the lease session is up; false means this node holds nothing.
  bool connected = false;
  std::vector<node_info> nodes;
  /// Per lease kind, per item: the live owner, if any.
  std::map<std::string, std::vector<std::optional<lease_owner>>> owners;
  /// Per lease kind: items this node holds and serves, with their epochs.
  std::map<std::string, std::map<uint32_t, int64_t>> held;
  /// This node's leases are certain until then (monotonic clock): the
  /// server ends an idle lease session only `lease_ttl` after its last
  /// query, and the last query was sent before `valid_until - lease_ttl`.
  std::chrono::steady_clock::time_point valid_until;

  /// The live owner of `item` of `kind`, if any.
  const lease_owner* owner(const std::string& kind, uint32_t item) const;

  /// The live node `node_id`, if any.
  const node_info* node(const std::string& node_id) const;

  /// Whether this node holds `item` of `kind` with a lease that is still
  /// certain at `now`.
  bool serves(const std::string& kind, uint32_t item,
              std::chrono::steady_clock::time_point now) const;
};

/// The cluster as PostgreSQL records it, for status commands: every node
/// row (live or not) and every lease row.
struct cluster_status {
  struct node_row {
    node_info info;
    bool live = false;
  };
  struct lease_row {
    std::string kind;
    uint32_t item = 0;
    /// Empty when released.
    std::string node_id;
    int64_t epoch = 0;
    double acquired_at = 0;
    /// Whether `node_id` is live.
    bool live = false;
  };
  std::vector<node_row> nodes;
  std::vector<lease_row> leases;
};

/// Reads the status of cluster `cluster` from the database at `dsn`.
/// Errors: `store_errc::connection_failed`, `store_errc::internal`.
caf::expected<cluster_status> read_cluster_status(const std::string& dsn,
                                                  const std::string& cluster);

/// Renders `st` as text: one line per node with its shard and partition
/// counts, then the owner of every item.
std::string render(const cluster_status& st);

} // namespace es::cluster
