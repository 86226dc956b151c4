// The bus actor every broker bridge shares (Redis, RabbitMQ): it keeps the
// subscriptions and their groups, runs one supervised consumer actor per
// group, publishes through the bridge behind a circuit breaker, and
// answers drains. A bridge plugs in its publisher, its drain check and its
// consumers as a `broker_backend`. Not part of the stable API.
#pragma once

#include "es/bus/detail/consumer.hpp"
#include "es/bus/event_bus.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/circuit_breaker.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <memory>
#include <set>
#include <string>

namespace es::detail {

/// What a broker bridge plugs into the shared bus actor. The bus actor is
/// detached and calls these one at a time from its thread, so a backend
/// may keep a blocking connection without a lock.
class broker_backend {
public:
  virtual ~broker_backend();

  /// Publishes `events` and returns once the broker has them all. A
  /// failure of the broker is `bus_errc::broker_unavailable` (the breaker
  /// counts only those).
  virtual caf::error publish(const recorded_events& events) = 0;

  /// Whether the consumers of `groups` in this process handled everything
  /// this bus published.
  virtual caf::expected<bool> drained(const std::set<std::string>& groups) = 0;

  /// Called when a subscription first names `group`, before the subscribe
  /// returns: a broker that keeps messages only for groups it knows (a
  /// RabbitMQ queue) creates the group's place here, so nothing published
  /// after the subscribe is lost to it. A failure is logged; the consumer
  /// tries again when it starts.
  virtual caf::error prepare_group(const std::string& group) {
    static_cast<void>(group);
    return caf::none;
  }

  /// Connections the publisher opened again after losing one.
  virtual uint64_t reconnects() const {
    return 0;
  }

  /// Called every `broker_bus_options::idle_interval` (heartbeats).
  virtual void idle() {
    // nop
  }

  /// Spawns the consumer of `group` (for the supervisor, again after a
  /// crash); it reads the group's subscriptions from `registry`.
  virtual caf::actor spawn_consumer(caf::actor_system& sys,
                                    const std::string& group,
                                    group_registry_ptr registry)
    = 0;
};

struct broker_bus_options {
  /// The broker's name in logs and errors ("Redis").
  std::string broker;
  /// The group of subscriptions that name none.
  std::string default_group;
  circuit_breaker_config breaker;
  restart_policy consumer_restarts;
  /// 0: `idle` is never called.
  std::chrono::milliseconds idle_interval{0};
};

/// A broker bus: the facade over the shared bus actor, the bridge's dead
/// letters and the consumers' supervisor.
class broker_event_bus final : public event_bus {
public:
  broker_event_bus(std::string broker, event_bus_ptr inner,
                   std::shared_ptr<bus_dead_letters> dlq,
                   supervisor_actor supervisor);

  /// The broker's name, as in `broker_bus_options::broker`.
  const std::string& broker() const {
    return broker_;
  }

  const supervisor_actor& supervisor() const {
    return supervisor_;
  }

  bus_actor handle() const override;
  caf::error publish(recorded_events events) override;
  subscription_id subscribe(std::string event_type, event_handler_fn fn,
                            subscribe_options opts) override;
  subscription_id subscribe_all(std::shared_ptr<event_subscriber> sub,
                                subscribe_options opts) override;
  subscription_id subscribe_to_all_events(event_handler_fn fn,
                                          subscribe_options opts) override;
  subscription_id subscribe_actor(caf::actor target,
                                  std::vector<std::string> event_types,
                                  subscribe_options opts) override;
  bool unsubscribe(subscription_id id) override;
  bus_stats stats() override;
  caf::error drain(std::chrono::milliseconds timeout) override;
  caf::error start() override;
  caf::error stop(std::chrono::milliseconds timeout) override;
  std::shared_ptr<bus_dead_letters> dead_letters() override;

private:
  std::string broker_;
  event_bus_ptr inner_;
  std::shared_ptr<bus_dead_letters> dlq_;
  supervisor_actor supervisor_;
};

/// Spawns the shared bus actor over `backend` (detached) with its
/// supervisor and returns the bus. `counters` are the ones the backend's
/// consumers count in.
event_bus_ptr make_broker_bus(caf::actor_system& sys,
                              std::shared_ptr<broker_backend> backend,
                              broker_bus_options opts,
                              std::shared_ptr<consumer_counters> counters,
                              std::shared_ptr<bus_dead_letters> dlq);

/// The supervisor of a broker bus made by `make_broker_bus` for `broker`;
/// invalid for any other bus.
supervisor_actor broker_bus_supervisor(const event_bus_ptr& bus,
                                       const std::string& broker);

} // namespace es::detail
