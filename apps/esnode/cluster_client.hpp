// A client of an orders cluster, shared by `esnode drive|verify` and the
// cluster tests: threads that send whole orders to random nodes and record
// every command's outcome, and a check of the log and the partitioned read
// model afterwards.
#pragma once

#include "es/store/uuid.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace esnode {

/// What happened to one command.
struct command_record {
  es::uuid aggregate;
  /// The command's type, for reports.
  std::string type;
  bool acked = false;
  /// Events the owner reported writing.
  uint32_t events = 0;
  /// For failures: the error, described.
  std::string error;
  /// The command may have run (the node died or went silent with it);
  /// every other failure says nothing was written.
  bool unknown = false;
};

/// Client threads, each sending whole orders (create, two items, pay,
/// ship) one command at a time, every command to the router `pick` chooses;
/// an order whose command fails is left there.
class order_workload {
public:
  using picker = std::function<caf::actor(std::mt19937_64&)>;

  /// Starts `clients` threads; they stop after `max_orders` orders in all
  /// (0: until `stop`).
  order_workload(caf::actor_system& sys, picker pick, size_t clients,
                 uint64_t max_orders = 0);

  ~order_workload();

  order_workload(const order_workload&) = delete;
  order_workload& operator=(const order_workload&) = delete;

  /// Stops the threads after their current command and joins them.
  void stop();

  /// Joins the threads (after `max_orders`).
  void join();

  /// Commands finished (acknowledged or failed) so far.
  uint64_t done() const {
    return done_;
  }

  /// Waits until `n` more commands finished; false after `limit`.
  bool wait_for_commands(uint64_t n, std::chrono::milliseconds limit) const;

  std::map<es::uuid, command_record> records() const;

private:
  /// Sends one command and records its outcome; true if acknowledged.
  template <class Cmd>
  bool send(caf::scoped_actor& self, std::mt19937_64& rng,
            const es::uuid& order, Cmd cmd);

  void run(size_t index);

  caf::actor_system& sys_;
  picker pick_;
  uint64_t max_orders_;
  std::atomic<uint64_t> orders_started_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> done_{0};
  mutable std::mutex mtx_;
  std::map<es::uuid, command_record> records_;
  std::vector<std::thread> threads_;
};

/// What `verify_cluster` found.
struct verify_report {
  size_t events = 0;
  size_t aggregates = 0;
  size_t acked = 0;
  size_t refused = 0;
  size_t unknown = 0;
  /// Commands with an unknown outcome that were applied.
  size_t unknown_applied = 0;
  /// Failures by description (first 90 characters), for the report.
  std::map<std::string, size_t> failures;
  /// Every broken guarantee, a sentence each; empty when all hold.
  std::vector<std::string> problems;
};

/// Checks the orders cluster on the PostgreSQL store at `dsn` (a DSN whose
/// search_path is the store's schema): versions dense in every stream;
/// with `records`, every acknowledged command's events exactly once, every
/// unknown one's at most once, refused ones' not at all and no event of a
/// command not sent; and, once each of the `partitions` order_summary
/// workers has caught up with the head (waiting at most `catch_up`), the
/// read model equal to a fold of the log. Errors: the store's, and
/// `store_errc::timeout` when a worker did not catch up.
caf::expected<verify_report>
verify_cluster(const std::string& dsn, uint32_t partitions,
               const std::map<es::uuid, command_record>* records,
               std::chrono::milliseconds catch_up);

} // namespace esnode
