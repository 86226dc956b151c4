// The SQLite schema and its migrations.
#pragma once

#include <caf/error.hpp>

#include "connection.hpp"

namespace es::detail::sqlite {

/// One step of the schema's history.
struct migration {
  int version;
  const char* description;
  const char* sql;
};

/// Returns the migrations in version order.
const std::vector<migration>& migrations();

/// Brings the database behind `conn` to the newest schema. Each pending
/// migration runs in its own IMMEDIATE transaction that re-reads the
/// version first, so two processes opening the same new file do not apply a
/// step twice. Errors: `schema_too_new`, `migration_failed`, and the
/// translations of `translate`.
caf::error migrate(connection& conn);

/// Opens (creating it if needed) the file at `path` for a state store or a
/// read-model database: busy timeout of 5 s, WAL, schema migrated. `what`
/// names the caller in the error for an empty path.
caf::expected<std::unique_ptr<connection>>
open_migrated(const std::string& path, int cache_pages, const char* what);

} // namespace es::detail::sqlite
