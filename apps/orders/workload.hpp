// The demo's workload: order plans and the client actors that run them.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "order.hpp"
#include "order_summary.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

namespace orders {

using order_command = std::variant<create_order, add_item, remove_item,
                                   pay_order, ship_order, cancel_order>;

/// The commands one client sends to one order, in order. Some are meant to
/// be rejected (shipping before paying, paying the wrong amount, ...).
struct order_plan {
  es::uuid id;
  std::vector<order_command> commands;
};

/// Plans `new_orders` new orders and one continuation for each unfinished
/// order in `existing` (drafts get paid or cancelled, paid orders shipped).
std::vector<order_plan>
make_plans(size_t new_orders, const std::map<es::uuid, summary_row>& existing,
           uint64_t seed);

/// What one client saw.
struct client_report {
  uint64_t accepted = 0;
  std::map<std::string, uint64_t> rejected;
  /// Errors that are not business-rule rejections, with a sample message.
  uint64_t failed = 0;
  std::string first_failure;
  std::vector<double> latencies_us;
};

/// Shared between the clients and the main thread.
struct workload {
  std::vector<order_plan> plans;
  std::atomic<size_t> next_plan{0};
  std::atomic<uint64_t> commands_done{0};
  uint64_t total_commands = 0;
  std::vector<client_report> reports;
  /// Set by the first infrastructure failure (a full disk, a lost
  /// database): clients then take no new plans.
  std::atomic<bool> stopped{false};
  std::mutex stop_mtx;
  std::string stop_reason;
  /// Commands not sent because their plan's earlier command failed, or the
  /// workload stopped.
  std::atomic<uint64_t> commands_abandoned{0};
};

/// Spawns client number `index`: it takes plans from `w` one at a time,
/// sends their commands to `region` one after the other, records results in
/// `w->reports[index]`, and sends `(caf::ok_atom, uint64_t index)` to
/// `done` when no plan is left. A command that fails for a reason other
/// than a business rule ends its plan (the later commands would only be
/// rejected for what did not happen); an infrastructure failure stops the
/// whole workload.
caf::actor spawn_client(caf::actor_system& sys, caf::actor region,
                        std::shared_ptr<workload> w, size_t index,
                        caf::actor done);

} // namespace orders
