#include "es/store/uuid.hpp"

#include "es/store/errors.hpp"

#include <pthread.h>
#include <sys/random.h>
#include <uuid/uuid.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

namespace es {

namespace {

// Random bits for UUIDs. libuuid 2.38 has no version 7, and its random
// generator makes six system calls per id (5.4 us here), which matters on
// the paths that stamp every new event, every PostgreSQL write and every
// broker message. Both versions therefore take their random bits from the
// kernel's CSPRNG (getrandom), drawn 4 KiB at a time into a per-thread
// buffer. A child process after fork() discards the inherited buffer, so
// parent and child never hand out the same bits.

std::atomic<uint64_t> fork_generation{0};

void on_fork_child() {
  fork_generation.fetch_add(1, std::memory_order_relaxed);
}

struct random_pool {
  uint8_t buf[4096];
  size_t pos = sizeof(buf);
  uint64_t generation = ~uint64_t{0};

  void take(uint8_t* out, size_t n) {
    auto gen = fork_generation.load(std::memory_order_relaxed);
    if (gen != generation || pos + n > sizeof(buf))
      refill(gen);
    std::memcpy(out, buf + pos, n);
    std::memset(buf + pos, 0, n);
    pos += n;
  }

  void refill(uint64_t gen) {
    static std::once_flag registered;
    std::call_once(registered, [] {
      pthread_atfork(nullptr, nullptr, on_fork_child);
    });
    size_t filled = 0;
    while (filled < sizeof(buf)) {
      auto n = getrandom(buf + filled, sizeof(buf) - filled, 0);
      if (n > 0) {
        filled += static_cast<size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        // No getrandom (very old kernel): fall back to libuuid's generator.
        for (; filled + 16 <= sizeof(buf); filled += 16)
          uuid_generate_random(buf + filled);
        break;
      }
    }
    pos = 0;
    generation = gen;
  }
};

thread_local random_pool pool;

} // namespace

uuid uuid::random() {
  // RFC 9562 version 4: 122 random bits, the version nibble and the variant.
  uuid result;
  pool.take(result.bytes_.data(), 16);
  result.bytes_[6] = static_cast<uint8_t>(0x40 | (result.bytes_[6] & 0x0F));
  result.bytes_[8] = static_cast<uint8_t>(0x80 | (result.bytes_[8] & 0x3F));
  return result;
}

uuid uuid::time_ordered() {
  // RFC 9562 version 7: 48-bit big-endian Unix milliseconds, the version
  // nibble, 12 random bits, the variant and 62 random bits.
  uuid result;
  pool.take(result.bytes_.data() + 6, 10);
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
