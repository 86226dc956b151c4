// Error codes of crypto-shredding (es::shred).
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace es {

/// Error codes of the shred module. Append-only. Key stores report storage
/// failures with `store_errc` codes (`connection_failed`, `storage_busy`,
/// `io_error`, ...), as the event stores do.
enum class shred_errc : uint8_t {
  /// An event has a personal field set but no subject id to encrypt it for
  /// (the subject field is missing, empty or not a string or integer, or
  /// the subject function failed). Nothing was written.
  missing_subject = 1,
  /// A stored ciphertext did not authenticate under its subject's key: the
  /// bytes, the event id, the subject or the field name were changed in the
  /// database. Never reported as an erased field.
  decryption_failed,
  /// A stored payload's `$pii` member is not in the form this module
  /// writes (missing parts, bad base64, a field name twice, ...).
  malformed_ciphertext,
  /// A stored subject key does not open with the configured master key,
  /// or the key is wrapped and no master key is configured.
  wrong_master_key,
  /// A shredding policy is inconsistent: a field the event type lacks, a
  /// personal field that is neither a string nor optional, a subject field
  /// that is also personal, a type declared twice.
  invalid_policy,
  /// libsodium could not be initialised (no entropy source).
  crypto_unavailable,
};

/// Returns the name of `x`, for example "decryption_failed".
const char* to_string(shred_errc x);

/// Returns whether retrying can succeed: never for shred codes.
bool is_retryable(shred_errc x);

/// Builds an error of the shred module with a description.
caf::error make_shred_error(shred_errc code, std::string description);

inline bool has_code(const caf::error& err, shred_errc code) {
  return err && err.category() == caf::atom("es_shred")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_shred_errc(uint8_t code);
bool classify_shred_errc(uint8_t code);

inline const bool shred_errors_registered = register_error_category(
  caf::atom("es_shred"), render_shred_errc, classify_shred_errc);

} // namespace detail

} // namespace es

CAF_ERROR_CODE_ENUM(es::shred_errc, "es_shred")
