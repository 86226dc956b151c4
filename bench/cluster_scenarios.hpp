// The cluster scenario of esbench: order commands through esnode processes
// on this machine, beside raw request/response over CAF's middleman.
#pragma once

#include <caf/fwd.hpp>

#include "bench_util.hpp"
#include "store_scenarios.hpp"

#include <string>
#include <vector>

namespace es::bench {

/// Starts `nodes` esnode processes (program `esnode`) on a fresh schema of
/// `params.dsn`, creates `aggregates` orders, then times `params.events`
/// add_item commands from `params.writers` client threads, each waiting
/// for its answer: sent to the node that owns the order's shard ("local"),
/// and, with two nodes or more, to another node that forwards it
/// ("forwarded"). The raw row: the same count of request/response round
/// trips over the middleman to a trivial responder in another process
/// (`self_exe --scenario=responder`).
std::vector<run_result> run_cluster(caf::actor_system& sys,
                                    const bench_params& params, int nodes,
                                    int aggregates, const std::string& esnode,
                                    const std::string& self_exe);

/// `esbench --scenario=responder`: publishes an actor answering `x` with
/// `x + 1` on a free port, prints "listening on PORT" and serves until
/// killed.
void run_responder(caf::actor_system& sys);

} // namespace es::bench
