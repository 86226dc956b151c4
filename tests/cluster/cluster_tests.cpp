// The cluster with real processes: esnode programs on loopback against the
// test PostgreSQL server, driven over CAF's middleman by client threads
// that send order commands to random nodes. Nodes are killed, paused,
// added, and the server restarted mid-workload; afterwards the log must
// hold every acknowledged command exactly once, dense versions, and read
// models that match it.
#include "es/actors/errors.hpp"
#include "es/cluster/node.hpp"
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "child_process.hpp"
#include "cluster_client.hpp"
#include "order.hpp"
#include "pg_fixture.hpp"

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using es::uuid;

namespace {

using steady = std::chrono::steady_clock;

constexpr uint32_t shard_count = 16;
constexpr uint32_t partition_count = 4;

struct client_config : caf::actor_system_config {
  client_config() {
    set("scheduler.max-threads", 2);
    es::cluster::add_cluster_module(*this);
    add_message_types<caf::id_block::orders>();
  }
};

/// Several esnode processes of one cluster in a fresh schema, and a client
/// actor system that reaches their routers.
class cluster {
public:
  cluster() : pgcfg_(pg_.fresh_config()), sys_(client_cfg_) {
    // nop
  }

  ~cluster() {
    nodes_.clear();
  }

  const es::postgres_config& pg() const {
    return pgcfg_;
  }

  /// Starts node `id`; waits until it listens.
  void start(const std::string& id, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{ES_ESNODE_PATH,
                                  "run",
                                  "--node-id=" + id,
                                  "--cluster=test",
                                  "--pg=" + pgcfg_.dsn,
                                  "--port=0",
                                  "--shards=" + std::to_string(shard_count),
                                  "--partitions="
                                    + std::to_string(partition_count),
                                  "--tick-ms=200",
                                  "--lease-ttl-ms=1500",
                                  "--deadline-ms=8000",
                                  "--forward-timeout-ms=3000"};
    for (auto& e : extra)
      args.push_back(std::move(e));
    auto child = std::make_unique<es::test::child_process>(args);
    auto line = child->line();
    auto at = line.find("listening on 127.0.0.1:");
    REQUIRE(at != std::string::npos);
    auto port = static_cast<uint16_t>(
      std::atoi(line.c_str() + at + std::strlen("listening on 127.0.0.1:")));
    REQUIRE(port != 0);
    auto router = sys_.middleman().remote_actor("127.0.0.1", port);
    REQUIRE(router);
    {
      std::lock_guard guard{mtx_};
      routers_[id] = *router;
    }
    nodes_[id] = std::move(child);
  }

  /// Takes node `id` out of the clients' choice (before killing it).
  void forget(const std::string& id) {
    std::lock_guard guard{mtx_};
    routers_.erase(id);
  }

  /// Lets clients use node `id` again.
  void remember(const std::string& id, caf::actor router) {
    std::lock_guard guard{mtx_};
    routers_[id] = std::move(router);
  }

  caf::actor router_of(const std::string& id) {
    std::lock_guard guard{mtx_};
    return routers_.at(id);
  }

  es::test::child_process& process(const std::string& id) {
    return *nodes_.at(id);
  }

  void kill(const std::string& id) {
    forget(id);
    nodes_.at(id)->kill_now();
  }

  /// A random node's router.
  caf::actor any_router(std::mt19937_64& rng) {
    std::lock_guard guard{mtx_};
    auto i = routers_.begin();
    std::advance(i, static_cast<long>(rng() % routers_.size()));
    return i->second;
  }

  /// Whether every shard and partition has a live owner among `among`, and
  /// each of `among` holds at least one shard.
  bool settled(const std::set<std::string>& among) {
    auto st = es::cluster::read_cluster_status(pgcfg_.dsn, "test");
    if (!st)
      return false;
    std::map<std::string, std::set<uint32_t>> owned;
    std::map<std::string, size_t> shards_of;
    for (const auto& l : st->leases)
      if (l.live && among.count(l.node_id) > 0) {
        owned[l.kind].insert(l.item);
        if (l.kind == es::cluster::shard_kind)
          ++shards_of[l.node_id];
      }
    for (const auto& n : among)
      if (shards_of[n] == 0)
        return false;
    return owned[es::cluster::shard_kind].size() == shard_count
           && owned[es::cluster::projection_kind("order_summary")].size()
                == partition_count;
  }

  /// Waits until `settled(among)`; returns how long it took.
  std::chrono::milliseconds wait_settled(const std::set<std::string>& among,
                                         std::chrono::milliseconds limit) {
    auto start = steady::now();
    while (!settled(among)) {
      if (steady::now() - start > limit)
        FAIL("the cluster did not settle on "
             << among.size() << " nodes within " << limit.count() << " ms:\n"
             << status_text());
      std::this_thread::sleep_for(20ms); // a poll interval, not a sync
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now()
                                                                 - start);
  }

  std::string status_text() {
    auto st = es::cluster::read_cluster_status(pgcfg_.dsn, "test");
    return st ? es::cluster::render(*st) : es::describe(st.error());
  }

  caf::actor_system& sys() {
    return sys_;
  }

private:
  es::test::postgres_fixture pg_;
  es::postgres_config pgcfg_;
  client_config client_cfg_;
  caf::actor_system sys_;
  std::mutex mtx_;
  std::map<std::string, caf::actor> routers_;
  std::map<std::string, std::unique_ptr<es::test::child_process>> nodes_;
};

/// Starts client threads sending whole orders to random live nodes.
std::unique_ptr<esnode::order_workload> drive(cluster& c, size_t clients) {
  return std::make_unique<esnode::order_workload>(
    c.sys(),
    [&c](std::mt19937_64& rng) {
      return c.any_router(rng);
    },
    clients);
}

/// Waits for `n` more finished commands.
void wait_for_commands(const esnode::order_workload& w, uint64_t n,
                       std::chrono::milliseconds limit = 60s) {
  if (!w.wait_for_commands(n, limit))
    FAIL("the workload stalled at " << w.done() << " commands");
}

/// The log against the clients' records, the versions, and the read model.
void verify(cluster& c, const std::map<uuid, esnode::command_record>& records) {
  auto rep = esnode::verify_cluster(c.pg().dsn, partition_count, &records, 60s);
  if (!rep)
    FAIL("cannot verify: " << es::describe(rep.error()));
  for (const auto& [text, n] : rep->failures)
    WARN(n << " x " << text);
  WARN(rep->acked << " commands acknowledged, " << rep->refused
                  << " refused or not run, " << rep->unknown
                  << " with an unknown outcome (" << rep->unknown_applied
                  << " of them applied); " << rep->events << " events");
  for (const auto& p : rep->problems)
    FAIL_CHECK(p);
  CHECK(rep->problems.empty());
  CHECK(rep->acked > 0);
}

} // namespace

TEST_CASE("three nodes: a workload to random nodes, a kill -9, a fourth node",
          "[cluster]") {
  cluster c;
  c.start("n1");
  c.start("n2");
  c.start("n3");
  c.wait_settled({"n1", "n2", "n3"}, 20s);
  auto w = drive(c, 6);
  wait_for_commands(*w, 300);
  // A node dies with commands in flight; the survivors take its shards and
  // partitions on their next ticks.
  c.kill("n2");
  auto failover = c.wait_settled({"n1", "n3"}, 10s);
  WARN("all shards and partitions owned again " << failover.count()
                                                << " ms after the kill");
  // The bound: the survivors' lease tick (200 ms) plus a draining tick and
  // the time to take 16 locks, with plenty of room for a loaded machine.
  CHECK(failover < 5s);
  wait_for_commands(*w, 300);
  // A fourth node joins under load and takes its share.
  c.start("n4");
  c.wait_settled({"n1", "n3", "n4"}, 20s);
  wait_for_commands(*w, 300);
  w->stop();
  verify(c, w->records());
}

TEST_CASE("a paused node loses its shards and gives them up when resumed",
          "[cluster]") {
  cluster c;
  c.start("n1");
  c.start("n2");
  c.wait_settled({"n1", "n2"}, 20s);
  auto n2 = c.router_of("n2");
  auto w = drive(c, 4);
  wait_for_commands(*w, 200);
  // Paused, n2's lease session goes idle; the server ends it after the TTL
  // and n1 takes every shard while n2 still believes it owns half.
  c.forget("n2");
  c.process("n2").signal(SIGSTOP);
  auto takeover = c.wait_settled({"n1"}, 15s);
  WARN("n1 owned everything " << takeover.count() << " ms after the pause");
  wait_for_commands(*w, 200);
  // Resumed, n2 finds its session gone, serves nothing until it holds
  // leases again, and takes a share back; the store refuses any append of
  // a version n1 wrote meanwhile.
  c.process("n2").signal(SIGCONT);
  c.wait_settled({"n1", "n2"}, 20s);
  c.remember("n2", n2);
  wait_for_commands(*w, 200);
  w->stop();
  verify(c, w->records());
}

TEST_CASE("a PostgreSQL restart mid-workload: nodes take their leases again",
          "[cluster]") {
  const char* restart = std::getenv("ES_TEST_PG_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("set ES_TEST_PG_RESTART to a command that restarts the test server "
         "(scripts/test sets it to `scripts/pg restart`)");
  cluster c;
  c.start("n1");
  c.start("n2");
  c.wait_settled({"n1", "n2"}, 20s);
  auto w = drive(c, 4);
  wait_for_commands(*w, 200);
  REQUIRE(std::system(restart) == 0);
  c.wait_settled({"n1", "n2"}, 30s);
  wait_for_commands(*w, 200, 90s);
  w->stop();
  verify(c, w->records());
}
