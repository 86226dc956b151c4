#include "es/shred/key_store.hpp"

#include "es/store/errors.hpp"

#include "crypto.hpp"
#include <sodium.h>

namespace es {

subject_key::~subject_key() {
  shred_detail::wipe(bytes.data(), bytes.size());
}

master_key master_key::generate() {
  static_cast<void>(shred_detail::ensure_sodium());
  master_key key;
  randombytes_buf(key.bytes.data(), key.bytes.size());
  return key;
}

caf::expected<master_key> master_key::from_hex(std::string_view hex) {
  auto raw = shred_detail::from_hex(hex);
  if (!raw || raw->size() != shred_key_bytes) {
    if (raw)
      shred_detail::wipe(raw->data(), raw->size());
    return make_store_error(store_errc::invalid_argument,
                            "a master key is 64 hexadecimal digits");
  }
  master_key key;
  std::copy(raw->begin(), raw->end(), key.bytes.begin());
  shred_detail::wipe(raw->data(), raw->size());
  return key;
}

std::string master_key::to_hex() const {
  return shred_detail::to_hex(std::string_view{
    reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

master_key::~master_key() {
  shred_detail::wipe(bytes.data(), bytes.size());
}

key_store::~key_store() {
  // nop
}

} // namespace es
