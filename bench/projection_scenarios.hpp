// The project scenario of esbench: projection throughput beside raw reads
// and raw read-model writes of the same store in the same run.
#pragma once

#include <caf/fwd.hpp>

#include "store_scenarios.hpp"

#include <vector>

namespace es::bench {

/// One round of the project scenario on the filled read store (sqlite or
/// postgres backend), every row over the same events:
/// - scenario "project": the read of the whole feed with the plain driver
///   (the baseline) and with the store's `read_all`, then a projection actor
///   catching up from the beginning into an in-memory handler (pages of
///   1,000 and 100, payload not decoded; pages of 1,000, payload decoded
///   into its struct), and the store's `read_all` decoding payloads;
/// - scenario "project-rm": a transactional read model in the store's
///   database kind (an upsert per event, checkpoint in the same transaction)
///   through a projection actor (pages of 1,000, transactions of 1 and 100
///   events), each beside the same
///   writes done with the plain driver (the baseline). Batch-1 rows take at
///   most `max_single` events: one commit each.
std::vector<run_result> run_project(caf::actor_system& sys,
                                    const bench_params& params,
                                    int64_t max_single);

} // namespace es::bench
