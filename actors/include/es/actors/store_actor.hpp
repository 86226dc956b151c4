// The store actor: an event store adapter behind actor messages.
#pragma once

#include "es/actors/type_ids.hpp"
#include "es/bus/event_bus.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstddef>

namespace es {

/// The store actor's interface. Errors come back as `caf::error` with the
/// store's codes. `find_event_atom` and `snapshot_load_atom` answer with
/// zero or one element. Snapshot messages need
/// `store_actor_config::snapshots`; without it saves answer false and loads
/// nothing.
using store_actor = caf::typed_actor<
  caf::replies_to<append_atom, append_request>::with<append_result>,
  caf::replies_to<append_atomic_atom, std::vector<append_request>>::with<
    std::vector<append_result>>,
  caf::replies_to<read_correlated_atom, uuid,
                  read_all_options>::with<all_slice>,
  caf::replies_to<read_stream_atom, stream_id,
                  read_stream_options>::with<stream_slice>,
  caf::replies_to<read_all_atom, read_all_options>::with<all_slice>,
  caf::replies_to<stream_version_atom, stream_id>::with<int64_t>,
  caf::replies_to<find_event_atom, uuid>::with<recorded_events>,
  caf::replies_to<head_position_atom>::with<int64_t>,
  caf::replies_to<metrics_atom>::with<store_metrics>,
  caf::replies_to<snapshot_save_atom, snapshot>::with<bool>,
  caf::replies_to<snapshot_load_atom, stream_id>::with<std::vector<snapshot>>>;

/// Options of `spawn_store_actor`.
struct store_actor_config {
  /// Actors serving reads next to the one writer.
  size_t readers = 2;
  /// Run on own threads (`caf::detached`). Must be set for adapters whose
  /// calls block (SQLite, PostgreSQL); the in-memory store does not need it.
  /// `std::nullopt` asks the store (`event_store::blocking`).
  std::optional<bool> detached;
  /// When set, committed events are published to this bus actor (see
  /// `spawn_in_process_bus`) in commit order, after the commit. The writer
  /// keeps at most `max_pending_publishes` publishes unanswered and stops
  /// taking appends beyond that (backpressure from slow subscribers).
  bus_actor bus;
  size_t max_pending_publishes = 4;
  /// Where snapshots go (served by the reader actors).
  snapshot_store_ptr snapshots;
  /// How often the writer sends an append again, with the same event ids,
  /// after a retryable store error (a lost connection, a busy database, a
  /// commit whose outcome is unknown) before the error goes to the caller.
  /// A retry of an append that was in fact committed is answered from the
  /// log, so the caller never has to choose between losing events and
  /// writing them twice; its events are published then too.
  uint32_t append_retries = 5;
  /// Wait before the first retry; it doubles up to `max_retry_backoff`.
  std::chrono::milliseconds retry_backoff{20};
  std::chrono::milliseconds max_retry_backoff{1'000};
};

/// Spawns the store actor in front of `store`: one writer that turns the
/// appends waiting in its mailbox into one `append_many` call (one
/// transaction on adapters that group-commit), and `readers` actors for the
/// reads, all behind one handle. Every append keeps its own version check
/// and gets its own result. An `append_atomic_atom` message (all requests
/// or none, see `event_store::append_atomic`) is committed after the
/// appends queued before it; it is not retried by the writer (the caller
/// retries with the same event ids), and its events are published like
/// the others.
store_actor spawn_store_actor(caf::actor_system& sys, event_store_ptr store,
                              store_actor_config cfg = {});

} // namespace es
