#include "schema.hpp"

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

namespace es::detail::pg {

namespace {

// Version 1: the tables of the design brief (same columns as SQLite) and the
// position counter.
//
// Global positions come from es_position, a single row locked by every
// append until its transaction ends. Appends therefore commit in position
// order, positions are dense (a rolled-back append also rolls back its
// increment) and a reader continuing from a checkpoint can never miss an
// event that commits later with a lower position. Group commit amortises
// the serialisation: one transaction carries many appends.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE es_position (
  id       integer PRIMARY KEY CHECK (id = 1),
  position bigint  NOT NULL
);
INSERT INTO es_position VALUES (1, 0);

-- events: see events_ddl()

CREATE TABLE event_outbox (
  id              bigserial   PRIMARY KEY,
  event_id        uuid        NOT NULL,
  global_position bigint      NOT NULL,
  event_type      text        NOT NULL,
  aggregate_type  text        NOT NULL,
  aggregate_id    uuid        NOT NULL,
  tenant_id       uuid,
  status          text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'published', 'failed')),
  retry_count     integer     NOT NULL DEFAULT 0,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  published_at    timestamptz
);
CREATE INDEX event_outbox_pending ON event_outbox (id) WHERE status = 'pending';

CREATE TABLE projection_checkpoints (
  projection_name  text        PRIMARY KEY,
  global_position  bigint      NOT NULL,
  event_id         uuid,
  event_type       text,
  events_processed bigint      NOT NULL DEFAULT 0,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letter_queue (
  id              bigserial   PRIMARY KEY,
  projection_name text        NOT NULL,
  event_id        uuid        NOT NULL,
  global_position bigint      NOT NULL,
  event_type      text        NOT NULL,
  event_data      text        NOT NULL,
  error_message   text        NOT NULL,
  error_context   text        NOT NULL DEFAULT '',
  retry_count     integer     NOT NULL DEFAULT 0,
  status          text        NOT NULL DEFAULT 'failed'
                  CHECK (status IN ('failed', 'retrying', 'resolved')),
  first_failed_at timestamptz NOT NULL,
  last_failed_at  timestamptz NOT NULL,
  resolved_at     timestamptz,
  resolved_by     text,
  UNIQUE (projection_name, event_id)
);
CREATE INDEX dead_letter_queue_status
  ON dead_letter_queue (projection_name, status);

CREATE TABLE snapshots (
  aggregate_type    text        NOT NULL,
  aggregate_id      uuid        NOT NULL,
  aggregate_version bigint      NOT NULL,
  schema_version    integer     NOT NULL,
  state             text        NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (aggregate_type, aggregate_id)
);

)sql";

/// The events table: plain, hash-partitioned by aggregate id, or
/// range-partitioned by global position. A partitioned table cannot enforce
/// uniqueness without its partition key, so the hash variant keeps
/// (aggregate, version) unique through its primary key and event ids
/// unique through the event_ids table written in the same transaction (by
/// the trigger of version 3); global positions stay unique because they are
/// allocated under the position lock. The range variant keeps positions
/// unique through its primary key, and both event ids and (aggregate,
/// version) through event_ids, which outlives detached partitions.
std::string events_ddl(const events_layout& layout) {
  auto partitions = layout.hash_partitions;
  std::string columns = R"sql(
  global_position   bigint      NOT NULL,
  event_id          uuid        NOT NULL,
  event_type        text        NOT NULL,
  event_version     integer     NOT NULL,
  aggregate_type    text        NOT NULL,
  aggregate_id      uuid        NOT NULL,
  aggregate_version bigint      NOT NULL CHECK (aggregate_version >= 1),
  tenant_id         uuid,
  occurred_at       timestamptz NOT NULL,
  recorded_at       timestamptz NOT NULL DEFAULT now(),
  correlation_id    uuid,
  causation_id      uuid,
  actor_id          text        NOT NULL DEFAULT '',
  metadata          text        NOT NULL DEFAULT '',
  payload           json        NOT NULL,)sql";
  std::string indexes = R"sql(
CREATE INDEX events_type_position ON events (event_type, global_position);
CREATE INDEX events_tenant_position ON events (tenant_id, global_position)
  WHERE tenant_id IS NOT NULL;
)sql";
  if (layout.range_size > 0) {
    auto size = std::to_string(layout.range_size);
    return "CREATE TABLE events (" + columns + R"sql(
  PRIMARY KEY (global_position)
) PARTITION BY RANGE (global_position);
CREATE TABLE )sql"
           + range_partition_name(0)
           + " PARTITION OF events FOR VALUES FROM (1) TO ("
           + std::to_string(layout.range_size + 1) + R"sql();
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_stream
  ON events (aggregate_type, aggregate_id, aggregate_version);
CREATE INDEX events_event_id ON events (event_id);
CREATE TABLE event_ids (
  event_id          uuid   PRIMARY KEY,
  aggregate_type    text   NOT NULL,
  aggregate_id      uuid   NOT NULL,
  aggregate_version bigint NOT NULL,
  global_position   bigint NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
CREATE TABLE es_event_ranges (
  id         integer PRIMARY KEY CHECK (id = 1),
  range_size bigint  NOT NULL CHECK (range_size > 0)
);
INSERT INTO es_event_ranges VALUES (1, )sql"
           + size + ");\n" + indexes;
  }
  if (partitions <= 0)
    return "CREATE TABLE events (" + columns + R"sql(
  PRIMARY KEY (global_position),
  UNIQUE (event_id),
  UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);)sql" + indexes;
  std::string result = "CREATE TABLE events (" + columns + R"sql(
  PRIMARY KEY (aggregate_type, aggregate_id, aggregate_version)
) PARTITION BY HASH (aggregate_id);
)sql";
  for (int i = 0; i < partitions; ++i)
    result += "CREATE TABLE events_p" + std::to_string(i)
              + " PARTITION OF events FOR VALUES WITH (MODULUS "
              + std::to_string(partitions) + ", REMAINDER " + std::to_string(i)
              + ");\n";
  result += R"sql(CREATE INDEX events_position ON events (global_position);
CREATE TABLE event_ids (
  event_id          uuid   PRIMARY KEY,
  aggregate_type    text   NOT NULL,
  aggregate_id      uuid   NOT NULL,
  aggregate_version bigint NOT NULL,
  global_position   bigint NOT NULL
);
)sql";
  return result + indexes;
}

// Version 2: event ids each projection has handled (deduplicated side
// effects).
constexpr const char* schema_v2 = R"sql(
CREATE TABLE processed_events (
  projection_name text        NOT NULL,
  event_id        uuid        NOT NULL,
  processed_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection_name, event_id)
);
)sql";

// Version 3: on the partitioned variant, event_ids is kept by a trigger
// on events instead of by the application, so every row of events has its
// id there whoever inserts it (the application role may insert into events
// but neither into event_ids nor into the partitions themselves; see
// store/sql/postgres_app_role.sql). The trigger runs once per statement
// over its new rows, and as the schema owner.
constexpr const char* schema_v3 = R"sql(
DO $do$
BEGIN
  IF to_regclass('event_ids') IS NOT NULL THEN
    CREATE FUNCTION es_record_event_ids() RETURNS trigger
      LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
    BEGIN
      INSERT INTO event_ids (event_id, aggregate_type, aggregate_id,
                             aggregate_version, global_position)
        SELECT event_id, aggregate_type, aggregate_id, aggregate_version,
               global_position FROM es_new_events;
      RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER es_record_event_ids AFTER INSERT ON events
      REFERENCING NEW TABLE AS es_new_events
      FOR EACH STATEMENT EXECUTE FUNCTION es_record_event_ids();
  END IF;
END
$do$;
)sql";

// Version 4: each writing connection's last write, so that after losing a
// connection during a commit the store can tell whether the commit
// happened (see postgres_event_store.cpp). Rows of ended connections are
// removed when read, and by age when a store opens.
constexpr const char* schema_v4 = R"sql(
CREATE TABLE es_write_marks (
  writer     uuid        PRIMARY KEY,
  last_write uuid        NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
)sql";

// Version 5: causal chains, the events of one correlation id in position
// order, and the control events that delete or truncate a stream (looked
// up by every stream read). Built in the migration's transaction, which
// blocks appends while it runs: on a large log, create them CONCURRENTLY
// by hand first.
constexpr const char* schema_v5 = R"sql(
CREATE INDEX IF NOT EXISTS events_correlation_position
  ON events (correlation_id, global_position)
  WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_stream_control
  ON events (aggregate_type, aggregate_id, aggregate_version)
  WHERE event_type IN
    ('es.StreamDeleted', 'es.StreamTombstoned', 'es.StreamTruncated');
)sql";

// Version 6: the overlapping feed (docs/postgres.md, "Why the feed never
// skips"). Rows record the transaction that wrote them; `es_position.feed`
// says which way positions are allocated. In the overlapping feed,
// `es_reserve(n)` takes a session advisory lock (keyed by this schema's
// es_position table), gives the calling transaction its id, reserves the
// next n positions of es_position_seq and releases the lock, all in one
// call: transaction ids and positions of appending transactions are
// therefore handed out in the same order, and a reader's snapshot sees
// every position below the newest one written by a transaction older than
// the oldest appender still running. Appenders hold a shared transaction
// lock from before they get their id to their end; readers find them in
// pg_locks (`es_appenders`, `es_horizon`), so other transactions of the
// server, however long, do not hold back the feed. Old rows get
// transaction id 0 (long committed); new rows their own.
constexpr const char* schema_v6 = R"sql(
ALTER TABLE es_position ADD COLUMN feed text NOT NULL DEFAULT 'serialized'
  CHECK (feed IN ('serialized', 'overlapping'));
CREATE SEQUENCE es_position_seq AS bigint MINVALUE 1 CACHE 1;
ALTER TABLE events ADD COLUMN tx_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id();
CREATE FUNCTION es_reserve(n bigint) RETURNS bigint
LANGUAGE plpgsql AS $f$
DECLARE
  k CONSTANT bigint
    := 7286150000000 + ('es_position'::regclass)::oid::text::bigint;
  last bigint;
BEGIN
  PERFORM pg_advisory_lock(k);
  PERFORM pg_advisory_xact_lock_shared(74201,
    (('es_position'::regclass)::oid::text::bigint % 2147483647)::integer);
  IF (SELECT feed FROM es_position WHERE id = 1) <> 'overlapping' THEN
    PERFORM pg_advisory_unlock(k);
    RAISE EXCEPTION 'the feed of this store is serialized'
      USING ERRCODE = '55000';
  END IF;
  PERFORM pg_current_xact_id();
  last := nextval('es_position_seq') + n - 1;
  IF n > 1 THEN
    PERFORM setval('es_position_seq', last);
  END IF;
  PERFORM pg_advisory_unlock(k);
  RETURN last - n;
END
$f$;
-- The appenders of this store running now: the transaction ids (modulo
-- 2^32, as pg_locks shows them) of transactions holding the lock es_reserve
-- takes before they get their id. A reader calls it with its own statement
-- first and passes the result, with that statement's xmax, to es_horizon:
-- an appender older than that xmax and still running when the page is read
-- was running, and holding its lock, when this looked.
CREATE FUNCTION es_appenders() RETURNS bigint[]
LANGUAGE sql VOLATILE AS $f$
  SELECT ARRAY(SELECT t.transactionid::text::bigint FROM pg_locks a
    JOIN pg_locks t ON t.virtualtransaction = a.virtualtransaction
    WHERE a.locktype = 'advisory' AND a.classid = 74201 AND a.objsubid = 2
    AND a.objid = ((('es_position'::regclass)::oid::text::bigint
                    % 2147483647)::integer)::oid
    AND a.granted AND t.locktype = 'transactionid'
    AND t.mode = 'ExclusiveLock' AND t.granted)
$f$;
-- The oldest transaction id a reader must wait for, as of the calling
-- statement's snapshot: the oldest running transaction that is one of
-- `appenders` or younger than `since` (which es_appenders could not have
-- seen), or the snapshot's xmax.
CREATE FUNCTION es_horizon(appenders bigint[], since xid8) RETURNS xid8
LANGUAGE plpgsql STABLE AS $f$
DECLARE
  snap CONSTANT pg_snapshot := pg_current_snapshot();
  horizon xid8 := pg_snapshot_xmax(snap);
  x xid8;
BEGIN
  FOR x IN SELECT * FROM pg_snapshot_xip(snap) LOOP
    IF x < horizon AND (x >= since
                        OR (x::text::bigint % 4294967296) = ANY (appenders))
    THEN
      horizon := x;
    END IF;
  END LOOP;
  RETURN horizon;
END
$f$;
)sql";

// v7: the two advisory lock keys of the overlapping feed, each defined once
// (v6 spelled them out in es_reserve, es_appenders and the client's feed
// switch). Both follow from this schema's es_position table, so stores in
// different schemas of one database do not share locks. The functions are
// plain expressions: the planner inlines them where they are called.
constexpr const char* schema_v7 = R"sql(
CREATE FUNCTION es_reserve_lock_key() RETURNS bigint
LANGUAGE sql STABLE AS $f$
  SELECT 7286150000000 + ('es_position'::regclass)::oid::text::bigint
$f$;
CREATE FUNCTION es_appender_lock_key() RETURNS integer
LANGUAGE sql STABLE AS $f$
  SELECT (('es_position'::regclass)::oid::text::bigint % 2147483647)::integer
$f$;
CREATE OR REPLACE FUNCTION es_reserve(n bigint) RETURNS bigint
LANGUAGE plpgsql AS $f$
DECLARE
  k CONSTANT bigint := es_reserve_lock_key();
  last bigint;
BEGIN
  PERFORM pg_advisory_lock(k);
  PERFORM pg_advisory_xact_lock_shared(74201, es_appender_lock_key());
  IF (SELECT feed FROM es_position WHERE id = 1) <> 'overlapping' THEN
    PERFORM pg_advisory_unlock(k);
    RAISE EXCEPTION 'the feed of this store is serialized'
      USING ERRCODE = '55000';
  END IF;
  PERFORM pg_current_xact_id();
  last := nextval('es_position_seq') + n - 1;
  IF n > 1 THEN
    PERFORM setval('es_position_seq', last);
  END IF;
  PERFORM pg_advisory_unlock(k);
  RETURN last - n;
END
$f$;
CREATE OR REPLACE FUNCTION es_appenders() RETURNS bigint[]
LANGUAGE sql VOLATILE AS $f$
  SELECT ARRAY(SELECT t.transactionid::text::bigint FROM pg_locks a
    JOIN pg_locks t ON t.virtualtransaction = a.virtualtransaction
    WHERE a.locktype = 'advisory' AND a.classid = 74201 AND a.objsubid = 2
    AND a.objid = es_appender_lock_key()::oid
    AND a.granted AND t.locktype = 'transactionid'
    AND t.mode = 'ExclusiveLock' AND t.granted)
$f$;
)sql";

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> list{
    {1, "events, outbox, checkpoints, dead letters, snapshots", schema_v1},
    {2, "processed events", schema_v2},
    {3, "event ids of the partitioned variant kept by a trigger", schema_v3},
    {4, "marks of writes in flight", schema_v4},
    {5, "correlation and stream control indexes", schema_v5},
    {6, "transaction ids and the overlapping feed", schema_v6},
    {7, "lock keys of the overlapping feed", schema_v7},
  };
  return list;
}

std::string range_partition_name(int64_t index) {
  return "events_r" + std::to_string(index);
}

caf::error migrate(connection& conn, const events_layout& layout) {
  // One lock for all migrators of this database (an arbitrary constant).
  constexpr const char* lock = "SELECT pg_advisory_xact_lock(7286153409)";
  auto res = conn.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version integer PRIMARY KEY,"
                       " description text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now())");
  if (!res) {
    // Two first-time migrators can race on CREATE TABLE IF NOT EXISTS;
    // retry once under the lock.
    auto again = conn.exec(std::string{"BEGIN; "} + lock
                           + "; CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " version integer PRIMARY KEY,"
                             " description text NOT NULL,"
                             " applied_at timestamptz NOT NULL DEFAULT now());"
                             " COMMIT");
    if (!again) {
      static_cast<void>(conn.exec("ROLLBACK"));
      return std::move(again.error());
    }
  }
  auto latest = migrations().back().version;
  for (const auto& m : migrations()) {
    auto begin = conn.exec(std::string{"BEGIN; "} + lock);
    if (!begin)
      return std::move(begin.error());
    auto current = conn.exec("SELECT COALESCE(MAX(version), 0)::text"
                             " FROM schema_migrations");
    if (!current) {
      static_cast<void>(conn.exec("ROLLBACK"));
      return std::move(current.error());
    }
    auto version = std::stoi(current->text(0, 0));
    if (version > latest) {
      static_cast<void>(conn.exec("ROLLBACK"));
      return make_store_error(
        store_errc::schema_too_new,
        "database schema version " + std::to_string(version)
          + " is newer than this library's " + std::to_string(latest));
    }
    if (m.version <= version) {
      static_cast<void>(conn.exec("COMMIT"));
      continue;
    }
    std::string sql = m.sql;
    if (m.version == 1)
      sql = events_ddl(layout) + sql;
    auto applied = conn.exec(sql);
    if (applied)
      applied
        = conn.exec("INSERT INTO schema_migrations (version, "
                    "description) VALUES ("
                    + std::to_string(m.version) + ", '" + m.description + "')");
    if (applied)
      applied = conn.exec("COMMIT");
    if (!applied) {
      static_cast<void>(conn.exec("ROLLBACK"));
      auto& err = applied.error();
      if (is_retryable(err) || has_code(err, store_errc::permission_denied))
        return std::move(err);
      return make_store_error(store_errc::migration_failed,
                              "migration " + std::to_string(m.version) + " ("
                                + m.description
                                + ") failed: " + error_description(err));
    }
  }
  return caf::none;
}

} // namespace es::detail::pg

namespace es {

int postgres_schema_version() {
  return detail::pg::migrations().back().version;
}

} // namespace es
