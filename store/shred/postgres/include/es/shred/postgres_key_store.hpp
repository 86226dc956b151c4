// The PostgreSQL key store: subject keys in tables of the event store's
// database.
#pragma once

#include "es/shred/key_store.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace es {

/// Configuration of `make_postgres_key_store`.
struct postgres_key_store_config {
  /// A libpq connection string or URI (as `postgres_config::dsn`).
  std::string dsn;
  /// When set, the tables live in this schema (`SET search_path`), whatever
  /// the DSN says.
  std::string schema;
  /// When set, new keys are stored wrapped by it, and stored wrapped keys
  /// need it. Keys stored raw stay readable after a master key is added.
  std::optional<master_key> master;
  /// How long connecting may take (libpq connect_timeout) unless the DSN
  /// sets it.
  std::chrono::seconds connect_timeout{10};
};

/// Opens the key store on a connection of its own, creating its tables
/// (`es_subject_keys`, `es_subject_streams`) if needed. Calls share the
/// connection one at a time; a broken connection is opened again on the
/// next call.
///
/// A forgotten key's row is deleted at once: no query, replica or `pg_dump`
/// sees it afterwards. Its bytes stay in the table's file as a dead tuple
/// until VACUUM (autovacuum, or `VACUUM es_subject_keys`) reclaims the
/// space; `docs/privacy.md` says what that means for backups.
///
/// Errors: `connection_failed` (retryable), `authentication_failed`,
/// `unknown_database`, `permission_denied`, `io_error`.
caf::expected<key_store_ptr>
make_postgres_key_store(postgres_key_store_config config);

} // namespace es
