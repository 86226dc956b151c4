#include "schema.hpp"

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"

#include <vector>

namespace es::detail::sqlite {

namespace {

// Version 1: the five tables of the design brief. Column names and meanings
// match the PostgreSQL schema; UUIDs are 16-byte blobs and times are
// microseconds since the Unix epoch (UTC).
constexpr const char* schema_v1 = R"sql(
CREATE TABLE events (
  global_position   INTEGER PRIMARY KEY,
  event_id          BLOB    NOT NULL CHECK (length(event_id) = 16),
  event_type        TEXT    NOT NULL,
  event_version     INTEGER NOT NULL,
  aggregate_type    TEXT    NOT NULL,
  aggregate_id      BLOB    NOT NULL CHECK (length(aggregate_id) = 16),
  aggregate_version INTEGER NOT NULL CHECK (aggregate_version >= 1),
  tenant_id         BLOB,
  occurred_at       INTEGER NOT NULL,
  correlation_id    BLOB,
  causation_id      BLOB,
  actor_id          TEXT    NOT NULL DEFAULT '',
  metadata          TEXT    NOT NULL DEFAULT '',
  payload           TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE UNIQUE INDEX events_stream
  ON events (aggregate_type, aggregate_id, aggregate_version);
CREATE INDEX events_type_position ON events (event_type, global_position);
CREATE INDEX events_tenant_position ON events (tenant_id, global_position)
  WHERE tenant_id IS NOT NULL;

CREATE TABLE event_outbox (
  id              INTEGER PRIMARY KEY,
  event_id        BLOB    NOT NULL,
  global_position INTEGER NOT NULL,
  event_type      TEXT    NOT NULL,
  aggregate_type  TEXT    NOT NULL,
  aggregate_id    BLOB    NOT NULL,
  tenant_id       BLOB,
  status          TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'published', 'failed')),
  retry_count     INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  published_at    INTEGER
);
CREATE INDEX event_outbox_pending ON event_outbox (status, id);

CREATE TABLE projection_checkpoints (
  projection_name  TEXT    PRIMARY KEY,
  global_position  INTEGER NOT NULL,
  event_id         BLOB,
  event_type       TEXT,
  events_processed INTEGER NOT NULL DEFAULT 0,
  updated_at       INTEGER NOT NULL
);

CREATE TABLE dead_letter_queue (
  id              INTEGER PRIMARY KEY,
  projection_name TEXT    NOT NULL,
  event_id        BLOB    NOT NULL,
  global_position INTEGER NOT NULL,
  event_type      TEXT    NOT NULL,
  event_data      TEXT    NOT NULL,
  error_message   TEXT    NOT NULL,
  error_context   TEXT    NOT NULL DEFAULT '',
  retry_count     INTEGER NOT NULL DEFAULT 0,
  status          TEXT    NOT NULL DEFAULT 'failed'
                  CHECK (status IN ('failed', 'retrying', 'resolved')),
  first_failed_at INTEGER NOT NULL,
  last_failed_at  INTEGER NOT NULL,
  resolved_at     INTEGER,
  resolved_by     TEXT,
  UNIQUE (projection_name, event_id)
);
CREATE INDEX dead_letter_queue_status
  ON dead_letter_queue (projection_name, status);

CREATE TABLE snapshots (
  aggregate_type    TEXT    NOT NULL,
  aggregate_id      BLOB    NOT NULL,
  aggregate_version INTEGER NOT NULL,
  schema_version    INTEGER NOT NULL,
  state             TEXT    NOT NULL,
  created_at        INTEGER NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
)sql";

// Version 2: event ids each projection has handled, for side effects that
// must happen at most once per event (at-least-once delivery, deduplicated).
constexpr const char* schema_v2 = R"sql(
CREATE TABLE processed_events (
  projection_name TEXT    NOT NULL,
  event_id        BLOB    NOT NULL,
  processed_at    INTEGER NOT NULL,
  PRIMARY KEY (projection_name, event_id)
);
)sql";

// The outbox's claims: a relay holds its rows until `claimed_until`
// (microseconds since the epoch), after which they can be claimed again.
constexpr const char* schema_v3 = R"sql(
ALTER TABLE event_outbox ADD COLUMN claimed_until INTEGER;
)sql";

// Causal chains: the events of one correlation id in position order. And
// the control events that delete or truncate a stream, looked up on every
// stream read.
constexpr const char* schema_v4 = R"sql(
CREATE INDEX events_correlation_position
  ON events (correlation_id, global_position)
  WHERE correlation_id IS NOT NULL;
CREATE INDEX events_stream_control
  ON events (aggregate_type, aggregate_id, aggregate_version)
  WHERE event_type IN
    ('es.StreamDeleted', 'es.StreamTombstoned', 'es.StreamTruncated');
)sql";

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> list{
    {1, "events, outbox, checkpoints, dead letters, snapshots", schema_v1},
    {2, "processed events", schema_v2},
    {3, "outbox claims", schema_v3},
    {4, "correlation and stream control indexes", schema_v4},
  };
  return list;
}

caf::error migrate(connection& conn) {
  if (auto err = conn.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version INTEGER PRIMARY KEY,"
                           " description TEXT NOT NULL,"
                           " applied_at INTEGER NOT NULL)"))
    return err;
  const std::string current_sql = "SELECT MAX(version) FROM schema_migrations";
  auto latest = migrations().back().version;
  for (const auto& m : migrations()) {
    auto current = query_int(conn, current_sql, 0);
    if (!current)
      return std::move(current.error());
    if (*current > latest)
      return make_store_error(
        store_errc::schema_too_new,
        "database schema version " + std::to_string(*current)
          + " is newer than this library's " + std::to_string(latest));
    if (m.version <= *current)
      continue;
    if (auto err = conn.exec("BEGIN IMMEDIATE"))
      return err;
    // Another process may have applied the step while we waited.
    auto again = query_int(conn, current_sql, 0);
    if (!again || *again >= m.version) {
      conn.exec("ROLLBACK");
      if (!again)
        return std::move(again.error());
      continue;
    }
    auto err = conn.exec(m.sql);
    if (!err) {
      auto st = conn.prepare("INSERT INTO schema_migrations"
                             " (version, description, applied_at)"
                             " VALUES (?1, ?2, ?3)");
      if (!st) {
        err = std::move(st.error());
      } else {
        reset_guard guard{**st};
        (*st)->bind(1, int64_t{m.version});
        (*st)->bind(2, std::string_view{m.description});
        (*st)->bind(3,
                    static_cast<int64_t>(now_utc().time_since_epoch().count()));
        auto rc = (*st)->step();
        if (rc != SQLITE_DONE)
          err = translate(rc, conn.handle(), "cannot record migration");
      }
    }
    if (!err)
      err = conn.exec("COMMIT");
    if (err) {
      conn.exec("ROLLBACK");
      if (has_code(err, store_errc::storage_busy))
        return err;
      return make_store_error(store_errc::migration_failed,
                              "migration " + std::to_string(m.version) + " ("
                                + m.description
                                + ") failed: " + error_description(err));
    }
  }
  return caf::none;
}

caf::expected<std::unique_ptr<connection>>
open_migrated(const std::string& path, int cache_pages, const char* what) {
  if (path.empty())
    return make_store_error(store_errc::invalid_argument,
                            std::string{what} + " needs a file path");
  constexpr int busy_timeout_ms = 5000;
  auto conn = connection::open(path, true, busy_timeout_ms, cache_pages);
  if (!conn)
    return std::move(conn.error());
  if (auto err = enable_wal(**conn, std::chrono::milliseconds{busy_timeout_ms}))
    return err;
  if (auto err = migrate(**conn))
    return err;
  return std::move(*conn);
}

} // namespace es::detail::sqlite

namespace es {

int sqlite_schema_version() {
  return detail::sqlite::migrations().back().version;
}

} // namespace es
