// The SQLite adapters: the embedded default backend. One header for the
// configuration and every factory: the event store, the snapshot,
// checkpoint and dead-letter stores on its file, and read-model databases.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/outbox.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace es {

/// How SQLite waits for the disk on commit (PRAGMA synchronous).
enum class sqlite_sync : uint8_t {
  /// fsync on every commit: an acknowledged append survives power loss.
  full,
  /// WAL without fsync on commit: survives a process crash, may lose the last
  /// commits on power loss.
  normal,
  /// No fsync at all: for tests and throwaway data.
  off,
};

/// Configuration of `make_sqlite_event_store`.
struct sqlite_config {
  /// Database file; created with its directory missing parents not included.
  std::string path;
  sqlite_sync synchronous = sqlite_sync::full;
  store_limits limits;
  /// Most append requests committed together in one transaction.
  size_t max_group_size = 256;
  /// How long a write waits for another process's lock before failing with
  /// the retryable `storage_busy`.
  std::chrono::milliseconds busy_timeout{5000};
  /// Connections kept open for concurrent reads (WAL readers).
  size_t read_connections = 4;
  /// Pages of the SQLite page cache per connection (PRAGMA cache_size).
  int cache_pages = 4000;
  /// Bytes of the database file each connection reads through a memory
  /// map instead of read calls (PRAGMA mmap_size; 0 turns it off). Reads
  /// of a cached file get about a quarter faster. The map is of the main
  /// file only; the write-ahead log is read as before.
  int64_t mmap_bytes = 256 << 20;
  /// When set, appends are validated against the registry (see
  /// `memory_store_config::registry`).
  std::shared_ptr<const event_registry> registry;
  /// Write an `event_outbox` row for each appended event, in the append's
  /// transaction (see `make_sqlite_outbox`).
  bool outbox = false;
};

/// Returns the schema version this library creates and understands.
int sqlite_schema_version();

/// Opens (creating if needed) the database at `config.path`, applies pending
/// schema migrations in their own transactions, and returns the store.
///
/// Concurrent appends from many threads are group-committed: one caller
/// commits the requests queued behind it in one transaction, each request
/// with its own savepoint, version check and result.
///
/// Errors: `connection_failed` (cannot open), `corrupt_database` (not a
/// database), `schema_too_new` (written by a newer library),
/// `migration_failed`.
caf::expected<event_store_ptr> make_sqlite_event_store(sqlite_config config);

/// Snapshot, checkpoint and dead-letter stores on an event store's database
/// file (their tables are part of its schema; the file is created and
/// migrated if needed).
caf::expected<snapshot_store_ptr>
make_sqlite_snapshot_store(const std::string& path);
caf::expected<checkpoint_store_ptr>
make_sqlite_checkpoint_store(const std::string& path);
caf::expected<dead_letter_store_ptr>
make_sqlite_dead_letter_store(const std::string& path);

/// Opens (and migrates) a SQLite read-model database: read models next to
/// their checkpoints, in the event store's file or another one.
caf::expected<read_model_db_ptr> make_sqlite_read_model_db(std::string path);

/// The outbox of the SQLite store at `path` (its appends write the rows
/// with `sqlite_config::outbox`). A claim holds its rows for
/// `claim_timeout`: other relays skip them meanwhile, and its marks are
/// written when it commits, in one short transaction (appends do not wait
/// for a publish). A claim dropped without commit (a relay that crashed)
/// leaves its rows to be claimed again once its time is up; a relay that
/// takes longer than that may see its rows published twice (consumers
/// dedupe by event id).
caf::expected<outbox_ptr>
make_sqlite_outbox(const std::string& path,
                   std::chrono::milliseconds claim_timeout
                   = std::chrono::seconds(30));

} // namespace es
