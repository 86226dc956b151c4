// Error codes of the store module and helpers to build and inspect them.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace es {

/// Error codes of the store module: event model, registry and event stores.
/// Append-only: codes keep their numbers once released.
enum class store_errc : uint8_t {
  /// The stream's version differs from the expected version. Context:
  /// (description, stream, expected, actual); see `get_version_conflict`.
  wrong_expected_version = 1,
  /// An event id of the batch is already stored in another stream.
  duplicate_event_id,
  /// Some, but not all, event ids of the batch are already stored, or they
  /// are stored at other versions: the batch is neither new nor a replay.
  idempotency_conflict,
  /// The event id is not stored.
  event_not_found,
  /// No codec is registered for the event type and version.
  unknown_event_type,
  /// A payload or metadata is not well-formed JSON, or does not decode into
  /// the registered type.
  malformed_payload,
  /// A payload or metadata exceeds the configured limit.
  payload_too_large,
  /// An argument breaks the port's contract (empty batch, bad type name, ...).
  invalid_argument,
  /// A string is not a UUID in canonical 8-4-4-4-12 form.
  invalid_uuid,
  /// A codec or upcaster is registered twice for the same type and version.
  duplicate_registration,
  /// An upcaster failed or the chain does not reach the requested type.
  upcast_failed,
  /// The database is locked by another writer longer than the busy timeout.
  storage_busy,
  /// The connection to the database could not be opened or was lost.
  connection_failed,
  /// An operation did not finish in time.
  timeout,
  /// The database aborted the transaction to keep it serializable.
  serialization_failure,
  /// The database reported an I/O error (disk full, permission, ...).
  io_error,
  /// The database file is damaged or is not an event store.
  corrupt_database,
  /// A schema migration failed; nothing of it was applied.
  migration_failed,
  /// The database has a newer schema than this library knows.
  schema_too_new,
  /// An event or aggregate belongs to another tenant than the caller's.
  tenant_mismatch,
  /// The store was closed.
  closed,
  /// A bug: an invariant of the library does not hold.
  internal,
  /// The database refused the credentials.
  authentication_failed,
  /// The database named in the connection settings does not exist.
  unknown_database,
  /// The database role lacks a privilege the operation needs.
  permission_denied,
  /// The connection was lost while the database committed (or was about
  /// to commit) an append, and the store could not find out whether the
  /// commit happened: the events are stored once or not at all. Retry with
  /// the same event ids (never new ones): the retry either writes them or
  /// is answered as a replay of the stored batch.
  commit_outcome_unknown,
  /// A checkpoint write expected the stored position to be one value and
  /// found another: another instance of the projection moved it.
  checkpoint_conflict,
  /// Another holder has the lease of this projection.
  lease_held,
  /// A lease this process held is gone (its connection broke).
  lease_lost,
  /// Every connection of a bounded pool stayed in use for the whole wait
  /// (PostgreSQL `read_connections`, `read_wait_timeout`); nothing was done.
  pool_exhausted,
  /// The stream was deleted: a soft-deleted stream until it is written
  /// again with `no_stream` or `any`, a hard-deleted one for good.
  stream_deleted,
};

/// Returns the name of `x`, for example "wrong_expected_version".
const char* to_string(store_errc x);

/// Returns whether retrying the same operation later can succeed.
bool is_retryable(store_errc x);

/// Returns whether `err` is marked retryable by its module: store codes as
/// `is_retryable(store_errc)`, CAF's request timeouts, and codes of other
/// modules registered through `register_error_category`.
bool is_retryable(const caf::error& err);

/// Builds an error of the store module with a human-readable description.
caf::error make_store_error(store_errc code, std::string description);

/// The context of a `wrong_expected_version` error.
struct version_conflict {
  std::string stream;
  std::string expected;
  int64_t actual = 0;
};

/// Extracts the stream and versions of a `wrong_expected_version` error
/// (of its first conflict, for an error of `append_atomic`).
std::optional<version_conflict> get_version_conflict(const caf::error& err);

/// Extracts every conflict of a `wrong_expected_version` error: one for an
/// error of `append`, one per conflicting stream for `append_atomic`.
std::vector<version_conflict> get_version_conflicts(const caf::error& err);

/// Renders a module error for a code: returns its name.
using error_code_renderer = const char* (*)(uint8_t code);

/// Renders a module error for a code: returns whether it is retryable.
using error_code_classifier = bool (*)(uint8_t code);

/// Makes `describe` and `is_retryable` understand a module's error category.
/// Modules call this from an inline variable in their errors header, so any
/// program that can produce their errors can also print them. Thread-safe.
bool register_error_category(caf::atom_value category,
                             error_code_renderer renderer,
                             error_code_classifier retryable);

/// Returns a one-line human-readable text for `err`, for example
/// "es_store.wrong_expected_version: stream Order/..., expected 3, actual 5".
/// Works without an actor system.
std::string describe(const caf::error& err);

/// Returns the first context element of `err` if it is a string (modules of
/// this project put their description there), otherwise an empty string.
std::string error_description(const caf::error& err);

/// Returns whether `err` has the store category and the code `code`.
inline bool has_code(const caf::error& err, store_errc code) {
  return err && err.category() == caf::atom("es_store")
         && err.code() == static_cast<uint8_t>(code);
}

} // namespace es

CAF_ERROR_CODE_ENUM(es::store_errc, "es_store")
