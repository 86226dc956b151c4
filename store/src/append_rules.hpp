// Rules every adapter applies to appends and page reads, shared so they
// agree exactly.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/histogram.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

namespace es::detail {

/// The most rows a page read returns: `max_count` capped at
/// `limits.max_page_size`. Returns `invalid_argument` for a `max_count` of 0.
caf::expected<size_t> page_size(size_t max_count, const store_limits& limits);

/// `page_size` for a read of the feed, which also refuses a negative
/// `after_position`.
caf::expected<size_t> feed_page_size(const read_all_options& opts,
                                     const store_limits& limits);

/// Checks a type name: 1 to 200 characters from [A-Za-z0-9_.:/-], starting
/// with a letter or underscore. Returns `invalid_argument` naming `what`.
caf::error check_type_name(std::string_view what, std::string_view name);

/// Earliest and latest `occurred_at` every adapter stores: years 1 to 9999
/// (UTC), the range of ISO 8601 four-digit years.
inline constexpr int64_t min_occurred_at_us = -62'135'596'800'000'000;
inline constexpr int64_t max_occurred_at_us = 253'402'300'799'999'999;

/// Returns whether `text` is valid UTF-8 without NUL bytes: what every
/// text column of every adapter accepts.
bool is_storable_text(std::string_view text);

/// Validates an append request against the port's contract and `limits`,
/// and fills in the stream fields of events that left them empty. Checks
/// payloads and metadata as JSON, every text field as UTF-8 without NUL,
/// `occurred_at` against the range above and, with a registry, that each
/// event decodes. Everything a database could refuse about one event is
/// refused here, so adapters agree and one bad request cannot fail the
/// group it is committed with. Touches no storage.
caf::error normalize_append(const stream_id& stream, expected_version expected,
                            event_batch& events, const store_limits& limits,
                            const event_registry* registry);

/// Runs `normalize_append` on every request of an `append_many` call and
/// returns one error (or none) per request. A call larger in total than
/// `limits.max_append_bytes` is refused as a whole.
std::vector<caf::error>
normalize_requests(std::vector<append_request>& requests,
                   const store_limits& limits, const event_registry* registry);

/// Validates the requests of an `append_atomic` call: at least one, distinct
/// streams, and each request as `normalize_append` (the whole call's size
/// included). Returns the error that refuses the call, or none.
caf::error normalize_atomic(std::vector<append_request>& requests,
                            const store_limits& limits,
                            const event_registry* registry);

/// The outcome adapters give the requests of a refused atomic job that
/// were not refused themselves: `settle_atomic` leaves them out.
caf::error atomic_sibling_refused();

/// Turns the per-request outcomes of an atomic job into the call's answer
/// (see `merge_atomic_errors`).
caf::expected<std::vector<append_result>>
settle_atomic(std::vector<caf::expected<append_result>> results);

/// Bytes of an append's variable-length fields (payloads, metadata, actor
/// ids): what the size limits count.
size_t append_bytes(const event_batch& events);

/// The state of a stream an append needs to know.
struct stream_head {
  int64_t version = 0;
  /// Tenant of the stream's events (of its last event).
  std::optional<uuid> tenant_id;
  /// The last event deletes the stream softly (`es.StreamDeleted`) or for
  /// good (`es.StreamTombstoned`).
  bool deleted = false;
  bool tombstoned = false;

  /// Sets `deleted` and `tombstoned` from the type of the last event.
  void set_last_type(std::string_view event_type) {
    deleted = event_type == stream_deleted_type;
    tombstoned = event_type == stream_tombstoned_type;
  }
};

/// What readers of a stream may see, from its control events.
struct stream_visibility {
  /// Reads answer `stream_deleted`.
  bool deleted = false;
  /// The lowest version readers see.
  int64_t first_version = 1;
};

/// One control event of a stream: its type, version and payload.
struct control_event {
  std::string event_type;
  int64_t version = 0;
  std::string payload;
};

/// Works out what readers see of a stream whose head is `head_version` and
/// whose control events are `controls` (any order).
stream_visibility visibility_of(int64_t head_version,
                                const std::vector<control_event>& controls);

/// Returns `stream_deleted` for `stream`, whose events belong to `tenant`
/// (see `deleted_stream_tenant`).
caf::error make_stream_deleted(const stream_id& stream, bool for_good,
                               const std::optional<uuid>& tenant);

/// Checks deletion, `expected` and the events' tenant against `head`. A
/// soft-deleted stream takes `no_stream` and `any` (and starts over), a
/// tombstoned one nothing; a control event without a tenant takes the
/// stream's. Checks explicit
/// event versions and assigns versions to events that have none. Returns
/// `wrong_expected_version` or `tenant_mismatch` on failure.
caf::error
check_and_assign_versions(const stream_id& stream, expected_version expected,
                          const stream_head& head, event_batch& events);

/// Digest of what makes a re-sent event the same event: its type, schema
/// version and payload (metadata, actor and time may differ on a retry).
uint64_t content_digest(const event_data& ev);

/// Digest of a stored event's content, from its columns.
uint64_t content_digest(std::string_view event_type, int32_t event_version,
                        std::string_view payload);

/// Where a stored event lives, and a digest of its content.
struct stored_location {
  stream_id stream;
  int64_t version = 0;
  int64_t position = 0;
  uint64_t digest = 0;
};

using location_lookup
  = std::function<caf::expected<std::optional<stored_location>>(const uuid&)>;

/// Decides whether `events` re-sends an earlier append. Looks up the first
/// event id; when it is stored (or when `check_all` holds, for every id),
/// returns:
/// - the original `append_result` (deduplicated) when all ids are stored in
///   `stream` at consecutive versions in batch order, each with the same
///   content (`content_digest`) and, where the event names a version, at
///   that version;
/// - `idempotency_conflict` when some are stored in `stream` but not as that
///   exact batch, or an id is stored with other content;
/// - `duplicate_event_id` when one is stored in another stream.
/// Returns `std::nullopt` when the batch is new.
caf::expected<std::optional<append_result>>
check_replay(const stream_id& stream, const event_batch& events,
             const location_lookup& lookup, bool check_all);

/// Completes a health check the adapter ran from `start`: its latency,
/// and the problem (`err`, missing tables, another schema version).
void settle_health(store_health& h, const caf::error& err,
                   std::chrono::steady_clock::time_point start);

/// Thread-safe counters behind `event_store::metrics`.
class metrics_counter {
public:
  /// Counts the outcome of one append request.
  void count(const caf::expected<append_result>& res);

  /// Counts a committed transaction that held `requests` append requests.
  void count_transaction(size_t requests) {
    transactions_.fetch_add(1, std::memory_order_relaxed);
    group_size_.observe(static_cast<double>(requests));
  }

  /// Times one `append_many` call (or `append`) of `requests` requests
  /// from construction to destruction.
  class call_timer {
  public:
    explicit call_timer(metrics_counter& owner)
      : owner_(owner), start_(std::chrono::steady_clock::now()) {
      // nop
    }
    call_timer(const call_timer&) = delete;
    call_timer& operator=(const call_timer&) = delete;
    ~call_timer() {
      owner_.append_seconds_.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count());
    }

  private:
    metrics_counter& owner_;
    std::chrono::steady_clock::time_point start_;
  };

  void count_decided_again() {
    decided_again_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Counts one read call that returned `events` events.
  void count_read(size_t events) {
    reads_.fetch_add(1, std::memory_order_relaxed);
    events_read_.fetch_add(events, std::memory_order_relaxed);
  }

  store_metrics snapshot() const;

private:
  histogram append_seconds_{histogram::latency_bounds()};
  histogram group_size_{histogram::size_bounds()};
  std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> events_read_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> transactions_{0};
  std::atomic<uint64_t> conflicts_{0};
  std::atomic<uint64_t> deduplicated_{0};
  std::atomic<uint64_t> decided_again_{0};
};

} // namespace es::detail
