// Store scenarios of esbench and their raw baselines.
#pragma once

#include "es/postgres/postgres.hpp"
#include "es/sqlite/sqlite.hpp"

#include "bench_util.hpp"

#include <functional>
#include <string>
#include <vector>

namespace es::bench {

/// What one invocation measures.
struct bench_params {
  std::string backend = "sqlite";
  std::string scenario = "append";
  int64_t events = 10000;
  int writers = 16;
  int batch = 1;
  std::string dir = "./data/bench";
  sqlite_sync sync = sqlite_sync::full;
  /// libpq connection string of the PostgreSQL server (postgres backend).
  std::string dsn = "host=127.0.0.1 port=55432 user=postgres dbname=es_test";
  /// postgres_config::writer_connections of the store under test.
  int pg_writer_connections = 1;
  /// postgres_config::group_gather of the store under test, microseconds.
  int pg_group_gather_us = 500;
  /// postgres_config::feed: "serialized" or "overlapping".
  std::string pg_feed = "serialized";
  /// PostgreSQL store: an existing schema to append to (kept afterwards),
  /// so that several esbench processes can share one store; empty: a
  /// fresh schema per run.
  std::string pg_schema;
  /// Skip the raw baseline (for runs that share a store).
  bool skip_raw = false;
};

/// The rows of one writer, built before the clock starts.
struct writer_rows {
  stream_id stream;
  std::vector<event_batch> calls;
};

/// Builds `params.events` rows split over the writers in calls of
/// `params.batch` events.
std::vector<writer_rows> make_rows(const bench_params& params);

/// Runs `body(writer_index)` on `writers` threads started together and
/// returns the wall time in seconds.
double run_threads(int writers, const std::function<void(int)>& body);

/// Prints `what` and exits.
[[noreturn]] void fail(const std::string& what);

/// Runs `append` or `append-batch` against the store named by
/// `params.backend`: each writer thread appends `batch` events per call to
/// its own stream with exact expected versions.
run_result run_store_append(const bench_params& params);

/// The same rows inserted with plain sqlite3 calls: one connection per
/// writer, `batch` rows per transaction, same schema and synchronous mode.
run_result run_raw_sqlite_append(const bench_params& params);

/// The same rows pushed into a vector under a mutex: the floor for the
/// in-memory store.
run_result run_raw_memory_append(const bench_params& params);

} // namespace es::bench
