// esbench: measures the framework beside raw baselines run in the same
// process, so the ratio is the figure. Prints a table and one JSON object
// per measured run on its own line.
#include "es/projections/type_ids.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exec_main.hpp>

#ifdef ES_BENCH_REDIS
#  include "es/brokers/brokers.hpp"

#  include "bus_scenarios.hpp"
#endif
#ifdef ES_BENCH_RABBITMQ
#  include "rabbitmq_baseline.hpp"
#endif
#ifdef ES_BENCH_KAFKA
#  include "kafka_baseline.hpp"
#endif
#ifdef ES_BENCH_CLUSTER
#  include "es/cluster/node.hpp"

#  include "cluster_scenarios.hpp"
#endif
#include "command_scenarios.hpp"
#include "counter.hpp"
#include "postgres_scenarios.hpp"
#include "projection_scenarios.hpp"
#include "store_scenarios.hpp"

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

struct esbench_config : caf::actor_system_config {
  std::string backend = "sqlite";
  std::string scenario = "append";
  int64_t events = 10000;
  int writers = 16;
  int batch = 0;
  std::string dir = "./data/bench";
  std::string sync = "full";
  std::string dsn = "host=127.0.0.1 port=55432 user=postgres dbname=es_test";
  int repeat = 1;
  int pg_writer_connections = 1;
  int pg_group_gather_us = 500;
  std::string pg_feed = "serialized";
  std::string pg_schema;
  bool skip_raw = false;
  int aggregates = 1000;
  int idle_aggregates = 100000;
  int64_t max_single = 2000;
  std::string bus = "redis";
  std::string redis_url = "redis://:es-test-pass@127.0.0.1:56379/0";
  std::string amqp_url = "amqp://es:es-test-pass@127.0.0.1:55672/%2f";
  std::string kafka_url;
  int nodes = 1;
  std::string tracing = "off";

  esbench_config() {
    opt_group{custom_options_, "global"}
      .add(backend, "backend", "store under test: memory, sqlite or postgres")
      .add(scenario, "scenario",
           "what to measure: append (1 event per call), append-batch "
           "(--batch events per call), commands (through a region and "
           "aggregate actors), idle-memory (bytes per live idle aggregate), "
           "read-all, recover, project (projection throughput), "
           "bus-publish (--bus), relay (outbox to the --bus broker to a "
           "handler) or cluster (order commands through --nodes esnode "
           "processes)")
      .add(events, "events", "total events to write")
      .add(writers, "writers", "concurrent writer threads")
      .add(batch, "batch",
           "events per call (default 1 for append, 100 for append-batch)")
      .add(dir, "dir", "directory for database files (recreated per run)")
      .add(sync, "sync", "SQLite synchronous mode: full, normal or off")
      .add(dsn, "dsn",
           "PostgreSQL connection string for --backend=postgres (each run "
           "uses a fresh schema, dropped afterwards)")
      .add(pg_writer_connections, "pg-writer-connections",
           "PostgreSQL store: groups committing at once (default 1)")
      .add(pg_group_gather_us, "pg-group-gather-us",
           "PostgreSQL store: how long a group may wait to grow, in "
           "microseconds (default 500)")
      .add(pg_feed, "pg-feed",
           "PostgreSQL store: the feed, serialized (default) or overlapping")
      .add(pg_schema, "pg-schema",
           "PostgreSQL append: an existing schema to share with other "
           "esbench processes (kept; default: a fresh one per run)")
      .add(skip_raw, "skip-raw",
           "append: measure the store only (for processes sharing one);"
           " commands: the framework only (for profiling it alone)")
      .add(aggregates, "aggregates",
           "commands scenario: distinct aggregates the commands go to")
      .add(idle_aggregates, "idle-aggregates",
           "idle-memory scenario: aggregates kept alive for the measurement")
      .add(max_single, "max-single",
           "project scenario: events of the batch-1 read-model rows (one "
           "commit each; default 2000)")
      .add(bus, "bus",
           "bus-publish and relay: the bus under test (redis, rabbitmq or "
           "kafka)")
      .add(redis_url, "redis-url",
           "Redis server of --bus=redis (default: scripts/redis's)")
      .add(amqp_url, "amqp-url",
           "RabbitMQ broker of --bus=rabbitmq (default: scripts/rabbitmq's)")
      .add(kafka_url, "kafka-url",
           "Kafka cluster of --bus=kafka, kafka://host:port,... (scripts/kafka "
           "dsn)")
      .add(nodes, "nodes",
           "cluster scenario: esnode processes to start (1, 2, 3, ...)")
      .add(tracing, "tracing",
           "off (default), or on: every hook makes its spans and hands "
           "them to an exporter that only counts them (the cost of the "
           "hooks without a network)")
      .add(repeat, "repeat",
           "measure store and raw baseline alternately this many times and "
           "report the median run of each");
    set("scheduler.max-threads", 2);
    es::add_projections_module(*this);
#ifdef ES_BENCH_CLUSTER
    es::cluster::add_cluster_module(*this);
    add_message_types<caf::id_block::orders>();
#endif
#ifdef ES_BENCH_REDIS
    es::add_broker_modules(*this);
#endif
    add_message_types<caf::id_block::esbench>();
  }
};

/// Counts the spans it gets: the hooks' cost without an exporter's.
class counting_exporter : public es::tracing::span_exporter {
public:
  void export_span(es::tracing::span_data) override {
    count.fetch_add(1, std::memory_order_relaxed);
  }

  std::atomic<uint64_t> count{0};
};

void caf_main(caf::actor_system& sys, const esbench_config& cfg) {
  std::shared_ptr<counting_exporter> spans;
  if (cfg.tracing == "on") {
    spans = std::make_shared<counting_exporter>();
    es::tracing::set_exporter(spans);
  } else if (cfg.tracing != "off") {
    std::cerr << "esbench: --tracing must be off or on\n";
    return;
  }
  struct report_spans {
    std::shared_ptr<counting_exporter> spans;
    ~report_spans() {
      es::tracing::set_exporter(nullptr);
      if (spans)
        std::cerr << "esbench: " << spans->count.load() << " spans made\n";
    }
  } reporter{spans};
  es::bench::bench_params p;
  p.backend = cfg.backend;
  p.scenario = cfg.scenario;
  p.events = cfg.events;
  p.writers = std::max(1, cfg.writers);
  p.dir = cfg.dir;
  p.dsn = cfg.dsn;
  p.pg_writer_connections = std::max(1, cfg.pg_writer_connections);
  p.pg_group_gather_us = std::max(0, cfg.pg_group_gather_us);
  if (cfg.pg_feed != "serialized" && cfg.pg_feed != "overlapping") {
    std::cerr << "esbench: --pg-feed must be serialized or overlapping\n";
    std::exit(2);
  }
  p.pg_feed = cfg.pg_feed;
  p.pg_schema = cfg.pg_schema;
  p.skip_raw = cfg.skip_raw;
  if (cfg.sync == "full")
    p.sync = es::sqlite_sync::full;
  else if (cfg.sync == "normal")
    p.sync = es::sqlite_sync::normal;
  else if (cfg.sync == "off")
    p.sync = es::sqlite_sync::off;
  else {
    std::cerr << "esbench: --sync must be full, normal or off\n";
    std::exit(2);
  }
  if (p.scenario == "idle-memory") {
    auto bytes = es::bench::measure_idle_aggregate_bytes(
      sys, std::max(1000, cfg.idle_aggregates));
    std::cout << R"({"backend":"memory","scenario":"idle-memory",)"
              << R"("aggregates":)" << cfg.idle_aggregates
              << R"(,"bytes_per_aggregate":)" << bytes << "}" << std::endl;
    std::printf("\nidle aggregate actors: %d, resident memory added per "
                "aggregate: %.0f bytes (state: %zu bytes)\n\n",
                cfg.idle_aggregates, bytes,
                sizeof(es::bench::counter_bench::counter_state));
    return;
  }
#ifdef ES_BENCH_CLUSTER
  if (p.scenario == "responder") {
    es::bench::run_responder(sys);
    return;
  }
  if (p.scenario == "cluster") {
    auto rows = es::bench::run_cluster(sys, p, std::max(1, cfg.nodes),
                                       std::max(1, cfg.aggregates),
                                       ES_BENCH_ESNODE, "/proc/self/exe");
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
  }
#endif
  if (p.scenario == "commands") {
    p.batch = 1;
    // Each policy on both sides: clients with the 60 s timeout, and
    // without any.
    std::vector<es::bench::run_result> store_runs;
    std::vector<es::bench::run_result> store_untimed_runs;
    std::vector<es::bench::run_result> raw_runs;
    std::vector<es::bench::run_result> raw_untimed_runs;
    auto aggregates = std::max(1, cfg.aggregates);
    for (int i = 0; i < std::max(1, cfg.repeat); ++i) {
      store_runs.push_back(es::bench::run_commands(sys, p, aggregates, true));
      if (p.skip_raw)
        continue;
      raw_runs.push_back(es::bench::run_raw_caf(sys, p, true));
      store_untimed_runs.push_back(
        es::bench::run_commands(sys, p, aggregates, false));
      raw_untimed_runs.push_back(es::bench::run_raw_caf(sys, p, false));
    }
    std::vector<es::bench::run_result> rows{es::bench::median_run(store_runs)};
    if (!p.skip_raw) {
      rows.push_back(es::bench::median_run(store_untimed_runs));
      rows.push_back(es::bench::median_run(raw_runs));
      rows.push_back(es::bench::median_run(raw_untimed_runs));
    }
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
  }
  if (p.scenario == "bus-publish" || p.scenario == "relay") {
#ifdef ES_BENCH_REDIS
    std::string url;
    if (cfg.bus == "redis")
      url = cfg.redis_url;
#  ifdef ES_BENCH_RABBITMQ
    else if (cfg.bus == "rabbitmq")
      url = cfg.amqp_url;
#  endif
#  ifdef ES_BENCH_KAFKA
    else if (cfg.bus == "kafka")
      url = cfg.kafka_url;
#  endif
    if (url.empty()) {
      std::cerr << "esbench: unknown --bus " << cfg.bus
                << " (redis, rabbitmq or kafka; --kafka-url is required for "
                   "kafka)\n";
      std::exit(2);
    }
    std::vector<es::bench::run_result> bus_runs;
    std::vector<es::bench::run_result> raw_runs;
    for (int i = 0; i < std::max(1, cfg.repeat); ++i) {
      if (p.scenario == "relay") {
        bus_runs.push_back(es::bench::run_relay_broker(sys, p, url));
        raw_runs.push_back(es::bench::run_relay_in_process(sys, p));
        continue;
      }
      p.batch = cfg.batch > 0 ? cfg.batch : 100;
      bus_runs.push_back(es::bench::run_bus_publish(sys, p, url));
      if (cfg.bus == "redis")
        raw_runs.push_back(es::bench::run_raw_hiredis_xadd(p, url));
#  ifdef ES_BENCH_RABBITMQ
      else if (cfg.bus == "rabbitmq")
        raw_runs.push_back(es::bench::run_raw_rabbitmq_publish(p, url));
#  endif
#  ifdef ES_BENCH_KAFKA
      else if (cfg.bus == "kafka")
        raw_runs.push_back(es::bench::run_raw_kafka_produce(
          p, url.substr(std::string{"kafka://"}.size())));
#  endif
    }
    std::vector<es::bench::run_result> rows{es::bench::median_run(bus_runs),
                                            es::bench::median_run(raw_runs)};
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
#else
    std::cerr << "esbench: built without Redis (ES_WITH_REDIS=OFF)\n";
    std::exit(2);
#endif
  }
  if (p.scenario == "recover") {
    if (cfg.events == 10000 || cfg.events <= 0)
      p.events = 10000;
    auto rows = es::bench::run_recover(p);
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
  }
  if (p.scenario == "project") {
    // Each round yields the same rows in the same order; keep the median
    // of each row over the rounds.
    std::vector<std::vector<es::bench::run_result>> rounds;
    for (int i = 0; i < std::max(1, cfg.repeat); ++i)
      rounds.push_back(
        es::bench::run_project(sys, p, std::max<int64_t>(1, cfg.max_single)));
    std::vector<es::bench::run_result> rows;
    for (size_t k = 0; k < rounds.front().size(); ++k) {
      std::vector<es::bench::run_result> runs;
      for (const auto& round : rounds)
        runs.push_back(round[k]);
      rows.push_back(es::bench::median_run(runs));
    }
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
  }
  if (p.scenario == "read-all") {
    if (p.backend != "postgres" && p.backend != "sqlite") {
      std::cerr << "esbench: read-all needs --backend=postgres or sqlite\n";
      std::exit(2);
    }
    std::vector<es::bench::run_result> store_runs;
    std::vector<es::bench::run_result> in_place_runs;
    std::vector<es::bench::run_result> raw_runs;
    for (int i = 0; i < std::max(1, cfg.repeat); ++i) {
      store_runs.push_back(es::bench::run_read_all(p));
      in_place_runs.push_back(es::bench::run_read_all(p, true));
      raw_runs.push_back(es::bench::run_raw_read_all(p));
    }
    std::vector<es::bench::run_result> rows{
      es::bench::median_run(store_runs), es::bench::median_run(in_place_runs),
      es::bench::median_run(raw_runs)};
    for (const auto& r : rows)
      es::bench::print_json(r);
    es::bench::print_table(rows);
    return;
  }
  if (p.scenario == "append")
    p.batch = cfg.batch > 0 ? cfg.batch : 1;
  else if (p.scenario == "append-batch")
    p.batch = cfg.batch > 0 ? cfg.batch : 100;
  else {
    std::cerr << "esbench: unknown --scenario " << p.scenario
              << " (append, append-batch, commands, idle-memory, read-all,"
                 " recover, project)\n";
    std::exit(2);
  }
  if (p.backend != "memory" && p.backend != "sqlite"
      && p.backend != "postgres") {
    std::cerr << "esbench: unknown --backend " << p.backend
              << " (memory, sqlite, postgres)\n";
    std::exit(2);
  }
  // Alternate store and raw runs so drift on a shared machine hits both,
  // then keep the median run of each.
  std::vector<es::bench::run_result> store_runs;
  std::vector<es::bench::run_result> raw_runs;
  for (int i = 0; i < std::max(1, cfg.repeat); ++i) {
    store_runs.push_back(es::bench::run_store_append(p));
    if (!p.skip_raw)
      raw_runs.push_back(
        p.backend == "sqlite"     ? es::bench::run_raw_sqlite_append(p)
        : p.backend == "postgres" ? es::bench::run_raw_postgres_append(p)
                                  : es::bench::run_raw_memory_append(p));
  }
  std::vector<es::bench::run_result> rows{es::bench::median_run(store_runs)};
  if (!raw_runs.empty())
    rows.push_back(es::bench::median_run(raw_runs));
  for (const auto& r : rows)
    es::bench::print_json(r);
  es::bench::print_table(rows);
}

} // namespace

CAF_MAIN()
