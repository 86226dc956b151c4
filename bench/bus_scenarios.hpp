// Bus scenarios of esbench and their raw baselines.
#pragma once

#include "bench_util.hpp"
#include "store_scenarios.hpp"

#include <caf/fwd.hpp>

#include <string>

namespace es::bench {

/// `bus-publish --bus=redis`: one publisher sends `params.events` recorded
/// events (300-byte payloads) through the Redis bus's facade in calls of
/// `params.batch`; each call returns once Redis stored every entry.
run_result run_redis_bus_publish(caf::actor_system& sys,
                                 const bench_params& params,
                                 const std::string& url);

/// The same entries (the envelopes and header fields, encoded before the
/// clock) sent with raw hiredis on one connection opened before the clock:
/// `params.batch` XADDs appended, then their replies read, per round trip.
run_result run_raw_hiredis_xadd(const bench_params& params,
                                const std::string& url);

} // namespace es::bench
