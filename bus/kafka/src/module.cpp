// The Kafka module's error codes and its registration with an actor system.
#include "es/bus/type_ids.hpp"
#include "es/kafka/kafka.hpp"

#include <caf/actor_system_config.hpp>

namespace es {

const char* to_string(kafka_errc x) {
  switch (x) {
    case kafka_errc::invalid_config: return "invalid_config";
    case kafka_errc::connection_failed: return "connection_failed";
    case kafka_errc::produce_failed: return "produce_failed";
    case kafka_errc::server_error: return "server_error";
  }
  return "unknown";
}

bool is_retryable(kafka_errc x) {
  return x == kafka_errc::connection_failed || x == kafka_errc::produce_failed;
}

caf::error make_kafka_error(kafka_errc code, std::string description) {
  return caf::make_error(code, std::move(description));
}

namespace detail {

const char* render_kafka_errc(uint8_t code) {
  return to_string(static_cast<kafka_errc>(code));
}

bool classify_kafka_errc(uint8_t code) {
  return is_retryable(static_cast<kafka_errc>(code));
}

} // namespace detail

void add_kafka_module(caf::actor_system_config& cfg) {
  add_bus_module(cfg);
  cfg.add_error_category(
    caf::atom("es_kafka"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

} // namespace es
