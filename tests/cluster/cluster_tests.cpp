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
#include "order.hpp"
#include "order_summary.hpp"
#include "pg_fixture.hpp"
#include "views.hpp"

#include <atomic>
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

/// What happened to one command.
struct command_record {
  uuid aggregate;
  bool acked = false;
  /// Events the owner reported writing.
  uint32_t events = 0;
  /// For failures: the error code's name.
  std::string error;
  bool unknown = false;
  std::string type;
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

/// Client threads sending whole orders (create, two items, pay, ship), each
/// command to a random node; every command's outcome is recorded.
class workload {
public:
  workload(cluster& c, size_t clients) : c_(c) {
    for (size_t i = 0; i < clients; ++i)
      threads_.emplace_back([this, i] {
        run(i);
      });
  }

  ~workload() {
    stop();
  }

  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

  uint64_t done() const {
    return done_;
  }

  /// Waits until `n` more commands finished (acknowledged or failed).
  void wait_for_commands(uint64_t n, std::chrono::seconds limit) {
    auto target = done_ + n;
    auto start = steady::now();
    while (done_ < target) {
      if (steady::now() - start > limit)
        FAIL("the workload stalled at " << done_ << " commands");
      std::this_thread::sleep_for(10ms); // a poll interval, not a sync
    }
  }

  std::map<uuid, command_record> records() {
    std::lock_guard guard{mtx_};
    return records_;
  }

private:
  template <class Cmd>
  bool send(caf::scoped_actor& self, std::mt19937_64& rng, const uuid& order,
            Cmd cmd) {
    auto env = es::command_envelope::to(order);
    command_record rec;
    rec.aggregate = order;
    rec.type = typeid(Cmd).name();
    auto router = c_.any_router(rng);
    self->request(router, caf::timespan{15s}, env, std::move(cmd))
      .receive(
        [&](es::command_result& res) {
          rec.acked = true;
          rec.events = res.events;
        },
        [&](caf::error& err) {
          rec.error = es::describe(err);
          // Unknown: the command may have run (the node died or went
          // silent with it). Everything else says nothing was written.
          rec.unknown = has_code(err, es::actors_errc::outcome_unknown)
                        || err == caf::sec::request_timeout
                        || err == caf::sec::request_receiver_down;
        });
    {
      std::lock_guard guard{mtx_};
      records_[env.command_id] = rec;
    }
    ++done_;
    return rec.acked;
  }

  void run(size_t index) {
    caf::scoped_actor self{c_.sys()};
    std::mt19937_64 rng{index * 7919 + 17};
    while (!stop_) {
      auto order = uuid::random();
      auto customer = "c" + std::to_string(rng() % 50);
      auto price = static_cast<int64_t>(100 + rng() % 900);
      if (!send(self, rng, order, orders::create_order{customer, "EUR"})
          || !send(self, rng, order, orders::add_item{"sku-a", 2, price})
          || !send(self, rng, order, orders::add_item{"sku-b", 1, price + 1})
          || !send(self, rng, order,
                   orders::pay_order{3 * price + 1, "pay-" + order.to_string()})
          || !send(self, rng, order, orders::ship_order{"track"}))
        continue;
    }
  }

  cluster& c_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> done_{0};
  std::mutex mtx_;
  std::map<uuid, command_record> records_;
  std::vector<std::thread> threads_;
};

/// Reads the whole log.
es::recorded_events read_log(es::event_store& store) {
  es::recorded_events all;
  es::read_all_options opts;
  for (;;) {
    auto page = store.read_all(opts);
    REQUIRE(page);
    for (auto& ev : page->events)
      all.push_back(std::move(ev));
    if (page->events.empty() || page->end_of_feed)
      break;
    opts.after_position = page->next_position;
  }
  return all;
}

/// The log against the clients' records, the versions, and the read model.
void verify(cluster& c, const std::map<uuid, command_record>& records) {
  auto cfg = c.pg();
  cfg.registry = orders::make_registry();
  auto store = es::make_postgres_event_store(cfg);
  REQUIRE(store);
  auto log = read_log(**store);
  std::map<uuid, uint32_t> by_command;
  std::map<uuid, std::vector<int64_t>> versions;
  for (const auto& ev : log) {
    REQUIRE(ev.causation_id);
    ++by_command[*ev.causation_id];
    versions[ev.aggregate_id].push_back(ev.aggregate_version);
  }
  size_t acked = 0;
  size_t unknown = 0;
  size_t unknown_applied = 0;
  size_t failed = 0;
  std::map<std::string, size_t> errors;
  for (const auto& [id, rec] : records)
    if (!rec.acked)
      ++errors[rec.type + " " + rec.error.substr(0, 90)];
  for (const auto& [text, n] : errors)
    WARN(n << " x " << text);
  for (const auto& [id, rec] : records) {
    auto n = by_command.count(id) > 0 ? by_command[id] : 0u;
    if (rec.acked) {
      ++acked;
      // Exactly once: the events the owner reported, no more, no fewer.
      INFO("command " << id.to_string());
      CHECK(n == rec.events);
      CHECK(n >= 1);
    } else if (rec.unknown) {
      ++unknown;
      // At most once.
      CHECK(n <= 1);
      unknown_applied += n;
    } else {
      ++failed;
      INFO("command " << id.to_string() << " failed: " << rec.error);
      CHECK(n == 0);
    }
  }
  // No event without a command the clients sent.
  for (const auto& [id, n] : by_command)
    CHECK(records.count(id) == 1);
  // Dense versions: 1..n in the order of the global feed.
  for (const auto& [agg, vs] : versions)
    for (size_t i = 0; i < vs.size(); ++i)
      CHECK(vs[i] == static_cast<int64_t>(i + 1));
  WARN(acked << " commands acknowledged, " << failed << " refused or not run, "
             << unknown << " with an unknown "
             << "outcome (" << unknown_applied << " of them applied); "
             << log.size() << " events");
  CHECK(acked > 0);
  // The read model: every partition's checkpoint reaches the head, then the
  // rows equal a fresh fold of the log.
  auto head = (*store)->head_position();
  REQUIRE(head);
  auto checkpoints = es::make_postgres_checkpoint_store(cfg);
  REQUIRE(checkpoints);
  auto start = steady::now();
  for (uint32_t k = 0; k < partition_count; ++k) {
    auto name = "order_summary#" + std::to_string(k) + "/"
                + std::to_string(partition_count);
    for (;;) {
      auto cp = (*checkpoints)->load(name);
      REQUIRE(cp);
      if (*cp && (*cp)->position >= *head)
        break;
      if (steady::now() - start > 60s)
        FAIL(name << " did not catch up with position " << *head);
      std::this_thread::sleep_for(20ms); // a poll interval, not a sync
    }
  }
  orders::order_summary expected{cfg.registry};
  REQUIRE(!expected.catch_up(**store));
  auto db = es::make_postgres_read_model_db(cfg);
  REQUIRE(db);
  orders::order_summary_view view{*db, cfg.registry};
  auto rows = view.rows();
  REQUIRE(rows);
  auto want = expected.rows();
  CHECK(rows->size() == want.size());
  size_t differences = 0;
  for (const auto& [id, row] : want) {
    auto i = rows->find(id);
    if (i == rows->end() || !(i->second == row))
      ++differences;
  }
  CHECK(differences == 0);
}

} // namespace

TEST_CASE("three nodes: a workload to random nodes, a kill -9, a fourth node",
          "[cluster]") {
  cluster c;
  c.start("n1");
  c.start("n2");
  c.start("n3");
  c.wait_settled({"n1", "n2", "n3"}, 20s);
  workload w{c, 6};
  w.wait_for_commands(300, 60s);
  // A node dies with commands in flight; the survivors take its shards and
  // partitions on their next ticks.
  c.kill("n2");
  auto failover = c.wait_settled({"n1", "n3"}, 10s);
  WARN("all shards and partitions owned again " << failover.count()
                                                << " ms after the kill");
  // The bound: the survivors' lease tick (200 ms) plus a draining tick and
  // the time to take 16 locks, with plenty of room for a loaded machine.
  CHECK(failover < 5s);
  w.wait_for_commands(300, 60s);
  // A fourth node joins under load and takes its share.
  c.start("n4");
  c.wait_settled({"n1", "n3", "n4"}, 20s);
  w.wait_for_commands(300, 60s);
  w.stop();
  verify(c, w.records());
}

TEST_CASE("a paused node loses its shards and gives them up when resumed",
          "[cluster]") {
  cluster c;
  c.start("n1");
  c.start("n2");
  c.wait_settled({"n1", "n2"}, 20s);
  auto n2 = c.router_of("n2");
  workload w{c, 4};
  w.wait_for_commands(200, 60s);
  // Paused, n2's lease session goes idle; the server ends it after the TTL
  // and n1 takes every shard while n2 still believes it owns half.
  c.forget("n2");
  c.process("n2").signal(SIGSTOP);
  auto takeover = c.wait_settled({"n1"}, 15s);
  WARN("n1 owned everything " << takeover.count() << " ms after the pause");
  w.wait_for_commands(200, 60s);
  // Resumed, n2 finds its session gone, serves nothing until it holds
  // leases again, and takes a share back; the store refuses any append of
  // a version n1 wrote meanwhile.
  c.process("n2").signal(SIGCONT);
  c.wait_settled({"n1", "n2"}, 20s);
  c.remember("n2", n2);
  w.wait_for_commands(200, 60s);
  w.stop();
  verify(c, w.records());
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
  workload w{c, 4};
  w.wait_for_commands(200, 60s);
  REQUIRE(std::system(restart) == 0);
  c.wait_settled({"n1", "n2"}, 30s);
  w.wait_for_commands(200, 90s);
  w.stop();
  verify(c, w.records());
}
