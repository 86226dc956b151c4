#include "es/store/uuid.hpp"

#include <chrono>

#include <uuid/uuid.h>

#include "es/store/errors.hpp"

namespace es {

uuid uuid::random() {
  uuid result;
  uuid_generate_random(result.bytes_.data());
  return result;
}

uuid uuid::time_ordered() {
  // RFC 9562 version 7: 48-bit big-endian Unix milliseconds, then the
  // version nibble, 12 random bits, the variant and 62 random bits. The
  // random bits come from libuuid.
  uuid result = random();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
  auto u = static_cast<uint64_t>(ms);
  for (int i = 0; i < 6; ++i)
    result.bytes_[i] = static_cast<uint8_t>(u >> (8 * (5 - i)));
  result.bytes_[6] = static_cast<uint8_t>(0x70 | (result.bytes_[6] & 0x0F));
  result.bytes_[8] = static_cast<uint8_t>(0x80 | (result.bytes_[8] & 0x3F));
  return result;
}

caf::expected<uuid> uuid::parse(std::string_view text) {
  // uuid_parse reads a NUL-terminated 36-character string and ignores what
  // follows, so check the length first.
  if (text.size() != 36)
    return make_store_error(store_errc::invalid_uuid,
                            "a UUID has 36 characters, got "
                              + std::to_string(text.size()));
  char buf[37];
  text.copy(buf, 36);
  buf[36] = '\0';
  uuid result;
  if (uuid_parse(buf, result.bytes_.data()) != 0)
    return make_store_error(store_errc::invalid_uuid,
                            "not a UUID in 8-4-4-4-12 hex form");
  return result;
}

std::string uuid::to_string() const {
  char buf[37];
  uuid_unparse_lower(bytes_.data(), buf);
  return std::string(buf, 36);
}

uint64_t uuid::hash() const noexcept {
  uint64_t h = 14695981039346656037ull;
  for (auto b : bytes_) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}

} // namespace es
