#include "postgres/schema.hpp"

#include "es/store/errors.hpp"

namespace es::detail::pg {

namespace {

// Version 1: the tables of the design brief (same columns as SQLite), the
// position counter and the append function.
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

CREATE TABLE events (
  global_position   bigint      PRIMARY KEY,
  event_id          uuid        NOT NULL UNIQUE,
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
  payload           json        NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
CREATE INDEX events_type_position ON events (event_type, global_position);
CREATE INDEX events_tenant_position ON events (tenant_id, global_position)
  WHERE tenant_id IS NOT NULL;

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

-- Appends one batch to one stream. Result codes: 0 appended, 1 wrong
-- expected version, 2 duplicate event id, 3 idempotency conflict, 4 tenant
-- mismatch, 5 replay of an earlier append (deduplicated). Business outcomes
-- are returned, not raised, so one refused append does not abort the other
-- appends of its group's transaction.
CREATE FUNCTION es_append(
  p_aggregate_type  text,
  p_aggregate_id    uuid,
  p_expected_kind   smallint,   -- 0 any, 1 no_stream, 2 stream_exists, 3 exact
  p_expected        bigint,
  p_event_ids       uuid[],
  p_event_types     text[],
  p_event_versions  integer[],
  p_versions        bigint[],   -- 0: assign the next version
  p_tenant_id       uuid,
  p_occurred_at     bigint[],   -- microseconds since the Unix epoch
  p_correlation_ids uuid[],
  p_causation_ids   uuid[],
  p_actor_ids       text[],
  p_metadata        text[],
  p_payloads        text[],
  p_outbox          boolean)
RETURNS TABLE (code smallint, first_version bigint, last_version bigint,
               first_position bigint, last_position bigint, actual bigint,
               implied bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  n          integer := cardinality(p_event_ids);
  v_head     bigint := 0;
  v_tenant   uuid;
  v_top      bigint;
  v_stored   integer;
  v_foreign  integer;
  v_ordered  integer;
  v_first    record;
  v_last     record;
BEGIN
  -- Serialise appenders: the lock is held until this transaction ends.
  PERFORM 1 FROM es_position WHERE id = 1 FOR UPDATE;

  -- A batch whose ids are stored already is a replay, or a conflict.
  SELECT count(*),
         count(*) FILTER (WHERE e.aggregate_type <> p_aggregate_type
                             OR e.aggregate_id <> p_aggregate_id)
    INTO v_stored, v_foreign
    FROM events e WHERE e.event_id = ANY (p_event_ids);
  IF v_foreign > 0 THEN
    RETURN QUERY SELECT 2::smallint, 0::bigint, 0::bigint, 0::bigint,
                        0::bigint, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  IF v_stored > 0 THEN
    SELECT count(*) INTO v_ordered
      FROM unnest(p_event_ids) WITH ORDINALITY AS t(id, ord)
      JOIN events e ON e.event_id = t.id
     WHERE e.aggregate_version - t.ord =
           (SELECT e2.aggregate_version - 1 FROM events e2
             WHERE e2.event_id = p_event_ids[1]);
    IF v_stored = n AND v_ordered = n THEN
      SELECT aggregate_version, global_position INTO v_first
        FROM events WHERE event_id = p_event_ids[1];
      SELECT aggregate_version, global_position INTO v_last
        FROM events WHERE event_id = p_event_ids[n];
      RETURN QUERY SELECT 5::smallint, v_first.aggregate_version,
                          v_last.aggregate_version, v_first.global_position,
                          v_last.global_position, 0::bigint, 0::bigint;
      RETURN;
    END IF;
    RETURN QUERY SELECT 3::smallint, 0::bigint, 0::bigint, 0::bigint,
                        0::bigint, v_stored::bigint, 0::bigint;
    RETURN;
  END IF;

  SELECT e.aggregate_version, e.tenant_id INTO v_head, v_tenant
    FROM events e
   WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id
   ORDER BY e.aggregate_version DESC LIMIT 1;
  IF NOT FOUND THEN
    v_head := 0;
  END IF;

  IF (p_expected_kind = 1 AND v_head <> 0)
     OR (p_expected_kind = 2 AND v_head = 0)
     OR (p_expected_kind = 3 AND v_head <> p_expected) THEN
    RETURN QUERY SELECT 1::smallint, 0::bigint, 0::bigint, 0::bigint,
                        0::bigint, v_head, -1::bigint;
    RETURN;
  END IF;
  IF v_head > 0 AND v_tenant IS DISTINCT FROM p_tenant_id THEN
    RETURN QUERY SELECT 4::smallint, 0::bigint, 0::bigint, 0::bigint,
                        0::bigint, v_head, 0::bigint;
    RETURN;
  END IF;
  -- Explicit versions must be the next ones; a mismatch states what the
  -- writer expected.
  FOR i IN 1 .. n LOOP
    IF p_versions[i] <> 0 AND p_versions[i] <> v_head + i THEN
      RETURN QUERY SELECT 1::smallint, 0::bigint, 0::bigint, 0::bigint,
                          0::bigint, v_head, p_versions[i] - i;
      RETURN;
    END IF;
  END LOOP;

  UPDATE es_position SET position = position + n WHERE id = 1
  RETURNING position INTO v_top;

  INSERT INTO events (global_position, event_id, event_type, event_version,
                      aggregate_type, aggregate_id, aggregate_version,
                      tenant_id, occurred_at, correlation_id, causation_id,
                      actor_id, metadata, payload)
  SELECT v_top - n + t.ord, t.id, t.etype, t.ever, p_aggregate_type,
         p_aggregate_id, v_head + t.ord, p_tenant_id,
         'epoch'::timestamptz + t.occ * interval '1 microsecond',
         t.corr, t.caus, t.actor, t.meta, t.payload::json
    FROM unnest(p_event_ids, p_event_types, p_event_versions, p_occurred_at,
                p_correlation_ids, p_causation_ids, p_actor_ids, p_metadata,
                p_payloads)
         WITH ORDINALITY AS t(id, etype, ever, occ, corr, caus, actor, meta,
                              payload, ord);

  IF p_outbox THEN
    INSERT INTO event_outbox (event_id, global_position, event_type,
                              aggregate_type, aggregate_id, tenant_id)
    SELECT t.id, v_top - n + t.ord, t.etype, p_aggregate_type, p_aggregate_id,
           p_tenant_id
      FROM unnest(p_event_ids, p_event_types) WITH ORDINALITY
           AS t(id, etype, ord);
  END IF;

  RETURN QUERY SELECT 0::smallint, v_head + 1, v_head + n, v_top - n + 1,
                      v_top, v_head, 0::bigint;
END
$fn$;
)sql";

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> list{
    {1, "events, outbox, checkpoints, dead letters, snapshots, es_append",
     schema_v1},
  };
  return list;
}

caf::error migrate(connection& conn) {
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
      return make_store_error(store_errc::schema_too_new,
                              "database schema version "
                                + std::to_string(version)
                                + " is newer than this library's "
                                + std::to_string(latest));
    }
    if (m.version <= version) {
      static_cast<void>(conn.exec("COMMIT"));
      continue;
    }
    auto applied = conn.exec(m.sql);
    if (applied)
      applied = conn.exec("INSERT INTO schema_migrations (version, "
                          "description) VALUES ("
                          + std::to_string(m.version) + ", '"
                          + m.description + "')");
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
