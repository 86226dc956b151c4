// The event store port: what every store adapter implements.
#pragma once

#include "es/store/event.hpp"
#include "es/store/event_view.hpp"
#include "es/store/expected_version.hpp"
#include "es/store/histogram.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace es {

/// The outcome of a successful append.
struct append_result {
  stream_id stream;
  /// Version of the first and last appended event; `last_version` is the
  /// stream's version after the append.
  int64_t first_version = 0;
  int64_t last_version = 0;
  /// Global positions of the first and last appended event.
  int64_t first_position = 0;
  int64_t last_position = 0;
  /// True when the store recognised a re-sent batch (same event ids, same
  /// stream) and returned the original result without writing.
  bool deduplicated = false;

  friend bool operator==(const append_result&, const append_result&) = default;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, append_result& x) {
    return f(caf::meta::type_name("es.append_result"), x.stream,
             x.first_version, x.last_version, x.first_position, x.last_position,
             x.deduplicated);
  }
};

/// One append: the events of one stream under one version condition.
struct append_request {
  stream_id stream;
  expected_version expected;
  event_batch events;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, append_request& x) {
    return f(caf::meta::type_name("es.append_request"), x.stream, x.expected,
             x.events);
  }
};

enum class read_direction : uint8_t { forwards, backwards };

/// Which part of a stream `read_stream` returns.
struct read_stream_options {
  /// First version to return (inclusive). Forwards, 0 or 1 start at the
  /// beginning; backwards, 0 starts at the stream's last event.
  int64_t from_version = 0;
  /// Last version to return (inclusive) when reading forwards; the lowest
  /// version when reading backwards. 0 means no bound.
  int64_t to_version = 0;
  read_direction direction = read_direction::forwards;
  /// Maximum events in one page; capped by the store's `max_page_size`.
  size_t max_count = 1000;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, read_stream_options& x) {
    return f(caf::meta::type_name("es.read_stream_options"), x.from_version,
             x.to_version, x.direction, x.max_count);
  }
};

/// One page of a stream.
struct stream_slice {
  recorded_events events;
  /// Where the next page starts (pass as `from_version`); meaningless once
  /// `end_of_stream` holds.
  int64_t next_version = 0;
  /// True when no event lies beyond this page in the read direction.
  bool end_of_stream = true;
  /// The stream's version when the page was read.
  int64_t stream_version = 0;
  /// The lowest version readers can see: above 1 once the stream was
  /// truncated (`truncate_stream`), or deleted softly and written again
  /// (then it is the version of the deletion event).
  int64_t first_version = 1;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, stream_slice& x) {
    return f(caf::meta::type_name("es.stream_slice"), x.events, x.next_version,
             x.end_of_stream, x.stream_version, x.first_version);
  }
};

/// Selects events of the global feed. Empty lists match everything.
struct event_filter {
  std::vector<std::string> event_types;
  std::vector<std::string> aggregate_types;
  /// When set, only this tenant's events match.
  std::optional<uuid> tenant_id;

  bool empty() const noexcept {
    return event_types.empty() && aggregate_types.empty() && !tenant_id;
  }

  /// Returns whether `ev` passes the filter.
  bool matches(const event_data& ev) const;
  bool matches(const event_view& ev) const;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, event_filter& x) {
    return f(caf::meta::type_name("es.event_filter"), x.event_types,
             x.aggregate_types, x.tenant_id);
  }
};

/// Which part of the global feed `read_all` returns.
struct read_all_options {
  /// Return events with a global position strictly greater than this (a
  /// checkpoint). 0 starts at the beginning.
  int64_t after_position = 0;
  /// Maximum events in one page; capped by the store's `max_page_size`.
  size_t max_count = 1000;
  event_filter filter;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, read_all_options& x) {
    return f(caf::meta::type_name("es.read_all_options"), x.after_position,
             x.max_count, x.filter);
  }
};

/// One page of the global feed.
struct all_slice {
  recorded_events events;
  /// The checkpoint to continue from: the position of the last event
  /// examined. With a filter this can lie beyond the last returned event, so
  /// a filtered reader does not scan the same non-matching events again.
  int64_t next_position = 0;
  /// True when the page reached the head of the feed as of this read.
  bool end_of_feed = true;
  /// True when positions missing up to `next_position` were never written
  /// and never will be (PostgreSQL's overlapping feed leaves such holes
  /// where a write failed after reserving positions). Otherwise a missing
  /// position is a hole in the log (damage, a partial restore).
  bool gaps_final = false;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, all_slice& x) {
    return f(caf::meta::type_name("es.all_slice"), x.events, x.next_position,
             x.end_of_feed, x.gaps_final);
  }
};

/// Limits every adapter enforces on appends.
struct store_limits {
  /// Largest payload in bytes.
  size_t max_payload_bytes = 1024 * 1024;
  /// Largest metadata text in bytes.
  size_t max_metadata_bytes = 64 * 1024;
  /// Longest `actor_id` in bytes.
  size_t max_actor_id_bytes = 1024;
  /// Most events in one append.
  size_t max_events_per_append = 10'000;
  /// Largest append in bytes (payloads, metadata and actor ids of all its
  /// events), and largest `append_many` call (of all its requests): a call
  /// beyond it is refused as a whole with `payload_too_large`.
  size_t max_append_bytes = 64 * 1024 * 1024;
  /// Largest page a read returns, whatever the caller asks.
  size_t max_page_size = 10'000;
};

/// Counters an adapter keeps since it was created. Monotonic.
struct store_metrics {
  /// Append requests handled (each request of `append_many` counts).
  uint64_t append_requests = 0;
  /// Events written (replays and failed requests excluded).
  uint64_t events_appended = 0;
  /// Write transactions committed; with group commit fewer than requests.
  uint64_t transactions = 0;
  /// Requests refused with `wrong_expected_version`.
  uint64_t version_conflicts = 0;
  /// Requests answered as idempotent replays.
  uint64_t deduplicated = 0;
  /// Groups first decided on heads known without a lock that had to be
  /// decided again under the lock (PostgreSQL; a stale head, a refusal or
  /// a replay). Zero on the other adapters.
  uint64_t decided_again = 0;
  /// Read calls (`read_stream`, `read_all`, `find_event`) and the events
  /// they returned.
  uint64_t reads = 0;
  uint64_t events_read = 0;
  /// Read connections open now, of them in use now, and callers waiting
  /// for one now (PostgreSQL; zero on the other adapters).
  uint64_t read_connections_open = 0;
  uint64_t read_connections_in_use = 0;
  uint64_t read_connections_waiting = 0;
  /// Reads that gave up waiting for a connection (`pool_exhausted`).
  uint64_t read_waits_timed_out = 0;
  /// How long append calls took, as their callers saw it (queueing for a
  /// group included), in seconds.
  histogram_snapshot append_seconds;
  /// Append requests per committed transaction.
  histogram_snapshot group_size;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, store_metrics& x) {
    return f(caf::meta::type_name("es.store_metrics"), x.append_requests,
             x.events_appended, x.transactions, x.version_conflicts,
             x.deduplicated, x.decided_again, x.reads, x.events_read,
             x.read_connections_open, x.read_connections_in_use,
             x.read_connections_waiting, x.read_waits_timed_out,
             x.append_seconds, x.group_size);
  }
};

/// What `event_store::check_health` found out about the database.
struct store_health {
  /// The database answered a trivial query.
  bool reachable = false;
  /// The schema version stored, and the one this library expects (both 0
  /// for adapters without a schema).
  int schema_version = 0;
  int expected_schema_version = 0;
  /// Tables the store needs that the database lacks.
  std::vector<std::string> missing_tables;
  /// How long the check took, in milliseconds.
  double latency_ms = 0;
  /// Why the store is not healthy; empty when it is.
  std::string problem;

  bool healthy() const noexcept {
    return reachable && missing_tables.empty()
           && schema_version == expected_schema_version;
  }
};

class event_store;

// -- stream deletion ----------------------------------------------------------

/// Event types the store writes into a stream to delete or truncate it.
/// Appends of other types starting with "es." are refused: the prefix is
/// the store's.
inline constexpr std::string_view stream_deleted_type = "es.StreamDeleted";
inline constexpr std::string_view stream_tombstoned_type
  = "es.StreamTombstoned";
inline constexpr std::string_view stream_truncated_type = "es.StreamTruncated";

/// Returns whether `event_type` is one of the stream control types above.
bool is_stream_control_type(std::string_view event_type) noexcept;

enum class deletion_mode : uint8_t {
  /// The stream reads as deleted until it is written again, with
  /// `expected_version::no_stream()` or `any()`: it then starts over. Its
  /// versions continue after the deletion; readers see the deletion event
  /// (their cue to start from an empty state) and what follows it.
  soft,
  /// A tombstone: the stream can never be written again.
  hard,
};

/// Deletes `stream` by appending a control event (`es.StreamDeleted` or
/// `es.StreamTombstoned`) at its next version, if `expected` matches: the
/// deletion is itself an event of the global feed, so projections see it.
/// Reads of the stream then answer `stream_deleted`; appends too, but for a
/// soft-deleted stream written with `no_stream` or `any`. The deleted
/// events stay in the global feed (history) until a maintenance job removes
/// them; see docs/deletion.md. Errors: those of `append`, `stream_deleted`
/// (already hard-deleted), `invalid_argument` (no such stream).
[[nodiscard]] caf::expected<append_result>
delete_stream(event_store& store, const stream_id& stream, deletion_mode mode,
              expected_version expected = expected_version::any());

/// Returns the tenant of the stream a `stream_deleted` error is about
/// (none for a stream without tenant, or another error), so that a
/// tenant-scoped caller can tell another tenant's deleted stream from its
/// own.
std::optional<uuid> deleted_stream_tenant(const caf::error& err);

/// Hides the events of `stream` below version `before` from stream reads by
/// appending an `es.StreamTruncated` control event; for streams whose state
/// lives in a snapshot. Like any append it moves the stream's version.
/// `before` lies from 2 to the stream's version plus one. Errors: those of
/// `append`, `stream_deleted`, `invalid_argument`.
[[nodiscard]] caf::expected<append_result>
truncate_stream(event_store& store, const stream_id& stream, int64_t before,
                expected_version expected = expected_version::any());

/// The event store port. Adapters are reached through `make_*` factories.
///
/// Thread-safety: every member function may be called from any thread at
/// any time. Calls may block (disk, network): actors call them from detached
/// actors or other threads, never from the cooperative scheduler.
///
/// Errors are `store_errc` codes (see errors.hpp); codes for which
/// `is_retryable` holds may succeed when retried.
class event_store {
public:
  virtual ~event_store();

  /// Returns the adapter's name, for example "sqlite" or "memory".
  virtual std::string name() const = 0;

  /// Whether calls may block on I/O (true but for the in-memory adapter):
  /// actors calling a blocking store run on their own threads, and the
  /// store actor keeps a copy of each append to retry it.
  virtual bool blocking() const {
    return true;
  }

  /// Appends `events` to `stream` atomically if `expected` matches the
  /// stream's version. Events with `aggregate_version` 0 get the next
  /// versions; other versions must be the next ones. Events may leave
  /// `aggregate_id` nil and `aggregate_type` empty: the stream's are used.
  ///
  /// Re-sending a batch whose event ids are all already stored in `stream`,
  /// in the same order, returns the original result with `deduplicated` set
  /// and writes nothing, whatever `expected` says.
  ///
  /// Re-sent ids must carry the same content (type, schema version,
  /// payload, and the versions they name), or the answer is
  /// `idempotency_conflict`; metadata, actor and time may differ.
  ///
  /// Errors: `wrong_expected_version` (with the actual version, see
  /// `get_version_conflict`), `duplicate_event_id`, `idempotency_conflict`,
  /// `invalid_argument`, `invalid_uuid`, `malformed_payload`,
  /// `payload_too_large`, `unknown_event_type` (when the store validates
  /// against a registry), and retryable storage errors. On every error but
  /// one nothing is written. The exception is `commit_outcome_unknown`
  /// (retryable): the events are stored once or not at all, and a retry
  /// with the same event ids settles which (never retry with new ids).
  [[nodiscard]] virtual caf::expected<append_result>
  append(const stream_id& stream, expected_version expected, event_batch events)
    = 0;

  /// Appends several independent requests: the group-commit entry point.
  /// Each request keeps its own version check and gets its own result; one
  /// failing request does not fail the others. Adapters that can, commit all
  /// of them in one transaction. The default runs `append` for each.
  [[nodiscard]] virtual std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests);

  /// Appends to several streams all or nothing: every request keeps its own
  /// version check, and the events of all of them are written in one
  /// transaction or not at all. Returns one result per request, in order.
  /// The requests must name distinct streams.
  ///
  /// Errors: when one or more requests meet another stream version,
  /// `wrong_expected_version` naming every conflicting stream (see
  /// `get_version_conflicts`); otherwise the first request's error, with
  /// the same codes as `append` (a validation error of any request refuses
  /// the call). Nothing is written on any error but
  /// `commit_outcome_unknown`, where all of it is stored or none of it.
  /// A call re-sent with the same event ids is answered from the stored
  /// events (`deduplicated` on each result). Goes through group commit
  /// like `append_many`. The default refuses with `invalid_argument`.
  [[nodiscard]] virtual caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests);

  /// Reads one page of a stream. An unknown stream yields an empty page with
  /// `stream_version` 0. A deleted stream answers `stream_deleted`; events
  /// below `first_version` (truncated, or before a soft deletion the stream
  /// was written again after) are left out. Control events (see
  /// `is_stream_control_type`) that remain visible are part of the page.
  [[nodiscard]] virtual caf::expected<stream_slice>
  read_stream(const stream_id& stream, const read_stream_options& options) = 0;

  /// Reads one page of the global feed in position order. Every committed
  /// event has a position; a reader that continues from `next_position`
  /// sees every event exactly once.
  [[nodiscard]] virtual caf::expected<all_slice>
  read_all(const read_all_options& options) = 0;

  /// Reads the page `read_all` would return, handing each event to `fn` in
  /// place instead of copying it out: a view is valid only during its call
  /// (`event_view::to_event` keeps one). `fn` returns false to end the page
  /// after that event. Returns the page with `events` empty; when `fn`
  /// ended it, `next_position` is that event's position and `end_of_feed`
  /// is false. Events reach `fn` inside the store's read (SQLite: its read
  /// transaction), so `fn` should be quick. The default reads an owning
  /// page and hands out views of it; SQLite and PostgreSQL hand out their
  /// row buffers.
  [[nodiscard]] virtual caf::expected<all_slice>
  visit_all(const read_all_options& options,
            const std::function<bool(const event_view&)>& fn);

  /// Returns the stream's current version (0 when it has no events), or
  /// `stream_deleted`.
  [[nodiscard]] virtual caf::expected<int64_t>
  stream_version(const stream_id& stream) = 0;

  /// Reads one page of the events of a causal chain: those whose
  /// `correlation_id` is `correlation_id`, and the event whose id it is,
  /// in position order after `options.after_position` (the page's
  /// `next_position` continues). `options.filter` applies too. Indexed on
  /// every adapter with a database. The default scans the global feed.
  [[nodiscard]] virtual caf::expected<all_slice>
  read_correlated(const uuid& correlation_id, const read_all_options& options);

  /// Returns the event with id `event_id`, or `std::nullopt`.
  [[nodiscard]] virtual caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) = 0;

  /// Returns whether an event with id `event_id` is stored.
  [[nodiscard]] virtual caf::expected<bool> event_exists(const uuid& event_id);

  /// Returns the highest global position (0 for an empty store).
  [[nodiscard]] virtual caf::expected<int64_t> head_position() = 0;

  /// Returns the adapter's counters.
  virtual store_metrics metrics() const = 0;

  /// Checks the database: it answers, has the store's tables and the
  /// schema version this library expects. Never fails: an unreachable
  /// database is a result (`reachable` false, `problem` says why). The
  /// default asks for the head position.
  virtual store_health check_health();

  /// Returns the limits the store enforces.
  virtual const store_limits& limits() const = 0;
};

using event_store_ptr = std::shared_ptr<event_store>;

/// Builds the `wrong_expected_version` error adapters return: a description
/// followed by the stream, the expected and the actual version.
caf::error make_version_conflict(const stream_id& stream,
                                 expected_version expected, int64_t actual);

/// Merges the outcomes of the requests of a refused `append_atomic` call
/// into its one error: a `wrong_expected_version` naming every conflicting
/// request when there is any conflict, else the first error. Returns an
/// empty error when every outcome succeeded.
caf::error
merge_atomic_errors(const std::vector<caf::expected<append_result>>& results);

/// Names a stored event for error messages and logs: "event ID at position
/// P (stream TYPE/ID version V, EventType vN)".
std::string describe_event(const recorded_event& ev);

/// Returns `err` (same category and code) with its description prefixed by
/// `describe_event(ev)`, so a decode or handler error says which event it
/// is about. Returns `err` unchanged when it is empty.
caf::error in_event_context(const caf::error& err, const recorded_event& ev);

/// Calls `fn` for every event of `stream` in the read direction, one page of
/// `options.max_count` events at a time, so memory stays bounded by one
/// page. Stops at the first error of the store or of `fn`.
[[nodiscard]] caf::error
for_each_in_stream(event_store& store, const stream_id& stream,
                   read_stream_options options,
                   const std::function<caf::error(recorded_event&)>& fn);

/// Calls `fn` for every event of the feed after `options.after_position`
/// up to the head as of the last page, page by page. Returns the position to
/// continue from.
[[nodiscard]] caf::expected<int64_t>
for_each_in_feed(event_store& store, read_all_options options,
                 const std::function<caf::error(recorded_event&)>& fn);

} // namespace es
