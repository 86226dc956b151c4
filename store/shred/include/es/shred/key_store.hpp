// The key store port of crypto-shredding: one secret key per data subject.
#pragma once

#include "es/store/event.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace es {

/// Bytes of a subject key and of a master key (XChaCha20-Poly1305).
inline constexpr size_t shred_key_bytes = 32;

/// The secret key of one data subject. The bytes are wiped when the object
/// goes away.
struct subject_key {
  /// Names this key among the keys the subject has had: a subject that is
  /// forgotten and written again gets a new key with a new id, and data
  /// encrypted under the old one stays erased.
  std::string key_id;
  std::array<uint8_t, shred_key_bytes> bytes{};

  subject_key() = default;
  subject_key(const subject_key&) = default;
  subject_key& operator=(const subject_key&) = default;
  ~subject_key();
};

/// A key that wraps (encrypts) the subject keys a key store keeps, so a
/// copy of the database alone reveals no subject key. Keep it outside the
/// database (a secrets manager, a file only the service can read).
struct master_key {
  std::array<uint8_t, shred_key_bytes> bytes{};

  /// A fresh random key.
  static master_key generate();

  /// Parses 64 hexadecimal digits. Errors: `invalid_argument`.
  static caf::expected<master_key> from_hex(std::string_view hex);

  /// The key as 64 lowercase hexadecimal digits.
  std::string to_hex() const;

  master_key() = default;
  master_key(const master_key&) = default;
  master_key& operator=(const master_key&) = default;
  ~master_key();
};

/// What `key_store::forget` removed.
struct forget_result {
  /// Whether the subject had a key.
  bool key_deleted = false;
  /// The streams recorded as holding data of the subject (their records are
  /// gone with the key).
  std::vector<stream_id> streams;
};

/// Keeps one key per subject id (any non-empty string, for example a
/// customer id) and which streams hold data encrypted under it.
///
/// Thread-safety: every member function may be called from any thread.
/// Calls may block on I/O unless `blocking()` is false.
///
/// Errors: `store_errc` storage codes of the adapter (`connection_failed`,
/// `storage_busy`, `io_error`, ...; retryable ones as in the event store),
/// `invalid_argument` for an empty subject, and `wrong_master_key` (see
/// errors.hpp) when a stored key does not open.
class key_store {
public:
  virtual ~key_store();

  /// Returns the adapter's name, for example "sqlite".
  virtual std::string name() const = 0;

  /// Whether calls may block on I/O (false only for the in-memory adapter).
  virtual bool blocking() const {
    return true;
  }

  /// Returns the subject's key, creating a random one if it has none.
  /// Concurrent callers, in any process, get the same key.
  [[nodiscard]] virtual caf::expected<subject_key>
  get_or_create_key(const std::string& subject) = 0;

  /// Returns the keys of those `subjects` that have one (forgotten and
  /// unknown subjects are absent from the map).
  [[nodiscard]] virtual caf::expected<std::map<std::string, subject_key>>
  get_keys(const std::vector<std::string>& subjects) = 0;

  /// Records that `stream` holds data of `subject` (idempotent), so that
  /// forgetting the subject can find the stream's snapshots.
  [[nodiscard]] virtual caf::error
  add_stream(const std::string& subject, const stream_id& stream)
    = 0;

  /// Returns the streams recorded for `subject`.
  [[nodiscard]] virtual caf::expected<std::vector<stream_id>>
  streams(const std::string& subject) = 0;

  /// Deletes the subject's key and its stream records, for good: every
  /// value encrypted under the key becomes unreadable. Forgetting an
  /// unknown subject is no error (`key_deleted` false).
  [[nodiscard]] virtual caf::expected<forget_result>
  forget(const std::string& subject) = 0;
};

using key_store_ptr = std::shared_ptr<key_store>;

/// A key store in memory, for tests and throwaway data.
key_store_ptr make_memory_key_store();

} // namespace es
