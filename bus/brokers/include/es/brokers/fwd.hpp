// Forward declarations of the brokers module's types.
#pragma once

namespace es {

struct broker_bus_settings;

} // namespace es
