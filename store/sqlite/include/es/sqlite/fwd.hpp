// Forward declarations of the SQLite adapters' configuration.
#pragma once

#include <cstdint>

namespace es {

struct sqlite_config;
enum class sqlite_sync : uint8_t;

} // namespace es
