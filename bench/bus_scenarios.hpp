// Bus scenarios of esbench and their raw baselines.
#pragma once

#include <caf/fwd.hpp>

#include "bench_util.hpp"
#include "store_scenarios.hpp"

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

/// `relay --bus=redis`: K writers append N events (one per call, each to
/// its own stream) to a SQLite store with an outbox (`--sync`); a relay
/// publishes the rows to Redis and a consumer group hands them to a
/// handler. Latency: from the append's return (the commit) to the
/// handler; seconds: from the first append to the last event handled.
run_result run_relay_redis(caf::actor_system& sys, const bench_params& params,
                           const std::string& url);

/// The same appends, each published to the in-process bus right after it
/// returned, as the store actor does after a commit: the path inside one
/// process, for comparison.
run_result run_relay_in_process(caf::actor_system& sys,
                                const bench_params& params);

} // namespace es::bench
