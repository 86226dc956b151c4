// PostgreSQL scenarios of esbench and their raw libpq baselines, plus the
// read-all scenario.
#pragma once

#include "es/store/event_store.hpp"

#include "store_scenarios.hpp"

#include <memory>
#include <string>

namespace es::bench {

/// Opens a PostgreSQL event store in a fresh schema of `params.dsn`; the
/// schema is dropped when `keep` is released.
event_store_ptr open_postgres_store(const bench_params& params,
                                    std::shared_ptr<void>& keep);

/// Creates a fresh schema of `params.dsn` and returns a DSN whose
/// search_path is it; the schema is dropped when `keep` is released.
std::string fresh_postgres_schema(const bench_params& params,
                                  std::shared_ptr<void>& keep);

/// The same rows inserted with plain libpq: one connection per writer; for
/// batch 1 one INSERT per transaction, otherwise one multi-row INSERT of
/// `batch` rows per transaction, into a table of the store's schema.
run_result run_raw_postgres_append(const bench_params& params);

/// Fills a store with `params.events` events, then reads the whole feed in
/// pages of 1,000 and decodes every payload into a struct: catch-up
/// throughput in events per second. Backend sqlite or postgres. With
/// `in_place` the pages come from `visit_all` and payloads are decoded from
/// the store's buffers; otherwise from `read_all` as owning events.
run_result run_read_all(const bench_params& params, bool in_place = false);

/// The same rows read with the plain driver in pages of 1,000 (keyset), no
/// decoding: backend raw-postgres or raw-sqlite.
run_result run_raw_read_all(const bench_params& params);

/// Times loading one aggregate of `params.events` events (default 10,000):
/// a full replay, and a snapshot plus the events after it (none). Returns
/// both runs and the raw read of the same rows with the plain driver.
std::vector<run_result> run_recover(const bench_params& params);

} // namespace es::bench
