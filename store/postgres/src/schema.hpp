// The PostgreSQL schema and its migrations.
#pragma once

#include "es/postgres/postgres.hpp"

#include <caf/error.hpp>

#include "connection.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace es::detail::pg {

struct migration {
  int version;
  const char* description;
  const char* sql;
};

/// The migrations in version order.
const std::vector<migration>& migrations();

/// How the first migration lays out the events table.
struct events_layout {
  /// > 0: hash-partitioned by aggregate id into this many partitions.
  int hash_partitions = 0;
  /// > 0: range-partitioned by global position, this many positions per
  /// partition (`events_r<N>` holds positions N * size + 1 to (N + 1) *
  /// size), with a default partition for positions beyond them.
  int64_t range_size = 0;
};

/// Applies pending migrations on `conn`, each in its own transaction under
/// a transaction-scoped advisory lock. `layout` applies to the first
/// migration only.
caf::error migrate(connection& conn, const events_layout& layout);

/// The highest position allocated, in either feed (a one-row query).
extern const char* const allocated_head_sql;

/// The database's feed, as `es_position` records it.
caf::expected<postgres_feed> read_feed(connection& conn);

/// Switches the database's feed to `feed` (see `postgres_switch_feed`).
/// With `only_if_empty`, switches only a database without events and
/// returns `invalid_argument` otherwise. Waits for older transactions at
/// most `wait`.
caf::error switch_feed(connection& conn, postgres_feed feed, bool only_if_empty,
                       std::chrono::milliseconds wait);

/// The name of the range partition that holds `index` (0 for the first).
std::string range_partition_name(int64_t index);

} // namespace es::detail::pg
