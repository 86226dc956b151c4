// The raw rabbitmq-c baseline of `bus-publish --bus=rabbitmq`, and the
// clean-up of what a RabbitMQ bench run leaves at the broker.
#pragma once

#include "bench_util.hpp"
#include "store_scenarios.hpp"

#include <string>

namespace es::bench {

/// The same messages the RabbitMQ bus sends (envelope bodies, headers,
/// routing keys, message ids, persistent; encoded before the clock) to the
/// same kind of durable exchange and queue, with raw rabbitmq-c on one
/// connection opened before the clock: per round, `params.batch` publishes,
/// then a wait for the broker's confirms of all of them.
run_result run_raw_rabbitmq_publish(const bench_params& params,
                                    const std::string& url);

/// Deletes the exchange `name`, its dead-letter exchange and the queues of
/// the default group and of the dead letters.
void drop_rabbitmq_bus(const std::string& url, const std::string& name);

} // namespace es::bench
