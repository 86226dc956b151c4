#include "command_scenarios.hpp"

#include "es/actors/aggregate_region.hpp"
#include "es/actors/store_actor.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/duration.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "counter.hpp"
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace es::bench {

namespace {

event_store_ptr open_store(const bench_params& p, const std::string& name) {
  if (p.backend == "memory")
    return make_memory_event_store();
  sqlite_config cfg;
  std::filesystem::create_directories(p.dir);
  cfg.path = (std::filesystem::path{p.dir} / name).string();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(cfg.path + suffix);
  cfg.synchronous = p.sync;
  auto res = make_sqlite_event_store(cfg);
  if (!res) {
    std::cerr << "esbench: " << describe(res.error()) << std::endl;
    std::exit(1);
  }
  return *res;
}

struct client_state {
  static inline const char* name = "esbench.client";
  int64_t remaining = 0;
  int64_t next_target = 0;
  std::vector<double> latencies;
};

using client_actor = caf::stateful_actor<client_state>;

/// The wait of every request a client sends, framework and raw alike: 60 s,
/// or none without `timed`. CAF keeps each timeout on its clock and cancels
/// it on the answer; the untimed runs show what that costs.
caf::duration client_timeout(bool timed) {
  return timed ? caf::duration{std::chrono::seconds(60)}
               : caf::duration{caf::infinite};
}

/// Sends one command at a time to `region`, for ids[first + k * stride],
/// each with `client_timeout(timed)`.
caf::behavior command_client(client_actor* self, caf::actor region,
                             std::shared_ptr<std::vector<uuid>> ids,
                             int64_t count, int64_t first, caf::actor done,
                             bool timed) {
  self->state.remaining = count;
  self->state.next_target = first;
  self->state.latencies.reserve(static_cast<size_t>(count));
  auto step = std::make_shared<std::function<void()>>();
  auto timeout = client_timeout(timed);
  *step = [self, region, ids, done, step, timeout] {
    auto& st = self->state;
    if (st.remaining-- == 0) {
      self->send(done, std::move(st.latencies));
      self->quit();
      return;
    }
    auto id = (*ids)[static_cast<size_t>(st.next_target++) % ids->size()];
    auto start = clock::now();
    self
      ->request(region, timeout, command_envelope::to(id),
                counter_bench::increment{1})
      .then(
        [self, step, start](command_result&) {
          self->state.latencies.push_back(micros_since(start));
          (*step)();
        },
        [self](caf::error& err) {
          std::cerr << "esbench: command failed: " << describe(err)
                    << std::endl;
          self->quit(err);
        });
  };
  (*step)();
  return {[](caf::ok_atom) {}};
}

caf::behavior responder(caf::event_based_actor*) {
  return {[](int64_t x) {
    return x + 1;
  }};
}

caf::behavior raw_client(client_actor* self, caf::actor server, int64_t count,
                         caf::actor done, bool timed) {
  self->state.remaining = count;
  self->state.latencies.reserve(static_cast<size_t>(count));
  auto step = std::make_shared<std::function<void()>>();
  auto timeout = client_timeout(timed);
  *step = [self, server, done, step, timeout] {
    auto& st = self->state;
    if (st.remaining-- == 0) {
      self->send(done, std::move(st.latencies));
      self->quit();
      return;
    }
    auto start = clock::now();
    self->request(server, timeout, st.remaining)
      .then([self, step, start](int64_t) {
        self->state.latencies.push_back(micros_since(start));
        (*step)();
      });
  };
  (*step)();
  return {[](caf::ok_atom) {}};
}

/// Waits for `n` latency vectors sent to `self`.
std::vector<double> collect(caf::scoped_actor& self, int n) {
  std::vector<double> all;
  for (int i = 0; i < n; ++i)
    self->receive([&](std::vector<double>& xs) {
      all.insert(all.end(), xs.begin(), xs.end());
    });
  return all;
}

double rss_bytes() {
  std::ifstream in{"/proc/self/statm"};
  long pages = 0;
  long resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident)
         * static_cast<double>(sysconf(_SC_PAGESIZE));
}

} // namespace

run_result run_commands(caf::actor_system& sys, const bench_params& p,
                        int aggregates, bool timed) {
  auto store = open_store(p, "esbench-commands.db");
  auto handle = spawn_store_actor(sys, store);
  aggregate_options ao;
  ao.store = handle;
  ao.registry = counter_bench::make_registry();
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  auto region = spawn_region<counter_bench::counter>(sys, ao, ro);
  auto ids = std::make_shared<std::vector<uuid>>();
  for (int i = 0; i < aggregates; ++i)
    ids->push_back(uuid::random());
  caf::scoped_actor self{sys};
  // Warm-up, not timed: every aggregate gets its actor and first event.
  {
    auto per = (aggregates + p.writers - 1) / p.writers;
    for (int c = 0; c < p.writers; ++c)
      sys.spawn(command_client, region, ids, per, static_cast<int64_t>(c) * per,
                caf::actor{self}, timed);
    collect(self, p.writers);
  }
  auto per_client = std::max<int64_t>(1, p.events / p.writers);
  auto start = clock::now();
  for (int c = 0; c < p.writers; ++c)
    sys.spawn(command_client, region, ids, per_client,
              static_cast<int64_t>(c) * 7919, caf::actor{self}, timed);
  auto lat = collect(self, p.writers);
  run_result r;
  r.backend = timed ? p.backend : p.backend + "-untimed";
  r.scenario = "commands";
  r.seconds = micros_since(start) / 1e6;
  r.events = static_cast<int64_t>(lat.size());
  r.writers = p.writers;
  r.batch = 1;
  r.latencies_us = std::move(lat);
  r.note = "  (" + std::to_string(aggregates) + " aggregates)";
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(handle, caf::exit_reason::user_shutdown);
  return r;
}

run_result run_raw_caf(caf::actor_system& sys, const bench_params& p,
                       bool timed) {
  caf::scoped_actor self{sys};
  auto per_client = std::max<int64_t>(1, p.events / p.writers);
  std::vector<caf::actor> servers;
  for (int c = 0; c < p.writers; ++c)
    servers.push_back(sys.spawn(responder));
  auto start = clock::now();
  for (int c = 0; c < p.writers; ++c)
    sys.spawn(raw_client, servers[static_cast<size_t>(c)], per_client,
              caf::actor{self}, timed);
  auto lat = collect(self, p.writers);
  run_result r;
  r.backend = timed ? "raw-caf" : "raw-caf-untimed";
  r.scenario = "commands";
  r.seconds = micros_since(start) / 1e6;
  r.events = static_cast<int64_t>(lat.size());
  r.writers = p.writers;
  r.batch = 1;
  r.latencies_us = std::move(lat);
  for (auto& s : servers)
    self->send_exit(s, caf::exit_reason::user_shutdown);
  return r;
}

double measure_idle_aggregate_bytes(caf::actor_system& sys, int count) {
  auto store = make_memory_event_store();
  std::vector<uuid> ids;
  for (int i = 0; i < count; ++i) {
    ids.push_back(uuid::random());
    auto ev = make_event(counter_bench::incremented{1});
    static_cast<void>(store->append({"Counter", ids.back()},
                                    expected_version::no_stream(), {*ev}));
  }
  auto handle = spawn_store_actor(sys, store);
  aggregate_options ao;
  ao.store = handle;
  ao.registry = counter_bench::make_registry();
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  ro.max_live = static_cast<size_t>(count) + 1;
  auto region = spawn_region<counter_bench::counter>(sys, ao, ro);
  caf::scoped_actor self{sys};
  // Warm the allocator and the region with a first batch, then measure the
  // rest.
  auto warm = count / 10;
  auto touch = [&](int from, int to) {
    for (int i = from; i < to; i += 1000) {
      std::vector<decltype(self->request(region, caf::infinite,
                                         command_envelope::to(ids[0]),
                                         counter_bench::touch{}))>
        pending;
      for (int j = i; j < std::min(to, i + 1000); ++j)
        pending.push_back(
          self->request(region, caf::infinite,
                        command_envelope::to(ids[static_cast<size_t>(j)]),
                        counter_bench::touch{}));
      for (auto& h : pending)
        h.receive([](command_result&) {},
                  [](caf::error& err) {
                    std::cerr << "esbench: " << describe(err) << std::endl;
                  });
    }
  };
  touch(0, warm);
  auto before = rss_bytes();
  touch(warm, count);
  auto after = rss_bytes();
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(handle, caf::exit_reason::user_shutdown);
  return (after - before) / static_cast<double>(count - warm);
}

} // namespace es::bench
