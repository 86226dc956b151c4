// Forward declarations of the PostgreSQL adapters' configuration.
#pragma once

namespace es {

struct postgres_config;

} // namespace es
