// Forward declarations of the bus module's types, for headers that only
// pass them around. (The actor handles, typed actors, are declared in
// es/bus/event_bus.hpp.)
#pragma once

#include <cstdint>
#include <memory>

namespace es {

class bus_dead_letters;
class event_bus;
class event_deduper;
class event_subscriber;

struct bus_dead_letter;
struct bus_stats;
struct outbox_relay_config;
struct outbox_relay_status;
struct subscribe_options;

enum class bus_errc : uint8_t;

using event_bus_ptr = std::shared_ptr<event_bus>;
using subscription_id = uint64_t;

} // namespace es
