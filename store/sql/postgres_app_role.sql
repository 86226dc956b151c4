-- A least-privilege role for applications using the event store.
--
-- Run as the schema owner after the migrations (postgres_migrate), with
-- psql variables for the role and the schema:
--
--   psql -v role=es_app -v schema=public -f store/sql/postgres_app_role.sql
--
-- The role may read and append events but never change or delete them.
-- Migrations run as the owner; start applications with
-- postgres_config::migrate = false.

CREATE ROLE :"role" LOGIN;
GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT ON :"schema".schema_migrations TO :"role";

-- The log: append-only for the application.
GRANT SELECT, INSERT ON :"schema".events TO :"role";
-- Position allocation locks and moves the counter (the serialized feed);
-- each writing connection marks its last write (read and removed after a
-- lost connection).
GRANT SELECT, UPDATE ON :"schema".es_position TO :"role";
-- The overlapping feed reserves positions from a sequence (es_reserve).
GRANT USAGE, UPDATE ON SEQUENCE :"schema".es_position_seq TO :"role";
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".es_write_marks TO :"role";

-- Outbox rows are written with appends and marked by relays.
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".event_outbox TO :"role";
GRANT USAGE ON SEQUENCE :"schema".event_outbox_id_seq TO :"role";

-- Projection state, dead letters and snapshots change as they work.
GRANT SELECT, INSERT, UPDATE, DELETE
  ON :"schema".projection_checkpoints, :"schema".dead_letter_queue,
     :"schema".snapshots, :"schema".processed_events
  TO :"role";
GRANT USAGE ON SEQUENCE :"schema".dead_letter_queue_id_seq TO :"role";

-- The partitioned variant keeps event ids in their own table, written only
-- by a trigger on events (running as the owner): the role reads it but
-- cannot add ids without events. Privileges on the partitions are not
-- granted either, so every insert goes through events and its trigger.
SELECT to_regclass(:'schema' || '.event_ids') IS NOT NULL AS partitioned \gset
\if :partitioned
GRANT SELECT ON :"schema".event_ids TO :"role";
\endif
