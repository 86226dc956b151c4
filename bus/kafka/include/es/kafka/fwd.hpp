// Forward declarations of the Kafka module's types.
#pragma once

#include <cstdint>

namespace es {

struct kafka_bus_config;
struct kafka_bus_info;

enum class kafka_errc : uint8_t;

} // namespace es
