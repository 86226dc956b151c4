// The counters a bus reports.
#pragma once

#include "es/supervision/circuit_breaker.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>

namespace es {

/// Counters of a bus since it started.
struct bus_stats {
  uint64_t events_published = 0;
  uint64_t handlers_invoked = 0;
  uint64_t handler_errors = 0;
  /// Deliveries handed to subscribers and not yet finished (the bus's
  /// background tasks).
  uint64_t deliveries_in_flight = 0;
  uint64_t deliveries_completed = 0;
  uint64_t subscribers = 0;
  /// Publishes held back because a subscriber's queue is full.
  uint64_t publishes_waiting = 0;
  /// Broker buses: publishes that reached the broker and failed.
  uint64_t publish_failures = 0;
  /// Broker buses: publishes refused at once because the breaker around
  /// the broker was open.
  uint64_t publishes_rejected = 0;
  /// Broker buses: the state of the breaker around the broker (the
  /// in-process bus has none and stays `closed`).
  circuit_state broker_circuit = circuit_state::closed;
  /// Broker buses: restarts of the consumer actors by their supervisor.
  uint64_t consumer_restarts = 0;
  /// Broker buses: connections the publisher opened again after losing one
  /// (Kafka: librdkafka reconnects on its own and this stays 0).
  uint64_t broker_reconnects = 0;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, bus_stats& x) {
    return f(caf::meta::type_name("es.bus_stats"), x.events_published,
             x.handlers_invoked, x.handler_errors, x.deliveries_in_flight,
             x.deliveries_completed, x.subscribers, x.publishes_waiting,
             x.publish_failures, x.publishes_rejected, x.broker_circuit,
             x.consumer_restarts, x.broker_reconnects);
  }
};

} // namespace es
