// The lease keeper: one thread per node with its own PostgreSQL session.
// It registers the node, renews its heartbeat, and holds and balances the
// leases (session advisory locks) of the shards and projection partitions.
#pragma once

#include "es/cluster/node.hpp"
#include "es/cluster/view.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace es::cluster::detail {

/// One kind of leased item: shards, or the partitions of one projection.
struct lease_kind {
  std::string kind;
  uint32_t items = 0;
  /// Called on the lease thread after the item's lock was taken: start
  /// serving it.
  std::function<void(uint32_t item, int64_t epoch)> acquired;
  /// Called on the lease thread when the item must no longer be served:
  /// the node gives it up (then unlocks on the next tick) or lost its
  /// session (already unlocked by the server).
  std::function<void(uint32_t item)> released;
};

/// Runs the lease loop on a thread of its own.
class lease_keeper {
public:
  lease_keeper(node_config cfg, std::vector<lease_kind> kinds,
               std::function<void()> changed);

  ~lease_keeper();

  /// The port other nodes dial, registered with the node (before `start`).
  void set_port(uint16_t port) {
    cfg_.port = port;
  }

  /// Starts the thread.
  void start();

  /// Ends the session (releasing every lock at once), calls `released` for
  /// every held item and joins the thread.
  void stop();

  std::shared_ptr<const cluster_view> view() const;

private:
  struct state;

  void run();

  node_config cfg_;
  std::unique_ptr<state> st_;
  std::function<void()> changed_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::shared_ptr<const cluster_view> view_;
  std::thread thread_;
};

/// Creates the cluster tables if they are missing (serialised across
/// processes by an advisory lock).
caf::error create_cluster_tables(const std::string& dsn);

} // namespace es::cluster::detail
