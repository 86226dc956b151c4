// The SQLite key store: subject keys in tables of the event store's file.
#pragma once

#include "es/shred/key_store.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace es {

/// Configuration of `make_sqlite_key_store`.
struct sqlite_key_store_config {
  /// Database file, usually the SQLite event store's (`sqlite_config::path`);
  /// created if missing.
  std::string path;
  /// When set, new keys are stored wrapped by it, and stored wrapped keys
  /// need it. Keys stored raw stay readable after a master key is added.
  std::optional<master_key> master;
  /// How long a write waits for another connection's lock before failing
  /// with the retryable `storage_busy`.
  std::chrono::milliseconds busy_timeout{5000};
};

/// Opens the key store on its own connection to `config.path`, creating its
/// tables (`es_subject_keys`, `es_subject_streams`) if needed. The
/// connection runs with `PRAGMA secure_delete=ON`, so a forgotten key's
/// bytes are overwritten in the file, and `forget` checkpoints and truncates
/// a write-ahead log, so no older copy of the page stays in it.
///
/// Errors: `connection_failed` (cannot open), `corrupt_database` (not a
/// database), `io_error`.
caf::expected<key_store_ptr>
make_sqlite_key_store(sqlite_key_store_config config);

} // namespace es
