// Command scenarios of esbench: commands through regions and aggregate
// actors, beside a raw CAF request/response baseline.
#pragma once

#include <caf/fwd.hpp>

#include "bench_util.hpp"
#include "store_scenarios.hpp"

namespace es::bench {

/// K client actors send `events` commands in total through one region to
/// `aggregates` counter aggregates (each command appends one event). The
/// aggregates are created before the clock starts. With `timed`, each
/// command carries a 60 s timeout, as a client would send it; without, none
/// (the row `<backend>-untimed`, beside `raw-caf-untimed`).
run_result run_commands(caf::actor_system& sys, const bench_params& params,
                        int aggregates, bool timed);

/// K client actors each do request/response with their own responder actor
/// that adds a number: what CAF itself costs for the same message count.
/// With `timed`, each request carries the framework clients' 60 s timeout;
/// without, none.
run_result run_raw_caf(caf::actor_system& sys, const bench_params& params,
                       bool timed);

/// Activates `count` aggregates (one stored event each, loaded by a command
/// that emits nothing) and returns the resident memory they added, per
/// aggregate, in bytes.
double measure_idle_aggregate_bytes(caf::actor_system& sys, int count);

} // namespace es::bench
