// The PostgreSQL schema and its migrations.
#pragma once

#include <caf/error.hpp>

#include "connection.hpp"

#include <vector>

namespace es::detail::pg {

struct migration {
  int version;
  const char* description;
  const char* sql;
};

/// The migrations in version order.
const std::vector<migration>& migrations();

/// Applies pending migrations on `conn`, each in its own transaction under
/// a transaction-scoped advisory lock. `partitions` > 0 creates the events
/// table hash-partitioned into that many partitions (first migration only).
caf::error migrate(connection& conn, int partitions);

} // namespace es::detail::pg
