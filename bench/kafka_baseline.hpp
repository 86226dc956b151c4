// The raw librdkafka baseline of `bus-publish --bus=kafka`.
#pragma once

#include "bench_util.hpp"
#include "store_scenarios.hpp"

#include <string>

namespace es::bench {

/// The same messages the Kafka bus sends (key = aggregate id, envelope
/// value, the same headers; encoded before the clock) produced with raw
/// librdkafka (acks=all, idempotent, as the bus's defaults) by a producer
/// created and connected before the clock: per round, `params.batch`
/// produce calls, then polling until every delivery report arrived.
/// `bootstrap` is the cluster's bootstrap servers.
run_result run_raw_kafka_produce(const bench_params& params,
                                 const std::string& bootstrap);

} // namespace es::bench
