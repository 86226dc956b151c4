// How a projection actor is fed, and what it reports.
#pragma once

#include "es/bus/event_bus.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace es {

/// Where a subscription starts when it first runs.
enum class start_from : uint8_t {
  /// From the stored checkpoint (the beginning without one).
  checkpoint,
  beginning,
  /// From the head of the feed: only new events.
  end,
  /// After `subscription_config::start_position`.
  position,
};

/// When the checkpoint is written (transactional read models always write
/// it with each batch).
enum class checkpoint_mode : uint8_t {
  every_event,
  /// After each page or delivery (the default).
  every_batch,
  /// At most every `checkpoint_interval`, and when stopping.
  periodic,
};

/// What a projection does about a hole in the global feed (a position
/// missing below the head) that does not fill within
/// `subscription_config::hole_timeout`. The stores of this library never
/// leave holes in normal operation; they come from damage, manual repair,
/// partial restores or erasure.
enum class hole_policy : uint8_t {
  /// Stop (state `error`, its status naming the missing positions; waits
  /// on it answer `projections_errc::projection_stopped`): an operator
  /// decides. The default.
  stop,
  /// Step over it, logging a warning and counting it in
  /// `projection_status::holes_skipped`.
  skip,
};

/// How a projection actor makes sure it is the only one applying its
/// projection, in this process or any other.
enum class ownership : uint8_t {
  /// Hold the projection's lease (`checkpoint_store::try_lease`) while
  /// running; while another instance holds it, wait as a standby
  /// (`projection_state::standby`), trying again every
  /// `lease_retry_interval`, and take over once it is free (the default).
  standby,
  /// Hold the lease, or stop at once with `store_errc::lease_held`.
  exclusive,
  /// No lease; only the compare-and-set on checkpoint writes keeps two
  /// instances from applying the same positions.
  none,
};

/// Only aggregates whose id hashes to `index` modulo `count`.
struct partition_spec {
  uint32_t index = 0;
  uint32_t count = 1;

  /// Returns whether `id` belongs to this partition.
  bool owns(const uuid& id) const noexcept {
    return count <= 1 || id.hash() % count == index;
  }
};

/// How a projection actor reads, checkpoints and handles errors.
struct subscription_config {
  /// The store it catches up from (and follows when there is no bus).
  event_store_ptr store;
  /// Live events come from this bus actor (see `spawn_in_process_bus`); the
  /// actor subscribes itself. Without a bus it polls the store every
  /// `poll_interval`.
  bus_actor bus;
  caf::timespan poll_interval = std::chrono::milliseconds(100);
  /// With a bus, how often the actor still looks at the store's head: other
  /// processes write events that never reach this process's bus.
  caf::timespan store_check_interval = std::chrono::seconds(1);
  start_from start = start_from::checkpoint;
  int64_t start_position = 0;
  /// Applied on top of the projection's `subscribed_to`.
  event_filter filter;
  partition_spec partition;
  /// Where the checkpoint lives; the default is an in-memory store (or the
  /// projection's own for level-2 and transactional projections).
  checkpoint_store_ptr checkpoints;
  /// Where failed events go; defaults like `checkpoints`.
  dead_letter_store_ptr dead_letters;
  error_policy errors;
  std::shared_ptr<const error_classifier> classifier;
  /// Called on the projection actor's thread for each final failure (after
  /// retries) of at least the given severity, or of the given category:
  /// alerting, metrics. They must not block for long.
  std::vector<std::pair<error_severity, error_tracker::callback>> on_severity;
  std::vector<std::pair<error_category, error_tracker::callback>> on_category;
  checkpoint_mode checkpointing = checkpoint_mode::every_batch;
  caf::timespan checkpoint_interval = std::chrono::seconds(1);
  /// Events per page while catching up.
  size_t page_size = 500;
  /// Most events a transactional projection handles in one transaction
  /// (with its checkpoint); 0 means a page's worth.
  size_t batch_size = 0;
  /// Live events queued beyond this many make the actor drop them and read
  /// from the store instead, so a slow projection never holds back writers.
  size_t max_live_queue = 10'000;
  /// Run on its own thread; by default when the projection, the store or a
  /// state store blocks.
  std::optional<bool> detached;
  /// The checkpoint's name; by default the projection's name, with
  /// "#index/count" for partitions.
  std::string checkpoint_name;
  /// How long a hole in the feed may stay before `on_hole` applies, and how
  /// often the store is read again meanwhile. Holes are seen where the
  /// projection reads every position: transactional projections, and
  /// others that read the feed unfiltered.
  caf::timespan hole_timeout = std::chrono::seconds(2);
  caf::timespan hole_retry_interval = std::chrono::milliseconds(100);
  hole_policy on_hole = hole_policy::stop;
  /// Single ownership (see `ownership`). Whatever the mode, every
  /// checkpoint write is a compare-and-set on the position this instance
  /// last read or wrote: when another instance moved it, the write (and a
  /// transactional batch with it) fails and this instance stops applying.
  ownership owner = ownership::standby;
  /// How often a standby tries to take the lease, and how often a holder
  /// checks that it still has it.
  caf::timespan lease_retry_interval = std::chrono::seconds(1);
};

enum class projection_state : uint8_t {
  starting,
  catching_up,
  live,
  paused,
  stopped,
  error,
  /// Another instance holds the projection's lease; this one waits.
  standby,
};

const char* to_string(projection_state x);

/// What a projection actor reports.
struct projection_status {
  std::string name;
  projection_state state = projection_state::starting;
  /// The last global position it has accounted for (handled, skipped by its
  /// filter, or dead-lettered).
  int64_t position = 0;
  /// The head of the feed as last seen.
  int64_t head = 0;
  int64_t lag_events = 0;
  /// How old the last handled event is while the projection lags; 0 when
  /// caught up.
  double lag_seconds = 0;
  uint64_t events_processed = 0;
  /// Microseconds since the Unix epoch of the last handled event's
  /// processing; -1 if none yet.
  int64_t last_processed_at_us = -1;
  error_stats errors;
  health_status health;
  /// Holes in the feed stepped over under `hole_policy::skip`.
  uint64_t holes_skipped = 0;
  /// Events of streams it follows whose type the registry does not know.
  uint64_t unknown_events = 0;
  /// Why it stopped or waits (a hole, a lost lease, the error that ended
  /// it); empty while all is well.
  std::string detail;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, projection_status& x) {
    return f(caf::meta::type_name("es.projection_status"), x.name, x.state,
             x.position, x.head, x.lag_events, x.lag_seconds,
             x.events_processed, x.last_processed_at_us, x.errors, x.health,
             x.holes_skipped, x.unknown_events, x.detail);
  }
};

} // namespace es
