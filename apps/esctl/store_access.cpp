#include "store_access.hpp"

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#ifdef ES_HAVE_POSTGRES
#  include "es/postgres/postgres.hpp"
#endif

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace esctl {

namespace {

/// The tables every store of the current schema has, on both backends.
const std::vector<std::string>& required_tables() {
  static const std::vector<std::string> names{
    "schema_migrations", "events",
    "event_outbox",      "projection_checkpoints",
    "dead_letter_queue", "snapshots",
    "processed_events",
  };
  return names;
}

std::vector<std::string> missing_of(const std::vector<std::string>& present) {
  std::vector<std::string> missing;
  for (const auto& t : required_tables())
    if (std::find(present.begin(), present.end(), t) == present.end())
      missing.push_back(t);
  return missing;
}

/// A read-only SQLite connection for the probe: the library's factories
/// would create and migrate the file, which a look must not do.
class sqlite_peek {
public:
  ~sqlite_peek() {
    if (db_ != nullptr)
      sqlite3_close(db_);
  }

  caf::error open(const std::string& path) {
    auto rc
      = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
    if (rc != SQLITE_OK)
      return error("cannot open " + path);
    sqlite3_busy_timeout(db_, 5000);
    return caf::none;
  }

  /// Runs `sql` and returns the first column of every row as text.
  caf::expected<std::vector<std::string>> column(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK)
      return error(sql);
    std::vector<std::string> result;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      auto* text = sqlite3_column_text(st, 0);
      result.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text)
                                          : "");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
      return error(sql);
    return result;
  }

private:
  caf::error error(const std::string& what) {
    auto code = db_ != nullptr ? sqlite3_errcode(db_) : SQLITE_CANTOPEN;
    std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    auto errc = code == SQLITE_NOTADB || code == SQLITE_CORRUPT
                  ? es::store_errc::corrupt_database
                  : es::store_errc::connection_failed;
    return es::make_store_error(errc, what + ": " + msg);
  }

  sqlite3* db_ = nullptr;
};

caf::expected<schema_probe> probe_sqlite(const std::string& path) {
  schema_probe result;
  result.library_version = es::sqlite_schema_version();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    result.missing_tables = required_tables();
    return result;
  }
  result.exists = true;
  sqlite_peek peek;
  if (auto err = peek.open(path))
    return err;
  auto one = peek.column("SELECT 1");
  if (!one)
    return std::move(one.error());
  result.answers = true;
  auto tables = peek.column("SELECT name FROM sqlite_master"
                            " WHERE type = 'table'");
  if (!tables)
    return std::move(tables.error());
  result.missing_tables = missing_of(*tables);
  if (std::find(tables->begin(), tables->end(), "schema_migrations")
      != tables->end()) {
    auto v = peek.column("SELECT COALESCE(MAX(version), 0)"
                         " FROM schema_migrations");
    if (!v)
      return std::move(v.error());
    result.version = v->empty() ? 0 : std::stoi(v->front());
  }
  return result;
}

#ifdef ES_HAVE_POSTGRES
es::postgres_config pg_config(const std::string& dsn) {
  es::postgres_config cfg;
  cfg.dsn = dsn;
  cfg.application_name = "esctl";
  cfg.read_connections = 1;
  cfg.migrate = false;
  return cfg;
}

caf::expected<schema_probe> probe_postgres(const std::string& dsn) {
  schema_probe result;
  result.library_version = es::postgres_schema_version();
  auto db = es::make_postgres_read_model_db(pg_config(dsn));
  if (!db)
    return std::move(db.error());
  result.exists = true;
  if (auto one = query(**db, "SELECT 1"); !one)
    return std::move(one.error());
  result.answers = true;
  auto rows = query(**db, "SELECT table_name::text FROM"
                          " information_schema.tables"
                          " WHERE table_schema = current_schema()");
  if (!rows)
    return std::move(rows.error());
  std::vector<std::string> tables;
  for (const auto& row : *rows)
    tables.push_back(es::sql_text(row.at(0)));
  result.missing_tables = missing_of(tables);
  if (std::find(tables.begin(), tables.end(), "schema_migrations")
      != tables.end()) {
    auto v = query_int(**db, "SELECT COALESCE(MAX(version), 0)"
                             " FROM schema_migrations");
    if (!v)
      return std::move(v.error());
    result.version = static_cast<int>(*v);
  }
  return result;
}
#endif

} // namespace

int exit_code_for(const caf::error& err) {
  using es::store_errc;
  for (auto code :
       {store_errc::connection_failed, store_errc::authentication_failed,
        store_errc::unknown_database, store_errc::corrupt_database,
        store_errc::schema_too_new, store_errc::migration_failed})
    if (es::has_code(err, code))
      return exit_unhealthy;
  if (es::has_code(err, store_errc::event_not_found)
      || es::has_code(err, store_errc::stream_deleted))
    return exit_not_found;
  if (es::has_code(err, store_errc::invalid_argument)
      || es::has_code(err, store_errc::invalid_uuid))
    return exit_usage;
  return exit_store_error;
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "esctl: %s\n", message.c_str());
  return code;
}

int fail(const caf::error& err) {
  auto text = es::error_description(err);
  if (text.empty())
    text = es::describe(err);
  return fail(exit_code_for(err), text);
}

caf::expected<store_location> parse_store_location(std::string_view text) {
  auto colon = text.find(':');
  auto scheme = text.substr(0, colon);
  if (colon == std::string_view::npos || colon + 1 == text.size())
    return es::make_store_error(es::store_errc::invalid_argument,
                                "--store takes sqlite:PATH or postgres:DSN, "
                                "not '"
                                  + std::string{text} + "'");
  store_location loc;
  loc.target = std::string{text.substr(colon + 1)};
  if (scheme == "sqlite") {
    loc.kind = backend::sqlite;
    return loc;
  }
  if (scheme == "postgres" || scheme == "postgresql") {
#ifdef ES_HAVE_POSTGRES
    loc.kind = backend::postgres;
    return loc;
#else
    return es::make_store_error(es::store_errc::invalid_argument,
                                "this esctl was built without PostgreSQL");
#endif
  }
  return es::make_store_error(es::store_errc::invalid_argument,
                              "unknown store scheme '" + std::string{scheme}
                                + "' (esctl knows sqlite: and postgres:)");
}

store::store(store_location loc) : loc_(std::move(loc)) {
  // nop
}

caf::expected<schema_probe> store::probe() {
#ifdef ES_HAVE_POSTGRES
  if (loc_.kind == backend::postgres)
    return probe_postgres(loc_.target);
#endif
  return probe_sqlite(loc_.target);
}

caf::error store::migrate() {
#ifdef ES_HAVE_POSTGRES
  if (loc_.kind == backend::postgres)
    return es::postgres_migrate(pg_config(loc_.target));
#endif
  // Opening a read-model database creates the file and applies every
  // pending step, each in its own transaction.
  auto db = es::make_sqlite_read_model_db(loc_.target);
  return db ? caf::error{} : std::move(db.error());
}

caf::error store::require_current_schema() {
  if (checked_)
    return caf::none;
  auto p = probe();
  if (!p)
    return std::move(p.error());
  if (!p->exists)
    return es::make_store_error(es::store_errc::connection_failed,
                                "no database at " + loc_.target
                                  + " (`esctl migrate` creates one)");
  if (p->version > p->library_version)
    return es::make_store_error(
      es::store_errc::schema_too_new,
      "the schema is at version " + std::to_string(p->version)
        + ", newer than this esctl's " + std::to_string(p->library_version));
  if (!p->current())
    return es::make_store_error(
      es::store_errc::migration_failed,
      "the schema is at version " + std::to_string(p->version)
        + ", this esctl needs version " + std::to_string(p->library_version)
        + ": run `esctl migrate`");
  checked_ = true;
  return caf::none;
}

caf::expected<es::event_store_ptr> store::events() {
  if (events_)
    return events_;
  if (auto err = require_current_schema())
    return err;
#ifdef ES_HAVE_POSTGRES
  if (loc_.kind == backend::postgres) {
    auto s = es::make_postgres_event_store(pg_config(loc_.target));
    if (!s)
      return std::move(s.error());
    events_ = std::move(*s);
    return events_;
  }
#endif
  es::sqlite_config cfg;
  cfg.path = loc_.target;
  cfg.read_connections = 1;
  auto s = es::make_sqlite_event_store(cfg);
  if (!s)
    return std::move(s.error());
  events_ = std::move(*s);
  return events_;
}

caf::expected<es::read_model_db_ptr> store::db() {
  if (db_)
    return db_;
  if (auto err = require_current_schema())
    return err;
#ifdef ES_HAVE_POSTGRES
  if (loc_.kind == backend::postgres) {
    auto d = es::make_postgres_read_model_db(pg_config(loc_.target));
    if (!d)
      return std::move(d.error());
    db_ = std::move(*d);
    return db_;
  }
#endif
  auto d = es::make_sqlite_read_model_db(loc_.target);
  if (!d)
    return std::move(d.error());
  db_ = std::move(*d);
  return db_;
}

caf::expected<es::outbox_ptr> store::outbox() {
  if (outbox_)
    return outbox_;
  if (auto err = require_current_schema())
    return err;
#ifdef ES_HAVE_POSTGRES
  if (loc_.kind == backend::postgres) {
    auto o = es::make_postgres_outbox(pg_config(loc_.target));
    if (!o)
      return std::move(o.error());
    outbox_ = std::move(*o);
    return outbox_;
  }
#endif
  auto o = es::make_sqlite_outbox(loc_.target);
  if (!o)
    return std::move(o.error());
  outbox_ = std::move(*o);
  return outbox_;
}

std::string uuid_text_sql(backend kind, std::string_view column) {
  if (kind == backend::sqlite)
    return "lower(hex(" + std::string{column} + "))";
  return std::string{column} + "::text";
}

std::string uuid_sql_param(backend kind, const es::uuid& id) {
  auto text = id.to_string();
  if (kind == backend::sqlite)
    text.erase(std::remove(text.begin(), text.end(), '-'), text.end());
  return text;
}

std::optional<es::uuid> uuid_from_sql(const es::sql_value& v) {
  auto text = es::sql_text(v);
  if (text.size() == 32) {
    for (size_t pos : {8, 13, 18, 23})
      text.insert(pos, 1, '-');
  }
  if (text.empty())
    return std::nullopt;
  auto id = es::uuid::parse(text);
  if (!id)
    return std::nullopt;
  return *id;
}

std::string micros_sql(backend kind, std::string_view column) {
  if (kind == backend::sqlite)
    return std::string{column};
  return "(EXTRACT(EPOCH FROM " + std::string{column} + ") * 1000000)::bigint";
}

caf::expected<std::vector<es::sql_row>>
query(es::read_model_db& db, const std::string& sql,
      const std::vector<es::sql_value>& params) {
  std::vector<es::sql_row> rows;
  auto err = db.transact([&](es::sql_transaction& tx) -> caf::error {
    auto r = tx.query(sql, params);
    if (!r)
      return std::move(r.error());
    rows = std::move(*r);
    return caf::none;
  });
  if (err)
    return err;
  return rows;
}

caf::expected<int64_t> query_int(es::read_model_db& db, const std::string& sql,
                                 const std::vector<es::sql_value>& params) {
  auto rows = query(db, sql, params);
  if (!rows)
    return std::move(rows.error());
  if (rows->empty() || rows->front().empty())
    return int64_t{0};
  return es::sql_int(rows->front().front()).value_or(0);
}

} // namespace esctl
