// Building blocks of the broker bridges' consumers (Redis, RabbitMQ): the
// local subscriptions of each consumer group, shared between a bus actor and
// its supervised consumer actors, the counters they share, and the hand-off
// of a batch to the local subscriptions with retries. Not part of the
// stable API.
#pragma once

#include "es/bus/bus_stats.hpp"
#include "es/bus/event_bus.hpp"
#include "es/supervision/retry.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace es::detail {

/// One local subscription of a consumer group.
struct local_sub {
  subscription_id id = 0;
  bus_subscriber_actor delivery;
  std::vector<std::string> types;

  bool wants(const recorded_event& ev) const;
};

/// Counters shared by a bus actor and its consumers.
struct consumer_counters {
  std::atomic<uint64_t> handlers_invoked{0};
  std::atomic<uint64_t> handler_errors{0};
  std::atomic<uint64_t> dead_lettered{0};
  std::atomic<uint64_t> in_flight{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> consumer_restarts{0};

  /// Copies the consumers' counters into `x`.
  void fill(bus_stats& x) const;
};

/// The local subscriptions of each group, written by the bus actor and read
/// by the group's consumer before each round, so that a consumer its
/// supervisor restarts starts with the current ones and a subscription
/// never waits for a message to reach a consumer. Thread-safe; hold it in
/// a `group_registry_ptr`.
class group_registry : public std::enable_shared_from_this<group_registry> {
public:
  /// Replaces the subscriptions of `group`.
  void set_subs(const std::string& group, std::vector<local_sub> subs);

  /// Copies the subscriptions of `group` into `out` when they changed
  /// since `generation`, which it then updates.
  void refresh(const std::string& group, uint64_t& generation,
               std::vector<local_sub>& out);

  /// Called by a consumer when it starts: enters it as the group's running
  /// consumer (until it ends), and counts a restart in `counters` unless it
  /// is the first start since `reset_starts`.
  void started(const std::string& group, caf::actor consumer,
               consumer_counters& counters);

  /// Forgets the starts of `group` (the bus starts its consumer anew).
  void reset_starts(const std::string& group);

  /// The running consumer of `group`, if any.
  caf::actor running(const std::string& group);

private:
  std::mutex mtx_;
  std::map<std::string, std::vector<local_sub>> subs_;
  std::map<std::string, caf::actor> running_;
  std::map<std::string, uint64_t> starts_;
  std::atomic<uint64_t> generation_{1};
};

using group_registry_ptr = std::shared_ptr<group_registry>;

/// What became of the events of a batch that some handler could not take:
/// index in the batch -> why.
using batch_failures = std::map<size_t, std::string>;

/// Hands `events` to each subscription of `subs` that wants some and waits
/// for the answers, in order. A subscription that reports errors gets its
/// events once more one by one, to find the failing ones, and each of those
/// up to `max_retries` times more; what still fails is returned. A
/// subscription whose delivery actor is gone (unsubscribed meanwhile) is
/// skipped. Blocking: call it from a detached actor or a thread.
batch_failures deliver_batch(caf::actor_system& sys,
                             const std::vector<local_sub>& subs,
                             const recorded_events& events,
                             uint32_t max_retries, consumer_counters& counters);

/// Decodes `bodies` (message bodies as a broker delivered them) as event
/// envelopes and hands the events to `subs` (`deliver_batch`). Returns the
/// messages to give up, by index into `bodies`, with why: those `refuse`
/// names a reason for (asked first: no body at all, delivered too often
/// already), those that are no envelopes, and those whose handlers kept
/// failing.
batch_failures
handle_envelopes(caf::actor_system& sys, const std::vector<local_sub>& subs,
                 const std::vector<std::string_view>& bodies,
                 uint32_t max_retries, consumer_counters& counters,
                 const std::function<std::optional<std::string>(size_t)>& refuse
                 = nullptr);

/// What every broker consumer keeps: its group, the group's subscriptions
/// as last taken from the registry, and its backoff.
struct consumer_base {
  group_registry_ptr registry;
  std::string group;
  std::vector<local_sub> subs;
  uint64_t subs_generation = 0;
  uint32_t failures_in_row = 0;
  std::mt19937_64 rng{std::random_device{}()};
};

/// What a broker's consumer does in the shared loop.
struct consumer_hooks {
  /// For the log, for example "kafka bus".
  std::string label;
  /// The pause between looks while the group has no local subscription.
  std::chrono::milliseconds idle_pause{1000};
  /// The backoff after failed rounds.
  retry_config backoff;
  /// One round: read a batch, hand it over, acknowledge it.
  std::function<caf::error()> poll;
  /// The group has no local subscription (leave the group, close).
  std::function<void()> idle;
  /// A round failed (drop connections, so the broker hands out again).
  std::function<void()> failed;
};

/// The behavior of a broker consumer (a detached actor): registers it with
/// the registry as `base.group`'s running consumer, then runs rounds one
/// after another, taking the group's current subscriptions before each,
/// with backoff after failures. `base` lives in the actor's state.
caf::behavior consumer_loop(caf::event_based_actor* self, consumer_base& base,
                            consumer_counters& counters, consumer_hooks hooks);

} // namespace es::detail
