// Forward declarations of the supervision module's types, for headers that
// only pass them around. (The actor handles, typed actors, are declared in
// es/supervision/actors.hpp.)
#pragma once

#include <cstdint>

namespace es {

class circuit_breaker;
class error_classifier;
class error_tracker;

struct child_status;
struct circuit_breaker_config;
struct circuit_breaker_stats;
struct error_classification;
struct error_info;
struct error_policy;
struct error_stats;
struct health_status;
struct restart_policy;
struct retry_config;
struct retry_stats;

enum class child_state : uint8_t;
enum class circuit_state : uint8_t;
enum class error_category : uint8_t;
enum class error_severity : uint8_t;
enum class error_strategy : uint8_t;
enum class health_level : uint8_t;
enum class supervision_errc : uint8_t;

} // namespace es
