-- Row-level security by tenant for the application role.
--
-- Run as the schema owner after the migrations (postgres_migrate) and the
-- app-role script (postgres_app_role.sql), with the same psql variables:
--
--   psql -v role=es_app -v schema=public -f store/sql/postgres_tenant_rls.sql
--
-- Sessions of the role then see and write only rows of the tenant their
-- setting es.tenant_id names; postgres_config::session_tenant sets it on
-- every connection the store opens:
--
--   SELECT set_config('es.tenant_id', '<tenant uuid>', false);
--
-- A session of the role without the setting sees no row of these tables
-- and can write none; rows without a tenant (tenant_id NULL) are visible to
-- no session of the role. The owner, superusers and roles with BYPASSRLS
-- are not subject to the policies: run migrations, esctl and relays that
-- serve every tenant as one of them. Other roles see nothing of these
-- tables once security is enabled, unless given policies of their own.
--
-- Running the script again replaces the policies. See docs/tenancy.md.

SET client_min_messages = warning;

-- The log: reads, and new rows, of the session's tenant only.
ALTER TABLE :"schema".events ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".events;
CREATE POLICY es_tenant ON :"schema".events TO :"role"
  USING (tenant_id = nullif(current_setting('es.tenant_id', true), '')::uuid)
  WITH CHECK
    (tenant_id = nullif(current_setting('es.tenant_id', true), '')::uuid);

-- Outbox rows carry the tenant of their event: a relay of the role serves
-- its session's tenant (claims, marks and cleanup see its rows only).
ALTER TABLE :"schema".event_outbox ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".event_outbox;
CREATE POLICY es_tenant ON :"schema".event_outbox TO :"role"
  USING (tenant_id = nullif(current_setting('es.tenant_id', true), '')::uuid)
  WITH CHECK
    (tenant_id = nullif(current_setting('es.tenant_id', true), '')::uuid);

-- A snapshot is its stream's: visible, and writable, when the session sees
-- an event of the stream (the lookup goes through the policy of events,
-- on the unique stream key).
ALTER TABLE :"schema".snapshots ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".snapshots;
CREATE POLICY es_tenant ON :"schema".snapshots TO :"role"
  USING (EXISTS (SELECT 1 FROM :"schema".events e
                 WHERE e.aggregate_type = snapshots.aggregate_type
                   AND e.aggregate_id = snapshots.aggregate_id))
  WITH CHECK (EXISTS (SELECT 1 FROM :"schema".events e
                      WHERE e.aggregate_type = snapshots.aggregate_type
                        AND e.aggregate_id = snapshots.aggregate_id));

SELECT to_regclass(:'schema' || '.event_ids') IS NOT NULL AS partitioned \gset
\if :partitioned
-- The partitioned variant's event ids: an id is visible when its event is
-- (looked up by the event's primary key). The trigger that fills the table
-- runs as the owner.
ALTER TABLE :"schema".event_ids ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".event_ids;
CREATE POLICY es_tenant ON :"schema".event_ids TO :"role"
  USING (EXISTS (SELECT 1 FROM :"schema".events e
                 WHERE e.aggregate_type = event_ids.aggregate_type
                   AND e.aggregate_id = event_ids.aggregate_id
                   AND e.aggregate_version = event_ids.aggregate_version));

-- A dead letter is its event's (found through event_ids, whose policy
-- applies in turn).
ALTER TABLE :"schema".dead_letter_queue ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".dead_letter_queue;
CREATE POLICY es_tenant ON :"schema".dead_letter_queue TO :"role"
  USING (EXISTS (SELECT 1 FROM :"schema".event_ids i
                 WHERE i.event_id = dead_letter_queue.event_id))
  WITH CHECK (EXISTS (SELECT 1 FROM :"schema".event_ids i
                      WHERE i.event_id = dead_letter_queue.event_id));
\else
-- A dead letter is its event's (found by the unique event id).
ALTER TABLE :"schema".dead_letter_queue ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS es_tenant ON :"schema".dead_letter_queue;
CREATE POLICY es_tenant ON :"schema".dead_letter_queue TO :"role"
  USING (EXISTS (SELECT 1 FROM :"schema".events e
                 WHERE e.event_id = dead_letter_queue.event_id))
  WITH CHECK (EXISTS (SELECT 1 FROM :"schema".events e
                      WHERE e.event_id = dead_letter_queue.event_id));
\endif

-- Not covered, having no tenant of their own: projection_checkpoints and
-- processed_events (name checkpoints per tenant, as the scoped checkpoint
-- store does), es_position, es_write_marks and schema_migrations (the
-- store's bookkeeping, no tenant data).
