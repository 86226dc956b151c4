#include "crypto.hpp"

#include "es/shred/errors.hpp"
#include "es/store/errors.hpp"

#include <sodium.h>

#include <string>

namespace es::shred_detail {

namespace {

constexpr size_t nonce_bytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t tag_bytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;

static_assert(shred_key_bytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

const unsigned char* bytes_of(std::string_view x) {
  return reinterpret_cast<const unsigned char*>(x.data());
}

std::string wrap_context(const std::string& subject,
                         const std::string& key_id) {
  std::string ad = "es.shred.key.v1";
  ad += '\0';
  ad += subject;
  ad += '\0';
  ad += key_id;
  return ad;
}

} // namespace

caf::error ensure_sodium() {
  static const int result = sodium_init();
  if (result < 0)
    return make_shred_error(shred_errc::crypto_unavailable,
                            "libsodium could not be initialised");
  return caf::none;
}

subject_key generate_key() {
  subject_key key;
  crypto_aead_xchacha20poly1305_ietf_keygen(key.bytes.data());
  unsigned char id[16];
  randombytes_buf(id, sizeof(id));
  key.key_id = to_hex(std::string_view{reinterpret_cast<char*>(id), 16});
  return key;
}

std::string seal(const std::array<uint8_t, shred_key_bytes>& key,
                 std::string_view plaintext, std::string_view associated) {
  std::string out(nonce_bytes + plaintext.size() + tag_bytes, '\0');
  auto* buf = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(buf, nonce_bytes);
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
    buf + nonce_bytes, &len, bytes_of(plaintext), plaintext.size(),
    bytes_of(associated), associated.size(), nullptr, buf, key.data());
  out.resize(nonce_bytes + len);
  return out;
}

std::optional<std::string> open(const std::array<uint8_t, shred_key_bytes>& key,
                                std::string_view sealed,
                                std::string_view associated) {
  if (sealed.size() < nonce_bytes + tag_bytes)
    return std::nullopt;
  std::string out(sealed.size() - nonce_bytes - tag_bytes, '\0');
  unsigned long long len = 0;
  auto rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
    reinterpret_cast<unsigned char*>(out.data()), &len, nullptr,
    bytes_of(sealed) + nonce_bytes, sealed.size() - nonce_bytes,
    bytes_of(associated), associated.size(), bytes_of(sealed), key.data());
  if (rc != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string to_base64(std::string_view bytes) {
  constexpr int variant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes_of(bytes), bytes.size(),
                    variant);
  out.resize(out.size() - 1); // the terminating NUL
  return out;
}

std::optional<std::string> from_base64(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()),
                        out.size(), text.data(), text.size(), nullptr, &len,
                        &end, sodium_base64_VARIANT_ORIGINAL)
        != 0
      || end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string to_hex(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes_of(bytes), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

std::optional<std::string> from_hex(std::string_view text) {
  if (text.size() % 2 != 0)
    return std::nullopt;
  std::string out(text.size() / 2, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     text.data(), text.size(), nullptr, &len, &end)
        != 0
      || end != text.data() + text.size() || len != out.size())
    return std::nullopt;
  return out;
}

stored_key to_stored(const std::optional<master_key>& master,
                     const std::string& subject, const subject_key& key) {
  std::string_view raw{reinterpret_cast<const char*>(key.bytes.data()),
                       key.bytes.size()};
  stored_key result;
  result.key_id = key.key_id;
  if (master) {
    result.data = seal(master->bytes, raw, wrap_context(subject, key.key_id));
    result.wrapped = true;
  } else {
    result.data.assign(raw);
  }
  return result;
}

caf::expected<subject_key> from_stored(const std::optional<master_key>& master,
                                       const std::string& subject,
                                       const stored_key& stored) {
  subject_key key;
  key.key_id = stored.key_id;
  std::string raw;
  if (stored.wrapped) {
    if (!master)
      return make_shred_error(shred_errc::wrong_master_key,
                              "the key of subject " + subject
                                + " is wrapped and no master key is "
                                  "configured");
    auto opened
      = open(master->bytes, stored.data, wrap_context(subject, stored.key_id));
    if (!opened)
      return make_shred_error(shred_errc::wrong_master_key,
                              "the key of subject " + subject
                                + " does not open with the master key");
    raw = std::move(*opened);
  } else {
    raw = stored.data;
  }
  if (raw.size() != key.bytes.size()) {
    wipe(raw.data(), raw.size());
    return make_shred_error(shred_errc::malformed_ciphertext,
                            "the stored key of subject " + subject
                              + " has the wrong size");
  }
  std::copy(raw.begin(), raw.end(), key.bytes.begin());
  wipe(raw.data(), raw.size());
  return key;
}

void wipe(void* ptr, size_t n) {
  sodium_memzero(ptr, n);
}

} // namespace es::shred_detail
