// The lease keeper: one thread per node with its own PostgreSQL session.
// It registers the node, renews its heartbeat, and holds and balances the
// leases (session advisory locks) of the shards and projection partitions.
#pragma once

#include "es/cluster/node.hpp"
#include "es/cluster/view.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
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

/// The lease table as read at the start of a tick: kind -> item -> owner
/// (live or not), kept up to date with this node's own claims.
using owner_rows = std::map<std::string, std::map<uint32_t, lease_owner>>;

/// Runs the lease loop on a thread of its own.
class lease_keeper {
public:
  lease_keeper(node_config cfg, std::vector<lease_kind> kinds);

  ~lease_keeper();

  /// The port other nodes dial, registered with the node (before `start`).
  void set_port(uint16_t port) {
    cfg_.port = port;
  }

  /// Starts the thread; it calls `changed` after publishing each view.
  void start(std::function<void()> changed);

  /// Ends the session (releasing every lock at once), calls `released` for
  /// every held item and joins the thread.
  void stop();

  std::shared_ptr<const cluster_view> view() const;

private:
  struct state;

  void run();

  /// One tick: heartbeat, live nodes, balancing; the new view, or the error
  /// that ended the session.
  caf::expected<std::shared_ptr<const cluster_view>> tick();

  /// Connects, registers the node and forgets rows of its earlier sessions.
  caf::error open_session();

  /// Unlocks what was drained last tick, then gives up or takes items of
  /// kind `index` towards this node's share.
  caf::error balance(size_t index, const std::set<std::string>& live,
                     owner_rows& table);

  /// Closes the session and calls `released` for every held item.
  void lose_all();

  std::shared_ptr<cluster_view> empty_view() const;

  void publish(std::shared_ptr<const cluster_view> v);

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
