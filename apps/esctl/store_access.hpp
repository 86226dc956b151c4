// esctl's view of a store: where it is, whether its schema is current, and
// the library's adapters on it, opened on first use.
#pragma once

#include "es/store/event_store.hpp"
#include "es/store/outbox.hpp"
#include "es/store/sql.hpp"
#include "es/store/uuid.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esctl {

/// What esctl's exit status means (documented in `--help` and docs/esctl.md).
enum exit_code : int {
  exit_ok = 0,
  /// Bad command line or bad input (CLI11's errors, malformed ids, ...).
  exit_usage = 1,
  /// The event, stream, checkpoint or dead letter does not exist (or the
  /// stream was deleted).
  exit_not_found = 2,
  /// The store cannot be reached, or its schema is missing or not current.
  exit_unhealthy = 3,
  /// Any other error the store reported.
  exit_store_error = 4,
};

/// Returns the exit code for an error of the store library.
int exit_code_for(const caf::error& err);

/// Prints "esctl: `message`" to stderr and returns `code`.
int fail(int code, const std::string& message);

/// Prints the store error's description to stderr; returns its exit code.
int fail(const caf::error& err);

enum class backend : uint8_t { sqlite, postgres };

/// A store as given by `--store`: "sqlite:PATH" or "postgres:DSN".
struct store_location {
  backend kind = backend::sqlite;
  /// The file path or the libpq connection string.
  std::string target;
};

/// Parses "sqlite:PATH" or "postgres:DSN"; `invalid_argument` for anything
/// else (an unknown scheme, an empty target, PostgreSQL in a build without
/// it).
caf::expected<store_location> parse_store_location(std::string_view text);

/// What a look at the database found, without changing anything.
struct schema_probe {
  /// The SQLite file exists (always true on PostgreSQL once connected).
  bool exists = false;
  /// `SELECT 1` answered.
  bool answers = false;
  /// Tables the library needs that the database lacks.
  std::vector<std::string> missing_tables;
  /// The stored schema version (0 without a version table).
  int version = 0;
  /// The version this build of the library creates.
  int library_version = 0;

  bool current() const {
    return exists && answers && missing_tables.empty()
           && version == library_version;
  }
};

/// One store and the adapters esctl opened on it. Opening an adapter never
/// migrates: every accessor first checks that the schema is current and
/// fails with `migration_failed` (exit code 3) naming `esctl migrate`
/// otherwise. Not thread-safe.
class store {
public:
  explicit store(store_location loc);

  const store_location& location() const {
    return loc_;
  }

  /// Looks at the database read-only: connects, runs `SELECT 1`, lists the
  /// tables and reads the schema version. A missing SQLite file is no
  /// error (`exists` is false); a server that cannot be reached is.
  caf::expected<schema_probe> probe();

  /// Applies the pending migrations (creating the SQLite file if needed).
  caf::error migrate();

  caf::expected<es::event_store_ptr> events();
  caf::expected<es::read_model_db_ptr> db();
  caf::expected<es::outbox_ptr> outbox();

private:
  caf::error require_current_schema();

  store_location loc_;
  bool checked_ = false;
  es::event_store_ptr events_;
  es::read_model_db_ptr db_;
  es::outbox_ptr outbox_;
};

// -- SQL that differs between the backends ------------------------------------

/// An expression giving the text of UUID column `column`: 32 hex digits on
/// SQLite (blobs), the canonical form on PostgreSQL. `uuid_from_sql` reads
/// both.
std::string uuid_text_sql(backend kind, std::string_view column);

/// `id` in the form `uuid_text_sql` yields, for comparisons.
std::string uuid_sql_param(backend kind, const es::uuid& id);

/// Parses the text of `uuid_text_sql`; nullopt for NULL or garbage.
std::optional<es::uuid> uuid_from_sql(const es::sql_value& v);

/// An expression giving time column `column` in microseconds since the
/// epoch (SQLite keeps them so; PostgreSQL has timestamptz).
std::string micros_sql(backend kind, std::string_view column);

/// Runs one query in its own transaction.
caf::expected<std::vector<es::sql_row>>
query(es::read_model_db& db, const std::string& sql,
      const std::vector<es::sql_value>& params = {});

/// Runs one query that returns one integer.
caf::expected<int64_t> query_int(es::read_model_db& db, const std::string& sql,
                                 const std::vector<es::sql_value>& params = {});

} // namespace esctl
