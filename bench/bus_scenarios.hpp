// Bus scenarios of esbench and their raw baselines.
#pragma once

#include <caf/fwd.hpp>

#include "bench_util.hpp"
#include "store_scenarios.hpp"

#include <string>

namespace es::bench {

/// `n` recorded events over 100 aggregates (300-byte payloads), as a store
/// would return them: what the bus scenarios publish.
recorded_events make_bench_events(int64_t n);

/// `bus-publish --bus=redis|rabbitmq`: one publisher sends `params.events`
/// recorded events (300-byte payloads) through the broker bus's facade
/// (opened by `url`) in calls of `params.batch`; each call returns once the
/// broker has every event (Redis stored the entries; RabbitMQ confirmed
/// the persistent messages, routed to the default group's durable queue).
run_result run_bus_publish(caf::actor_system& sys, const bench_params& params,
                           const std::string& url);

/// The same entries (the envelopes and header fields, encoded before the
/// clock) sent with raw hiredis on one connection opened before the clock:
/// `params.batch` XADDs appended, then their replies read, per round trip.
run_result run_raw_hiredis_xadd(const bench_params& params,
                                const std::string& url);

/// `relay --bus=redis|rabbitmq`: K writers append N events (one per call,
/// each to its own stream) to a SQLite store with an outbox (`--sync`); a
/// relay publishes the rows to the broker and a consumer group hands them
/// to a handler. Latency: from the append's return (the commit) to the
/// handler; seconds: from the first append to the last event handled.
run_result run_relay_broker(caf::actor_system& sys, const bench_params& params,
                            const std::string& url);

/// The same appends, each published to the in-process bus right after it
/// returned, as the store actor does after a commit: the path inside one
/// process, for comparison.
run_result run_relay_in_process(caf::actor_system& sys,
                                const bench_params& params);

} // namespace es::bench
