#include "es/shred/errors.hpp"

#include <caf/make_message.hpp>

namespace es {

const char* to_string(shred_errc x) {
  switch (x) {
    case shred_errc::missing_subject: return "missing_subject";
    case shred_errc::decryption_failed: return "decryption_failed";
    case shred_errc::malformed_ciphertext: return "malformed_ciphertext";
    case shred_errc::wrong_master_key: return "wrong_master_key";
    case shred_errc::invalid_policy: return "invalid_policy";
    case shred_errc::crypto_unavailable: return "crypto_unavailable";
  }
  return "unknown";
}

bool is_retryable(shred_errc) {
  return false;
}

caf::error make_shred_error(shred_errc code, std::string description) {
  return caf::make_error(code, std::move(description));
}

namespace detail {

const char* render_shred_errc(uint8_t code) {
  return to_string(static_cast<shred_errc>(code));
}

bool classify_shred_errc(uint8_t code) {
  return is_retryable(static_cast<shred_errc>(code));
}

} // namespace detail

} // namespace es
