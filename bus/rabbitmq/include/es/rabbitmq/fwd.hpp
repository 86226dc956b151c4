// Forward declarations of the RabbitMQ module's types.
#pragma once

#include <cstdint>

namespace es {

struct amqp_url;
struct rabbitmq_bus_config;
struct rabbitmq_bus_info;
struct rabbitmq_queue_info;

enum class rabbitmq_errc : uint8_t;

} // namespace es
