// Every public header of the bus module. Each includes the CAF headers it
// needs and no more; including this one costs their sum.
#pragma once

#include "es/bus/bus_stats.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/event_bus.hpp"
#include "es/bus/fwd.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/bus/relay_status.hpp"
#include "es/bus/type_ids.hpp"
