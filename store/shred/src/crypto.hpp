// libsodium behind a few functions: nonces, sealing, key wrapping, text
// encodings. Private to es::shred and its adapters.
#pragma once

#include "es/shred/key_store.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace es::shred_detail {

/// Initialises libsodium once; `crypto_unavailable` when it cannot.
caf::error ensure_sodium();

/// A fresh random subject key with a fresh random id (32 hex digits).
subject_key generate_key();

/// Encrypts `plaintext` with XChaCha20-Poly1305 under a fresh random nonce;
/// returns nonce followed by ciphertext and tag.
std::string seal(const std::array<uint8_t, shred_key_bytes>& key,
                 std::string_view plaintext, std::string_view associated);

/// Opens what `seal` returned; nullopt when it does not authenticate.
std::optional<std::string> open(const std::array<uint8_t, shred_key_bytes>& key,
                                std::string_view sealed,
                                std::string_view associated);

/// Standard base64 with padding.
std::string to_base64(std::string_view bytes);
std::optional<std::string> from_base64(std::string_view text);

std::string to_hex(std::string_view bytes);
std::optional<std::string> from_hex(std::string_view text);

/// A subject key as a key store keeps it: raw, or wrapped by a master key
/// (sealed with the subject and key id as associated data, so a wrapped key
/// cannot be moved to another subject).
struct stored_key {
  std::string key_id;
  std::string data;
  bool wrapped = false;
};

/// Prepares `key` of `subject` for storage: wrapped when `master` is set.
stored_key to_stored(const std::optional<master_key>& master,
                     const std::string& subject, const subject_key& key);

/// Recovers the key from its stored form. Errors: `wrong_master_key`,
/// `malformed_ciphertext` (a raw key of the wrong size).
caf::expected<subject_key> from_stored(const std::optional<master_key>& master,
                                       const std::string& subject,
                                       const stored_key& stored);

/// Overwrites `n` bytes at `ptr` with zeros in a way the compiler keeps.
void wipe(void* ptr, size_t n);

} // namespace es::shred_detail
