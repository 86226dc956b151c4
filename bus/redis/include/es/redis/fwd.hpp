// Forward declarations of the Redis module's types.
#pragma once

#include <cstdint>

namespace es {

struct redis_bus_config;
struct redis_group_info;
struct redis_stream_info;
struct redis_url;

enum class redis_errc : uint8_t;

} // namespace es
