// esnode: a cluster node running the orders domain (the Order aggregate
// and the order_summary read model, partitioned) on a shared PostgreSQL
// store. `esnode run` serves until SIGINT or SIGTERM; `esnode status`
// prints the cluster as PostgreSQL records it. See docs/cluster.md.
#include "es/actors/store_actor.hpp"
#include "es/cluster/node.hpp"
#include "es/cluster/view.hpp"
#ifdef ESNODE_WITH_OPS
#  include "es/ops/endpoints.hpp"
#  include "es/ops/otlp_exporter.hpp"
#endif
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>

#include "cluster_client.hpp"
#include "order.hpp"
#include "views.hpp"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr const char* usage = R"(usage: esnode COMMAND [options]

commands:
  run      join the cluster: own a share of the shards and order_summary
           partitions, run their aggregates and workers, forward other
           commands to their owners; until SIGINT or SIGTERM
  status   print the cluster's nodes, their leases and the owner of every
           shard and partition, as PostgreSQL records them
  drive    send --orders whole orders (create, two items, pay, ship) from
           --clients threads, each command to a random live node; exit 1
           if a command failed
  verify   check the cluster's log (dense versions) and its order_summary
           read model against a fold of the log, once every partition has
           caught up; exit 1 on a difference

Options can also be set in caf-application.ini (section [global]).
)";

struct esnode_config : caf::actor_system_config {
  std::string node_id;
  std::string cluster = "default";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string pg;
  uint32_t shards = 64;
  uint32_t partitions = 4;
  int64_t tick_ms = 500;
  int64_t lease_ttl_ms = 3000;
  int64_t deadline_ms = 10000;
  int64_t forward_timeout_ms = 5000;
  std::string http;
  std::string log_format = "text";
  std::string otlp;
  bool verbose = false;
  int64_t orders = 100;
  int64_t clients = 4;

  esnode_config() {
    opt_group{custom_options_, "global"}
      .add(node_id, "node-id", "this node's id, unique in the cluster")
      .add(cluster, "cluster", "the cluster's name (default \"default\")")
      .add(host, "host", "address to listen on and announce (127.0.0.1)")
      .add(port, "port", "middleman port (0 picks one)")
      .add(pg, "pg", "PostgreSQL DSN of the store and the leases")
      .add(shards, "shards", "aggregate shards in the cluster (64)")
      .add(partitions, "partitions", "order_summary partitions (4)")
      .add(tick_ms, "tick-ms", "lease tick in ms (500)")
      .add(lease_ttl_ms, "lease-ttl-ms",
           "how long a silent node keeps its leases, in ms (3000)")
      .add(deadline_ms, "deadline-ms",
           "how long a command may wait for its shard's owner (10000)")
      .add(forward_timeout_ms, "forward-timeout-ms",
           "how long a forwarded command may take at its owner (5000)")
      .add(verbose, "verbose", "log lease changes")
      .add(log_format, "log-format",
           "log lines on stderr: text (default) or json, one object per "
           "line")
      .add(otlp, "otlp",
           "send traces to an OpenTelemetry collector at http://HOST:PORT")
      .add(http, "http",
           "serve /live, /ready, /health and /metrics on HOST:PORT")
      .add(orders, "orders", "drive: whole orders to send (100)")
      .add(clients, "clients", "drive: client threads (4)");
    set("scheduler.max-threads", 2);
    es::cluster::add_cluster_module(*this);
    add_message_types<caf::id_block::orders>();
  }
};

/// Creates the read-model tables once; nodes starting together race on
/// CREATE TABLE IF NOT EXISTS, so a failed attempt is tried again.
caf::error create_views(const es::read_model_db_ptr& db,
                        const std::shared_ptr<const es::event_registry>& reg) {
  orders::order_summary_view view{db, reg};
  caf::error err;
  for (int attempt = 0; attempt < 5; ++attempt) {
    err = db->transact([&](es::sql_transaction& tx) {
      return view.create_tables(tx);
    });
    if (!err)
      return err;
  }
  return err;
}

#ifdef ESNODE_WITH_OPS
/// The store, and the node's leases: ready while its lease session is up.
void watch_node(es::ops::endpoints& ep, const es::cluster::node& node,
                const es::event_store_ptr& store) {
  ep.watch_store("orders", store);
  auto* n = &node;
  ep.add_check(
    "cluster",
    [n] {
      auto v = n->view();
      es::ops::check_result c{"cluster", es::health_level::healthy, {}};
      if (!v || !v->connected) {
        c.level = es::health_level::errors;
        c.detail = "no lease session: this node holds nothing";
        return c;
      }
      c.detail = std::to_string(v->nodes.size()) + " live nodes";
      for (const auto& [kind, items] : v->held)
        c.detail += ", " + std::to_string(items.size()) + " " + kind + " held";
      return c;
    },
    true);
  ep.add_metrics([n](es::ops::metrics_page& page) {
    auto v = n->view();
    page.gauge("es_cluster_connected", "1 while the lease session is up.",
               v && v->connected ? 1 : 0);
    if (!v)
      return;
    page.gauge("es_cluster_nodes_live", "Live nodes of the cluster.",
               static_cast<double>(v->nodes.size()));
    for (const auto& [kind, owners] : v->owners) {
      double unowned = 0;
      for (const auto& o : owners)
        unowned += o ? 0 : 1;
      page.gauge("es_cluster_items_unowned",
                 "Shards or partitions without a live owner.", unowned,
                 {{"kind", kind}});
    }
    for (const auto& [kind, items] : v->held)
      page.gauge("es_cluster_items_held",
                 "Shards or partitions this node holds.",
                 static_cast<double>(items.size()), {{"kind", kind}});
  });
}
#endif

int run(caf::actor_system& sys, const esnode_config& cfg) {
  if (cfg.node_id.empty() || cfg.pg.empty()) {
    std::cerr << "esnode: --node-id and --pg are needed\n";
    return 2;
  }
  auto registry = orders::make_registry();
  es::postgres_config pc;
  pc.dsn = cfg.pg;
  pc.application_name = "esnode/" + cfg.node_id;
  pc.registry = registry;
  auto store = es::make_postgres_event_store(pc);
  if (!store) {
    std::cerr << "esnode: " << es::describe(store.error()) << "\n";
    return 1;
  }
  auto db = es::make_postgres_read_model_db(pc);
  if (!db) {
    std::cerr << "esnode: " << es::describe(db.error()) << "\n";
    return 1;
  }
  if (auto err = create_views(*db, registry)) {
    std::cerr << "esnode: " << es::describe(err) << "\n";
    return 1;
  }
  es::cluster::node_config nc;
  nc.node_id = cfg.node_id;
  nc.cluster = cfg.cluster;
  nc.host = cfg.host;
  nc.port = cfg.port;
  nc.dsn = cfg.pg;
  nc.shards = cfg.shards;
  nc.tick = std::chrono::milliseconds(cfg.tick_ms);
  nc.lease_ttl = std::chrono::milliseconds(cfg.lease_ttl_ms);
  nc.command_deadline = std::chrono::milliseconds(cfg.deadline_ms);
  nc.forward_timeout = std::chrono::milliseconds(cfg.forward_timeout_ms);
  if (auto err = es::cluster::validate(nc)) {
    std::cerr << "esnode: " << es::describe(err) << "\n";
    return 2;
  }
  // [node]
  es::cluster::node node{sys, nc};
  es::aggregate_options ao;
  ao.store = es::spawn_store_actor(sys, *store);
  ao.registry = registry;
  node.add_aggregate<orders::order>(ao);
  es::subscription_config sc;
  sc.store = *store;
  sc.poll_interval = std::chrono::milliseconds(50);
  sc.lease_retry_interval = std::chrono::milliseconds(200);
  auto view_db = *db;
  node.add_partitioned(
    orders::order_summary_view::projection_name, cfg.partitions,
    [view_db, registry](uint32_t) {
      return std::make_shared<orders::order_summary_view>(view_db, registry);
    },
    sc);
  // [/node]
  // SIGINT and SIGTERM end the node; they are waited for below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (auto err = node.start()) {
    std::cerr << "esnode: " << es::describe(err) << "\n";
    return 1;
  }
#ifdef ESNODE_WITH_OPS
  es::ops::endpoints endpoints;
  if (!cfg.http.empty()) {
    watch_node(endpoints, node, *store);
    if (auto err = endpoints.serve(cfg.http)) {
      std::cerr << "esnode: --http: " << es::describe(err) << "\n";
      node.stop();
      return 2;
    }
    std::printf("esnode %s: serving /live, /ready, /health and /metrics on "
                "port %u\n",
                cfg.node_id.c_str(), static_cast<unsigned>(endpoints.port()));
  }
#else
  if (!cfg.http.empty()) {
    std::cerr << "esnode: --http: this build has no es::ops\n";
    node.stop();
    return 2;
  }
#endif
  std::printf("esnode %s listening on %s:%u (cluster %s, %u shards, %u "
              "order_summary partitions)\n",
              cfg.node_id.c_str(), cfg.host.c_str(),
              static_cast<unsigned>(node.port()), cfg.cluster.c_str(),
              cfg.shards, cfg.partitions);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("esnode %s: stopping (signal %d)\n", cfg.node_id.c_str(), sig);
  std::fflush(stdout);
#ifdef ESNODE_WITH_OPS
  endpoints.stop();
#endif
  node.stop();
  return 0;
}

int status(const esnode_config& cfg) {
  if (cfg.pg.empty()) {
    std::cerr << "esnode: --pg is needed\n";
    return 2;
  }
  auto st = es::cluster::read_cluster_status(cfg.pg, cfg.cluster);
  if (!st) {
    std::cerr << "esnode: " << es::describe(st.error()) << "\n";
    return 1;
  }
  std::cout << es::cluster::render(*st);
  return 0;
}

int drive(caf::actor_system& sys, const esnode_config& cfg) {
  if (cfg.pg.empty()) {
    std::cerr << "esnode: --pg is needed (the nodes are found there)\n";
    return 2;
  }
  auto st = es::cluster::read_cluster_status(cfg.pg, cfg.cluster);
  if (!st) {
    std::cerr << "esnode: " << es::describe(st.error()) << "\n";
    return 1;
  }
  std::vector<caf::actor> routers;
  for (const auto& n : st->nodes) {
    if (!n.live)
      continue;
    auto r = sys.middleman().remote_actor(n.info.host, n.info.port);
    if (!r) {
      std::cerr << "esnode: cannot reach node " << n.info.node_id << " at "
                << n.info.host << ":" << n.info.port << ": "
                << caf::to_string(r.error()) << "\n";
      return 1;
    }
    routers.push_back(*r);
  }
  if (routers.empty()) {
    std::cerr << "esnode: no live node in cluster " << cfg.cluster
              << " (scripts/cluster start N)\n";
    return 1;
  }
  esnode::order_workload w{
    sys,
    [&routers](std::mt19937_64& rng) {
      return routers[rng() % routers.size()];
    },
    static_cast<size_t>(std::max<int64_t>(1, cfg.clients)),
    static_cast<uint64_t>(std::max<int64_t>(1, cfg.orders))};
  w.join();
  auto records = w.records();
  size_t acked = 0;
  std::map<std::string, size_t> failures;
  for (const auto& [id, rec] : records) {
    if (rec.acked)
      ++acked;
    else
      ++failures[rec.type + ": " + rec.error];
  }
  std::printf("esnode drive: %lld orders over %zu nodes: %zu of %zu "
              "commands acknowledged\n",
              static_cast<long long>(cfg.orders), routers.size(), acked,
              records.size());
  for (const auto& [text, n] : failures)
    std::printf("  %zu x %s\n", n, text.c_str());
  return failures.empty() ? 0 : 1;
}

int verify(const esnode_config& cfg) {
  if (cfg.pg.empty()) {
    std::cerr << "esnode: --pg is needed\n";
    return 2;
  }
  auto rep = esnode::verify_cluster(cfg.pg, cfg.partitions, nullptr,
                                    std::chrono::seconds(60));
  if (!rep) {
    std::cerr << "esnode: " << es::describe(rep.error()) << "\n";
    return 1;
  }
  std::printf("esnode verify: %zu events in %zu streams\n", rep->events,
              rep->aggregates);
  for (const auto& p : rep->problems)
    std::printf("  %s\n", p.c_str());
  if (!rep->problems.empty())
    return 1;
  std::printf("versions dense; order_summary (%u partitions) matches the "
              "log\n",
              cfg.partitions);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words;
  std::vector<char*> options{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage << "\n";
      options.push_back(argv[i]);
    } else if (argv[i][0] == '-') {
      options.push_back(argv[i]);
    } else {
      words.push_back(arg);
    }
  }
  esnode_config cfg;
  if (auto err = cfg.parse(static_cast<int>(options.size()), options.data())) {
    std::cerr << "esnode: " << caf::to_string(err) << "\n" << usage;
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << "esnode: unknown option " << cfg.remainder.front() << "\n";
    return 2;
  }
  if (words.size() != 1
      || (words[0] != "run" && words[0] != "status" && words[0] != "drive"
          && words[0] != "verify")) {
    std::cerr << usage;
    return 2;
  }
  if (auto format = es::parse_log_format(cfg.log_format)) {
    es::set_log_format(*format);
  } else {
    std::cerr << "esnode: --log-format must be text or json\n";
    return 2;
  }
  if (cfg.verbose)
    es::set_log_level(es::log_level::info);
  if (words[0] == "status")
    return status(cfg);
  if (words[0] == "verify")
    return verify(cfg);
#ifdef ESNODE_WITH_OPS
  std::unique_ptr<es::ops::otlp_tracing> tracing;
  if (!cfg.otlp.empty()) {
    es::ops::otlp_config oc;
    oc.endpoint = cfg.otlp;
    oc.service_name = "esnode/" + cfg.node_id;
    auto started = es::ops::otlp_tracing::start(oc);
    if (!started) {
      std::cerr << "esnode: --otlp: " << es::describe(started.error()) << "\n";
      return 2;
    }
    tracing = std::move(*started);
  }
#else
  if (!cfg.otlp.empty()) {
    std::cerr << "esnode: --otlp: this build has no es::ops\n";
    return 2;
  }
#endif
  caf::actor_system sys{cfg};
  if (words[0] == "drive")
    return drive(sys, cfg);
  return run(sys, cfg);
}
