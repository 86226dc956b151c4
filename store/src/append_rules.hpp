// Rules every adapter applies to an append, shared so they agree exactly.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <functional>
#include <optional>
#include <string_view>

namespace es::detail {

/// Checks a type name: 1 to 200 characters from [A-Za-z0-9_.:/-], starting
/// with a letter or underscore. Returns `invalid_argument` naming `what`.
caf::error check_type_name(std::string_view what, std::string_view name);

/// Validates an append request against the port's contract and `limits`,
/// and fills in the stream fields of events that left them empty. Checks
/// payloads and metadata as JSON and, with a registry, that each event
/// decodes. Touches no storage.
caf::error normalize_append(const stream_id& stream, expected_version expected,
                            event_batch& events, const store_limits& limits,
                            const event_registry* registry);

/// The state of a stream an append needs to know.
struct stream_head {
  int64_t version = 0;
  /// Tenant of the stream's events (of its last event).
  std::optional<uuid> tenant_id;
};

/// Checks `expected` and the events' tenant against `head`, checks explicit
/// event versions and assigns versions to events that have none. Returns
/// `wrong_expected_version` or `tenant_mismatch` on failure.
caf::error
check_and_assign_versions(const stream_id& stream, expected_version expected,
                          const stream_head& head, event_batch& events);

/// Where a stored event lives.
struct stored_location {
  stream_id stream;
  int64_t version = 0;
  int64_t position = 0;
};

using location_lookup
  = std::function<caf::expected<std::optional<stored_location>>(const uuid&)>;

/// Decides whether `events` re-sends an earlier append. Looks up the first
/// event id; when it is stored (or when `check_all` holds, for every id),
/// returns:
/// - the original `append_result` (deduplicated) when all ids are stored in
///   `stream` at consecutive versions in batch order;
/// - `idempotency_conflict` when some are stored in `stream` but not as that
///   exact batch;
/// - `duplicate_event_id` when one is stored in another stream.
/// Returns `std::nullopt` when the batch is new.
caf::expected<std::optional<append_result>>
check_replay(const stream_id& stream, const event_batch& events,
             const location_lookup& lookup, bool check_all);

/// Thread-safe counters behind `event_store::metrics`.
class metrics_counter {
public:
  /// Counts the outcome of one append request.
  void count(const caf::expected<append_result>& res);

  void count_transaction() {
    transactions_.fetch_add(1, std::memory_order_relaxed);
  }

  void count_decided_again() {
    decided_again_.fetch_add(1, std::memory_order_relaxed);
  }

  store_metrics snapshot() const;

private:
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> transactions_{0};
  std::atomic<uint64_t> conflicts_{0};
  std::atomic<uint64_t> deduplicated_{0};
  std::atomic<uint64_t> decided_again_{0};
};

} // namespace es::detail
