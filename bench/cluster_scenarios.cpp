#include "cluster_scenarios.hpp"

#include "es/actors/command.hpp"
#include "es/actors/shard.hpp"
#include "es/cluster/view.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "order.hpp"
#include "postgres_scenarios.hpp"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

namespace es::bench {

namespace {

constexpr uint32_t bench_shards = 64;

/// A child program whose first line of output says where it listens;
/// ended with SIGTERM.
class child {
public:
  explicit child(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0)
      fail("pipe failed");
    pid_ = fork();
    if (pid_ < 0)
      fail("fork failed");
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
  }

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  ~child() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    fclose(out_);
  }

  /// The port in its "listening on ...:PORT" line.
  uint16_t port() {
    char buf[512];
    while (fgets(buf, sizeof(buf), out_) != nullptr) {
      std::string line{buf};
      auto at = line.find("listening on ");
      if (at == std::string::npos)
        continue;
      auto colon = line.find(':', at);
      if (colon != std::string::npos)
        return static_cast<uint16_t>(std::atoi(line.c_str() + colon + 1));
    }
    fail("a child process ended before it listened");
  }

private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

caf::actor dial(caf::actor_system& sys, uint16_t port) {
  auto a = sys.middleman().remote_actor("127.0.0.1", port);
  if (!a)
    fail("cannot reach 127.0.0.1:" + std::to_string(port) + ": "
         + describe(a.error()));
  return *a;
}

/// Runs `per_thread(index, self, latencies)` on `threads` threads and
/// times the whole.
template <class F>
run_result timed(caf::actor_system& sys, int threads, F per_thread) {
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  auto start = clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      caf::scoped_actor self{sys};
      per_thread(t, self, lat[static_cast<size_t>(t)]);
    });
  for (auto& th : pool)
    th.join();
  run_result r;
  r.seconds = micros_since(start) / 1e6;
  for (auto& l : lat)
    r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  r.events = static_cast<int64_t>(r.latencies_us.size());
  r.writers = threads;
  r.batch = 1;
  return r;
}

caf::behavior echo() {
  return {[](int64_t x) {
    return x + 1;
  }};
}

} // namespace

void run_responder(caf::actor_system& sys) {
  auto port = sys.middleman().publish(sys.spawn(echo), 0, "127.0.0.1", true);
  if (!port)
    fail("cannot publish the responder: " + describe(port.error()));
  std::printf("responder listening on 127.0.0.1:%u\n",
              static_cast<unsigned>(*port));
  std::fflush(stdout);
  pause();
}

std::vector<run_result> run_cluster(caf::actor_system& sys,
                                    const bench_params& p, int nodes,
                                    int aggregates, const std::string& esnode,
                                    const std::string& self_exe) {
  std::shared_ptr<void> keep_schema;
  auto dsn = fresh_postgres_schema(p, keep_schema);
  std::vector<std::unique_ptr<child>> procs;
  std::map<std::string, caf::actor> routers;
  std::vector<std::string> ids;
  for (int k = 1; k <= nodes; ++k) {
    auto id = "bench" + std::to_string(k);
    procs.push_back(std::make_unique<child>(std::vector<std::string>{
      esnode, "run", "--node-id=" + id, "--cluster=bench", "--pg=" + dsn,
      "--port=0", "--shards=" + std::to_string(bench_shards),
      "--partitions=1"}));
    routers[id] = dial(sys, procs.back()->port());
    ids.push_back(id);
  }
  // Every shard owned by a node, and every node owning some.
  std::map<uint32_t, std::string> owner;
  for (int attempt = 0;; ++attempt) {
    owner.clear();
    std::map<std::string, int> counts;
    if (auto st = cluster::read_cluster_status(dsn, "bench"))
      for (const auto& l : st->leases)
        if (l.live && l.kind == cluster::shard_kind) {
          owner[l.item] = l.node_id;
          ++counts[l.node_id];
        }
    if (owner.size() == bench_shards
        && counts.size() == static_cast<size_t>(nodes))
      break;
    if (attempt > 600)
      fail("the cluster did not settle within 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The orders, created before the clock.
  std::vector<uuid> orders;
  {
    caf::scoped_actor self{sys};
    for (int i = 0; i < aggregates; ++i) {
      auto id = uuid::random();
      self
        ->request(routers.at(owner.at(shard_of(id, bench_shards))),
                  caf::infinite, command_envelope::to(id),
                  ::orders::create_order{"bench", "EUR"})
        .receive([](command_result&) {},
                 [](caf::error& err) {
                   fail("creating an order: " + describe(err));
                 });
      orders.push_back(id);
    }
  }
  auto per_thread = std::max<int64_t>(1, p.events / p.writers);
  auto drive = [&](int hop) {
    return timed(
      sys, p.writers,
      [&](int t, caf::scoped_actor& self, std::vector<double>& lat) {
        for (int64_t i = 0; i < per_thread; ++i) {
          auto n = (static_cast<size_t>(t)
                    + static_cast<size_t>(i) * static_cast<size_t>(p.writers))
                   % orders.size();
          const auto& id = orders[n];
          auto own = owner.at(shard_of(id, bench_shards));
          auto i_own = static_cast<size_t>(
            std::find(ids.begin(), ids.end(), own) - ids.begin());
          const auto& target
            = ids[(i_own + static_cast<size_t>(hop)) % ids.size()];
          auto start = clock::now();
          self
            ->request(
              routers.at(target), caf::infinite, command_envelope::to(id),
              ::orders::add_item{"sku-" + std::to_string(i % 8), 1, 100})
            .receive([](command_result&) {},
                     [](caf::error& err) {
                       fail("a command failed: " + describe(err));
                     });
          lat.push_back(micros_since(start));
        }
      });
  };
  std::vector<run_result> rows;
  auto local = drive(0);
  local.backend = "cluster-" + std::to_string(nodes);
  local.scenario = "cluster";
  local.note = "  sent to the owner";
  rows.push_back(std::move(local));
  if (nodes > 1) {
    auto forwarded = drive(1);
    forwarded.backend = "cluster-" + std::to_string(nodes);
    forwarded.scenario = "cluster";
    forwarded.note = "  forwarded by another node";
    rows.push_back(std::move(forwarded));
  }
  child responder{{self_exe, "--scenario=responder"}};
  auto echo_actor = dial(sys, responder.port());
  auto raw
    = timed(sys, p.writers,
            [&](int, caf::scoped_actor& self, std::vector<double>& lat) {
              for (int64_t i = 0; i < per_thread; ++i) {
                auto start = clock::now();
                self->request(echo_actor, caf::infinite, i)
                  .receive([](int64_t) {},
                           [](caf::error& err) {
                             fail("the responder failed: " + describe(err));
                           });
                lat.push_back(micros_since(start));
              }
            });
  raw.backend = "raw-caf-middleman";
  raw.scenario = "cluster";
  raw.note = "  request/response to another process";
  rows.push_back(std::move(raw));
  return rows;
}

} // namespace es::bench
