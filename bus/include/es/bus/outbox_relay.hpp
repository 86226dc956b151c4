// The outbox relay: publishes the rows of a transactional outbox through
// an event bus, marking them published only once the bus took them.
#pragma once

#include "es/bus/event_bus.hpp"
#include "es/bus/relay_status.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/event_store.hpp"
#include "es/store/outbox.hpp"
#include "es/supervision/retry.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace es {

/// What an outbox relay works on and how.
struct outbox_relay_config {
  /// The rows to publish (`make_postgres_outbox`).
  outbox_ptr outbox;
  /// Where the events of the rows are read.
  event_store_ptr store;
  /// Where they go: any bus; a publish must return only once the bus (the
  /// broker) has the events.
  event_bus_ptr bus;
  /// For logs and status.
  std::string name = "outbox-relay";
  /// The aggregates this relay serves. Run several relays on one outbox
  /// only with disjoint partitions that cover all (0 of n, ..., n-1 of n):
  /// then each aggregate's events are published in order by one relay.
  outbox_partition partition;
  /// Rows claimed, read and published at once.
  size_t batch_size = 100;
  /// Failed publishes of a row before the relay gives it up: it stays
  /// `failed` in the outbox (counted and logged) for an operator, and the
  /// aggregate's later events go on without it.
  int32_t max_retries = 10;
  /// The pause after a failed publish or claim, growing with each failure
  /// in a row (its `max_retries` is not used).
  retry_config backoff{0, std::chrono::milliseconds(100),
                       std::chrono::seconds(10), 2.0, 0.1};
  /// How often an idle relay looks for new rows. Zero: it relays only when
  /// asked (`caf::flush_atom`), as an operator's tool or a test would.
  caf::timespan poll_interval = std::chrono::milliseconds(100);
};

/// The relay's protocol:
/// - `(stats_atom) -> outbox_relay_status`
/// - `(caf::flush_atom) -> uint64_t`: relays now, batch after batch, until
///   nothing of its partition is left to claim; returns the rows published
///   by this call, or the error that stopped it (the rows of the failed
///   batch are marked failed and retried later).
using outbox_relay_actor
  = caf::typed_actor<caf::replies_to<stats_atom>::with<outbox_relay_status>,
                     caf::replies_to<caf::flush_atom>::with<uint64_t>>;

/// Spawns a relay (detached: the outbox, the store and a broker bus block).
/// It claims rows of its partition oldest first (`outbox::claim`, so relays
/// of other processes skip them meanwhile), reads their events from the
/// store, publishes them in one call, and marks them published in the same
/// claim only after the publish returned. A failed publish marks the
/// batch's rows failed (their retry count grows) and the relay pauses
/// (`backoff`); the next claim takes them first again, so the order of an
/// aggregate's events holds. A crash between publish and mark leaves the
/// rows to be published again: delivery is at least once, and consumers
/// dedupe by event id (`event_deduper`). Polls every `poll_interval` while
/// idle, and at once while rows remain. Returns an invalid handle without
/// an outbox, a store or a bus.
outbox_relay_actor spawn_outbox_relay(caf::actor_system& sys,
                                      outbox_relay_config cfg);

} // namespace es
