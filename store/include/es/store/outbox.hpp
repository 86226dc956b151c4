// The transactional outbox: rows written with each append, claimed by
// relays that publish them to a broker.
#pragma once

#include "es/store/event.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace es {

/// One outbox row: an event waiting to be published.
struct outbox_entry {
  int64_t id = 0;
  uuid event_id;
  int64_t global_position = 0;
  std::string event_type;
  std::string aggregate_type;
  uuid aggregate_id;
  std::optional<uuid> tenant_id;
  int32_t retry_count = 0;
  std::string last_error;
  timestamp created_at;
};

/// Rows claimed by one relay. The claim holds its rows locked (FOR UPDATE
/// SKIP LOCKED) until `commit`; other relays skip them meanwhile. Dropping
/// a claim without `commit` rolls back: the rows become claimable again, as
/// if the relay had crashed. Not thread-safe.
class outbox_claim {
public:
  virtual ~outbox_claim();

  virtual const std::vector<outbox_entry>& entries() const = 0;

  /// Marks rows as published (by id).
  [[nodiscard]] virtual caf::error
  mark_published(const std::vector<int64_t>& ids)
    = 0;

  /// Marks a row as failed: its retry count grows and `error` is kept; it
  /// is claimed again until it reaches the relay's retry limit.
  [[nodiscard]] virtual caf::error
  mark_failed(int64_t id, const std::string& error)
    = 0;

  /// Makes the marks durable and releases the rows.
  [[nodiscard]] virtual caf::error commit() = 0;
};

/// Row counts of an outbox.
struct outbox_counts {
  int64_t pending = 0;
  int64_t published = 0;
  /// Rows whose last publish failed (including those still retried).
  int64_t failed = 0;
  /// When the oldest row not published yet (pending or failed) was
  /// written; empty when every row is published.
  std::optional<timestamp> oldest_waiting;
};

/// The aggregates one relay serves: those whose id falls into partition
/// `index` of `count`, by the id's last byte (random in version 4 and 7
/// UUIDs) modulo `count`. Relays that split an outbox this way never
/// publish events of one aggregate side by side, so each aggregate's events
/// leave in order. `count` is 1 to 256.
struct outbox_partition {
  uint32_t index = 0;
  uint32_t count = 1;

  /// Whether the aggregate `id` belongs to this partition.
  bool contains(const uuid& id) const noexcept {
    return count <= 1 || id.bytes()[15] % count == index;
  }
};

/// `invalid_argument` unless `p.count` is 1 to 256 and `p.index` below it.
caf::error validate(const outbox_partition& p);

/// The outbox of an event store whose appends write outbox rows (on
/// PostgreSQL: `postgres_config::outbox`). Thread-safe.
class outbox {
public:
  virtual ~outbox();

  /// Claims up to `limit` rows of `partition` to publish, oldest first:
  /// pending rows and failed rows retried fewer than `max_retries` times,
  /// skipping rows other relays hold. `invalid_argument` for a partition
  /// outside 1 to 256 or an index past its count.
  [[nodiscard]] virtual caf::expected<std::unique_ptr<outbox_claim>>
  claim(size_t limit, int32_t max_retries = 10, outbox_partition partition = {})
    = 0;

  /// Deletes published rows published more than `age` ago; returns how
  /// many.
  [[nodiscard]] virtual caf::expected<int64_t> cleanup(std::chrono::seconds age)
    = 0;

  [[nodiscard]] virtual caf::expected<outbox_counts> counts() = 0;
};

using outbox_ptr = std::shared_ptr<outbox>;

// The PostgreSQL outbox: make_postgres_outbox (es/postgres/postgres.hpp).

} // namespace es
