// The PostgreSQL adapters: the production backend. One header for the
// configuration and every factory: the event store, the snapshot,
// checkpoint and dead-letter stores, read-model databases and the outbox.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/outbox.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace es {

/// How appends allocate global positions, and so how far readers may read
/// (docs/postgres.md, "Why the feed never skips"). A database has one feed
/// at a time, kept in its `es_position` row.
enum class postgres_feed {
  /// Appending transactions hold the position row's lock until their
  /// commit is visible: they commit one after another, positions are dense
  /// and visible in order. Nothing outside the store delays readers.
  serialized,
  /// Appending transactions reserve positions and their transaction id
  /// together under a short lock and commit side by side, sharing WAL
  /// flushes; readers read up to the newest position written by a
  /// transaction older than the oldest appending transaction still running.
  /// Writes that fail after reserving positions (a rollback, a key another
  /// process took meanwhile) leave holes in the positions, an appending
  /// transaction left open holds back the end of the feed until it ends,
  /// and finding the end reads the server's lock table.
  overlapping,
};

/// Returns "serialized" or "overlapping".
const char* to_string(postgres_feed feed);

/// Configuration of the PostgreSQL adapters.
struct postgres_config {
  /// A libpq connection string or URI, for example
  /// "host=db.internal dbname=app user=app sslmode=verify-full". Settings it
  /// leaves out come from the usual libpq environment variables (PGHOST,
  /// PGSSLMODE, PGSSLROOTCERT, ...), so TLS is configured the libpq way.
  std::string dsn;
  /// The name the store's sessions show in pg_stat_activity and server logs
  /// unless the DSN sets `application_name`.
  std::string application_name = "eventsource";
  /// When set, sessions work in this schema (`SET search_path`), whatever
  /// the DSN says.
  std::string schema;
  /// Most connections open for reads at once (opened on demand, kept while
  /// idle). A read that finds all of them in use waits for one up to
  /// `read_wait_timeout`, then fails with the retryable `pool_exhausted`.
  size_t read_connections = 4;
  std::chrono::milliseconds read_wait_timeout{5'000};
  /// Most append requests committed together in one transaction.
  size_t max_group_size = 256;
  /// Connections (and so groups) committing at once. With more than one,
  /// the next group is decided and sent while the previous one commits.
  /// In the serialized feed commits still take the position lock one after
  /// the other, so this pays off only when round trips are long (a distant
  /// server); in the overlapping feed their commits overlap (see
  /// bench/README.md for measured figures).
  size_t writer_connections = 1;
  /// The feed this store expects. A store opened on a database with the
  /// other feed switches it when the log is empty and fails with
  /// `invalid_argument` otherwise (see `postgres_switch_feed`).
  postgres_feed feed = postgres_feed::serialized;
  /// How long the head of the queue may wait for its group to grow to the
  /// size of the previous group before committing (0: never waits). Only
  /// concurrent callers cause a wait: a lone caller's groups have one
  /// request, and a group that size never waits.
  std::chrono::microseconds group_gather{500};
  /// Server-side limit per statement (SET statement_timeout); 0 keeps the
  /// server's setting. Exceeding it fails the call with `timeout`.
  std::chrono::milliseconds statement_timeout{30'000};
  /// How long connecting may take (libpq connect_timeout) unless the DSN
  /// sets it.
  std::chrono::seconds connect_timeout{10};
  /// After a connection failed, wait at least this long before trying to
  /// connect again (doubling up to `max_reconnect_backoff`); calls in
  /// between fail fast with `connection_failed`.
  std::chrono::milliseconds reconnect_backoff{50};
  std::chrono::milliseconds max_reconnect_backoff{2'000};
  store_limits limits;
  /// When set, appends are validated against the registry.
  std::shared_ptr<const event_registry> registry;
  /// Write an `event_outbox` row for each appended event, in the append's
  /// transaction (see `postgres_outbox`).
  bool outbox = false;
  /// Apply pending schema migrations when a store opens.
  bool migrate = true;
  /// When the schema is first created: 0 for a plain events table, N > 0
  /// for one hash-partitioned by aggregate id into N partitions (see
  /// docs/postgres.md for the trade-offs). Ignored for existing schemas;
  /// the store detects the variant.
  int events_partitions = 0;
  /// When the schema is first created and above 0 (with
  /// `events_partitions` 0): the events table is partitioned by global
  /// position, this many positions per partition, so that old partitions
  /// can be detached and archived (`postgres_prepare_event_ranges`,
  /// `postgres_detach_event_ranges`; see docs/postgres.md for the
  /// trade-offs against the hash variant). Ignored for existing schemas.
  int64_t events_range_size = 0;
  /// When set, every session the adapters open names this tenant in the
  /// setting `es.tenant_id` (`set_config('es.tenant_id', ..., false)`), on
  /// which the row-level security policies of
  /// store/sql/postgres_tenant_rls.sql let the application role see and
  /// write that tenant's rows only. Under those policies a session without
  /// it sees no row of the tenant-bearing tables. Sessions are the store's
  /// own: a pooler between store and server must keep them (session
  /// pooling), or the setting may reach another tenant's client. See
  /// docs/tenancy.md.
  std::optional<uuid> session_tenant;
};

/// Returns the schema version this library creates and understands.
int postgres_schema_version();

/// Applies pending migrations to the database behind `cfg.dsn`. Each runs in
/// its own transaction under an advisory lock, so concurrent callers apply
/// each step once; running it again is harmless. Migrations run without
/// `statement_timeout`: a step may build indexes or wait for another process
/// applying it.
caf::error postgres_migrate(const postgres_config& cfg);

/// Switches the database's feed, as the schema owner, while no store
/// appends to it (stop the writers first): waits for the position lock,
/// carries the next position over to the other allocator, builds the index
/// the overlapping feed's readers use (or drops it), and then waits for
/// every transaction that started before the switch to end, so that no
/// append of the old feed commits after it. Errors: connection errors,
/// `timeout` (after `cfg.statement_timeout` when older transactions do not
/// end), `permission_denied`.
caf::error postgres_switch_feed(const postgres_config& cfg, postgres_feed feed);

/// Returns the database's feed.
caf::expected<postgres_feed> postgres_feed_of(const postgres_config& cfg);

/// One range partition of a range-partitioned events table.
struct event_range {
  std::string name;
  int64_t first_position = 0;
  int64_t last_position = 0;
};

/// The range partitions attached to the events table.
struct event_ranges_report {
  int64_t range_size = 0;
  /// In position order.
  std::vector<event_range> ranges;
  /// Rows in the default partition: positions beyond the last range.
  /// Normally 0, when partitions are prepared ahead of the head.
  int64_t default_rows = 0;
  int64_t head = 0;
};

/// Lists the range partitions. Errors: `invalid_argument` when the events
/// table is not range-partitioned, connection errors.
caf::expected<event_ranges_report>
postgres_event_ranges(const postgres_config& cfg);

/// Creates the range partitions from the lowest attached one up to `ahead`
/// ranges beyond the one holding the head, as the schema owner; rows the
/// default partition holds for a new range move into it in the same
/// transaction (appends landing in the default partition wait meanwhile).
/// Run it from a maintenance job often enough that appends never reach the
/// default partition. Returns the partitions afterwards.
caf::expected<event_ranges_report>
postgres_prepare_event_ranges(const postgres_config& cfg, int ahead = 2);

/// Detaches every range partition whose positions all lie at or below
/// `up_to_position` (at most the head) and returns their names: the
/// tables stay in the schema, outside the log, to be archived and dropped.
/// Their events are gone from reads, their ids stay reserved (event_ids).
/// Detach only what projections have processed and what snapshots or
/// truncations (`truncate_stream`) make unneeded for loading aggregates.
caf::expected<std::vector<std::string>>
postgres_detach_event_ranges(const postgres_config& cfg,
                             int64_t up_to_position);

/// Opens the PostgreSQL event store (migrating first if `cfg.migrate`).
///
/// Appends from concurrent callers are group-committed: the caller at the
/// head of the queue decides the queued requests together, each with its
/// own version check and result, and writes the accepted ones in one
/// transaction. Stream heads the store already knows (or reads without a
/// lock) let it decide first and send the insert as one pipeline (one
/// implicit transaction, one round trip); when a head turns out stale, or a
/// request would be refused, the group is decided again under the position lock
/// from fresh reads. How global positions are allocated is the database's
/// feed (`postgres_feed`): either way the feed never skips an event.
///
/// Errors: `connection_failed` (retryable), `authentication_failed`,
/// `unknown_database`, `schema_too_new`, `migration_failed`.
caf::expected<event_store_ptr> make_postgres_event_store(postgres_config cfg);

/// Snapshot, checkpoint and dead-letter stores (migrating first if
/// `cfg.migrate`).
caf::expected<snapshot_store_ptr>
make_postgres_snapshot_store(const postgres_config& cfg);
caf::expected<checkpoint_store_ptr>
make_postgres_checkpoint_store(const postgres_config& cfg);
caf::expected<dead_letter_store_ptr>
make_postgres_dead_letter_store(const postgres_config& cfg);

/// Opens (and migrates, if `cfg.migrate`) a PostgreSQL read-model database.
caf::expected<read_model_db_ptr>
make_postgres_read_model_db(const postgres_config& cfg);

/// The outbox of the PostgreSQL store behind `cfg`.
caf::expected<outbox_ptr> make_postgres_outbox(const postgres_config& cfg);

} // namespace es
