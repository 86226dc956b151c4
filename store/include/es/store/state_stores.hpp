// Ports for the state around the event log: snapshots, projection
// checkpoints and dead letters. Each has an in-memory, a SQLite and a
// PostgreSQL adapter with the same contract (tests/store/state_tests.cpp).
#pragma once

#include "es/store/event.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace es {

// -- snapshots ----------------------------------------------------------------

/// The state of one aggregate at one version.
struct snapshot {
  stream_id stream;
  /// The aggregate's version the state includes.
  int64_t version = 0;
  /// Version of the state's schema: a snapshot whose schema version differs
  /// from the aggregate's current one is not used.
  int32_t schema_version = 1;
  /// The state, as JSON text.
  std::string state;
  timestamp created_at;

  friend bool operator==(const snapshot&, const snapshot&) = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, snapshot& x) {
    return f(caf::meta::type_name("es.snapshot"), x.stream, x.version,
             x.schema_version, x.state, x.created_at);
  }
};

/// Keeps the latest snapshot of each aggregate. Thread-safe.
class snapshot_store {
public:
  virtual ~snapshot_store();

  /// Whether calls may block on I/O (false only for the in-memory adapter):
  /// actors calling a blocking store run on their own threads.
  virtual bool blocking() const {
    return true;
  }

  /// Stores `snap` unless a snapshot of a higher version is already stored
  /// (a late writer never replaces a newer snapshot). Returns whether it was
  /// stored.
  [[nodiscard]] virtual caf::expected<bool> save(const snapshot& snap) = 0;

  /// Returns the stored snapshot of `stream`, if any.
  [[nodiscard]] virtual caf::expected<std::optional<snapshot>>
  load(const stream_id& stream) = 0;

  /// Deletes the snapshot of `stream`; returns whether there was one.
  [[nodiscard]] virtual caf::expected<bool> remove(const stream_id& stream) = 0;
};

using snapshot_store_ptr = std::shared_ptr<snapshot_store>;

// -- checkpoints --------------------------------------------------------------

/// How far a projection got in the global feed.
struct checkpoint {
  std::string projection;
  int64_t position = 0;
  /// The last event handled (nil/empty after a reset).
  uuid event_id;
  std::string event_type;
  /// Events the projection handled in total.
  int64_t events_processed = 0;
  timestamp updated_at;

  friend bool operator==(const checkpoint&, const checkpoint&) = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, checkpoint& x) {
    return f(caf::meta::type_name("es.checkpoint"), x.projection, x.position,
             x.event_id, x.event_type, x.events_processed, x.updated_at);
  }
};

/// The exclusive right to run one projection, across threads and processes,
/// held until destroyed or lost. Not thread-safe.
///
/// A lease keeps a second instance of a projection (another actor, another
/// process) from applying the positions the first one applies. It guards
/// only those who ask for it: writers check it with `check()` and still
/// write their checkpoints with `checkpoint_store::save_if` (or
/// `read_model_db::save_checkpoint` with an expected position), so a holder
/// that lost its lease without noticing cannot overwrite its successor's
/// progress.
class projection_lease {
public:
  /// Releases the lease.
  virtual ~projection_lease();

  /// The projection this lease is for.
  virtual const std::string& projection() const = 0;

  /// None while held; `lease_lost` once it is not (e.g. its database session
  /// ended). Cheap enough to call every second. Once lost, always lost.
  /// PostgreSQL: lost when a trivial query on the lease's session fails
  /// (the session ended or the connection broke; the connection is then
  /// closed, so a lost lease is not held on the server either). SQLite: lost
  /// only when the lock file was removed or replaced. In memory: never.
  [[nodiscard]] virtual caf::error check() = 0;
};

using projection_lease_ptr = std::unique_ptr<projection_lease>;

/// Keeps one checkpoint per projection. Thread-safe.
class checkpoint_store {
public:
  virtual ~checkpoint_store();

  /// Whether calls may block on I/O (false only for the in-memory adapter):
  /// actors calling a blocking store run on their own threads.
  virtual bool blocking() const {
    return true;
  }

  /// Stores `cp` unless the stored checkpoint of the projection is further
  /// (checkpoints never move backwards). Returns the checkpoint now stored.
  [[nodiscard]] virtual caf::expected<checkpoint> save(const checkpoint& cp)
    = 0;

  /// Stores `cp` only if the stored checkpoint of `cp.projection` is at
  /// `expected_position` (0 also matches "no checkpoint"); returns the stored
  /// checkpoint, or `checkpoint_conflict` naming both positions when it
  /// moved. Like `save`, never moves a checkpoint backwards: when the
  /// position matches but `cp.position` is below it, nothing changes and the
  /// stored checkpoint is returned.
  [[nodiscard]] virtual caf::expected<checkpoint>
  save_if(const checkpoint& cp, int64_t expected_position) = 0;

  /// Tries to take the lease of projection `name` without waiting:
  /// `lease_held` when another holder (this process or another) has it.
  /// Released when the lease object is destroyed, and by the OS / the
  /// database when its process dies. A lease may outlive the store that
  /// granted it. Other errors: `io_error` (SQLite lock file),
  /// `connection_failed` (PostgreSQL, retryable), `invalid_argument` (a
  /// SQLite database without a file).
  ///
  /// Who excludes whom. In memory: leases of the same store object. SQLite:
  /// a lease is a `flock` on a lock file next to the database file,
  /// `<database path>.lease-<16 hex digits of the name's FNV-1a hash>`
  /// (created on first use, never removed), so every store and read-model
  /// database on that file, in any process of the host, excludes every
  /// other (on local file systems). PostgreSQL: a lease is a session
  /// advisory lock on a connection of its own, key
  /// `hashtextextended('es.projection/' || current_schema() || '/' || name,
  /// 0)`, so every store and read-model database on that schema excludes
  /// every other, from any process.
  [[nodiscard]] virtual caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) = 0;

  /// Returns the projection's checkpoint, if any.
  [[nodiscard]] virtual caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) = 0;

  /// Deletes the projection's checkpoint (for a rebuild); returns whether
  /// there was one.
  [[nodiscard]] virtual caf::expected<bool> reset(const std::string& projection)
    = 0;

  /// Returns every checkpoint, ordered by projection name.
  [[nodiscard]] virtual caf::expected<std::vector<checkpoint>> list() = 0;
};

using checkpoint_store_ptr = std::shared_ptr<checkpoint_store>;

// -- dead letters -------------------------------------------------------------

enum class dead_letter_status : uint8_t { failed, retrying, resolved };

/// Returns "failed", "retrying" or "resolved".
const char* to_string(dead_letter_status x);

/// Parses what `to_string` writes.
std::optional<dead_letter_status> parse_dead_letter_status(std::string_view x);

/// An event a projection could not handle.
struct dead_letter {
  int64_t id = 0;
  std::string projection;
  uuid event_id;
  int64_t global_position = 0;
  std::string event_type;
  /// The whole event, as written by `encode_recorded_event`, so it can be
  /// replayed.
  std::string event_data;
  std::string error_message;
  /// Error stack, classification or other context (free text).
  std::string error_context;
  int32_t retry_count = 0;
  dead_letter_status status = dead_letter_status::failed;
  timestamp first_failed_at;
  timestamp last_failed_at;
  std::optional<timestamp> resolved_at;
  std::string resolved_by;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
    return f(caf::meta::type_name("es.dead_letter"), x.id, x.projection,
             x.event_id, x.global_position, x.event_type, x.event_data,
             x.error_message, x.error_context, x.retry_count, x.status,
             x.first_failed_at, x.last_failed_at,
             detail::optional_time_ref{x.resolved_at}, x.resolved_by);
  }
};

namespace detail {

/// Lets CAF inspect an optional as a flag followed by the value (or a
/// default-constructed one), so optional fields can travel in messages.
template <class T>
struct optional_ref {
  std::optional<T>& x;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, optional_ref& r) {
    if constexpr (Inspector::reads_state) {
      bool flag = r.x.has_value();
      T tmp = r.x.value_or(T{});
      return f(flag, tmp);
    } else {
      bool flag = false;
      T tmp{};
      auto result = f(flag, tmp);
      if (flag)
        r.x = std::move(tmp);
      else
        r.x.reset();
      return result;
    }
  }
};

} // namespace detail

/// Selects dead letters for `list` (and the dead-letter actor's
/// `dlq_list_atom`). An unset field selects all.
struct dead_letter_query {
  std::optional<std::string> projection;
  std::optional<dead_letter_status> status;
  size_t limit = 100;
  size_t offset = 0;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, dead_letter_query& x) {
    return f(caf::meta::type_name("es.dead_letter_query"),
             detail::optional_ref<std::string>{x.projection},
             detail::optional_ref<dead_letter_status>{x.status}, x.limit,
             x.offset);
  }
};

/// Counts of a dead-letter store.
struct dead_letter_stats {
  int64_t total = 0;
  int64_t failed = 0;
  int64_t retrying = 0;
  int64_t resolved = 0;
  /// Unresolved entries per projection.
  std::map<std::string, int64_t> by_projection;
  std::optional<timestamp> oldest_unresolved;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, dead_letter_stats& x) {
    return f(caf::meta::type_name("es.dead_letter_stats"), x.total, x.failed,
             x.retrying, x.resolved, x.by_projection,
             detail::optional_time_ref{x.oldest_unresolved});
  }
};

/// Keeps the events projections failed on. Thread-safe.
class dead_letter_store {
public:
  virtual ~dead_letter_store();

  /// Whether calls may block on I/O (false only for the in-memory adapter):
  /// actors calling a blocking store run on their own threads.
  virtual bool blocking() const {
    return true;
  }

  /// Records a failure. A repeated failure of the same event in the same
  /// projection updates its entry (retry count, last failure time, message,
  /// status back to failed) instead of adding another. Returns the entry's
  /// id.
  [[nodiscard]] virtual caf::expected<int64_t> add(const dead_letter& entry)
    = 0;

  [[nodiscard]] virtual caf::expected<std::optional<dead_letter>>
  get(int64_t id) = 0;

  /// Entries matching `q`, oldest first.
  [[nodiscard]] virtual caf::expected<std::vector<dead_letter>>
  list(const dead_letter_query& q) = 0;

  /// Marks an entry as being retried. Returns false for an unknown id.
  [[nodiscard]] virtual caf::expected<bool> mark_retrying(int64_t id) = 0;

  /// Marks an entry resolved by `by` (a user or "replay"). Returns false for
  /// an unknown id.
  [[nodiscard]] virtual caf::expected<bool>
  mark_resolved(int64_t id, const std::string& by) = 0;

  [[nodiscard]] virtual caf::expected<dead_letter_stats> stats() = 0;

  /// Deletes resolved entries resolved more than `age` ago; returns how
  /// many.
  [[nodiscard]] virtual caf::expected<int64_t>
  purge_resolved(std::chrono::seconds age) = 0;
};

using dead_letter_store_ptr = std::shared_ptr<dead_letter_store>;

/// Serialises a recorded event (envelope and payload) as one JSON object,
/// for dead letters and other places that keep whole events.
std::string encode_recorded_event(const recorded_event& ev);

/// Parses what `encode_recorded_event` writes.
caf::expected<recorded_event> decode_recorded_event(std::string_view text);

// -- factories ----------------------------------------------------------------

snapshot_store_ptr make_memory_snapshot_store();
checkpoint_store_ptr make_memory_checkpoint_store();
dead_letter_store_ptr make_memory_dead_letter_store();

// The SQLite and PostgreSQL adapters: es/sqlite/sqlite.hpp and
// es/postgres/postgres.hpp.

} // namespace es
