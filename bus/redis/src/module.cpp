// The Redis module's error codes and its registration with an actor system.
#include "es/bus/type_ids.hpp"
#include "es/redis/redis.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(redis_errc x) {
  switch (x) {
    case redis_errc::invalid_url: return "invalid_url";
    case redis_errc::tls_unsupported: return "tls_unsupported";
    case redis_errc::connection_failed: return "connection_failed";
    case redis_errc::authentication_failed: return "authentication_failed";
    case redis_errc::timeout: return "timeout";
    case redis_errc::protocol_error: return "protocol_error";
    case redis_errc::server_error: return "server_error";
  }
  return "unknown";
}

bool is_retryable(redis_errc x) {
  return x == redis_errc::connection_failed || x == redis_errc::timeout;
}

caf::error make_redis_error(redis_errc code, std::string description) {
  return caf::make_error(code, std::move(description));
}

namespace detail {

const char* render_redis_errc(uint8_t code) {
  return to_string(static_cast<redis_errc>(code));
}

bool classify_redis_errc(uint8_t code) {
  return is_retryable(static_cast<redis_errc>(code));
}

} // namespace detail

void add_redis_module(caf::actor_system_config& cfg) {
  add_bus_module(cfg);
  cfg.add_error_category(
    caf::atom("es_redis"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
