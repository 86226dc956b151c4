#include "bus_scenarios.hpp"

#include "es/brokers/brokers.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/redis/redis.hpp"
#include "es/sqlite/sqlite.hpp"
#ifdef ES_BENCH_RABBITMQ
#  include "rabbitmq_baseline.hpp"
#endif

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include <hiredis/hiredis.h>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace es::bench {

/// `n` recorded events over 100 aggregates, as a store would return them.
recorded_events make_bench_events(int64_t n) {
  std::vector<uuid> ids;
  for (int i = 0; i < 100; ++i)
    ids.push_back(uuid::random());
  auto now = std::chrono::time_point_cast<timestamp::duration>(
    std::chrono::system_clock::now());
  recorded_events result;
  result.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    recorded_event ev;
    ev.event_id = uuid::time_ordered();
    ev.event_type = "ItemAdded";
    ev.aggregate_type = "Order";
    ev.aggregate_id = ids[static_cast<size_t>(i % 100)];
    ev.aggregate_version = i / 100 + 1;
    ev.global_position = i + 1;
    ev.occurred_at = now;
    ev.correlation_id = uuid::random();
    ev.actor_id = "bench";
    ev.payload = sample_payload(i);
    result.push_back(std::move(ev));
  }
  return result;
}

namespace {

std::string stream_prefix() {
  return "esbench:" + uuid::random().to_string();
}

/// A name of the bench's own at the broker (stream prefix, exchange).
std::string bus_name(const std::string& url) {
  if (broker_of(url) == "redis")
    return stream_prefix();
  if (broker_of(url) == "kafka")
    return "esbench-" + uuid::random().to_string();
  return "esbench." + uuid::random().to_string();
}

/// Deletes the bench's streams.
void drop(redisContext* ctx, const std::string& prefix) {
  auto stream = prefix + ":stream";
  auto dlq = prefix + ":dlq";
  const char* argv[] = {"DEL", stream.c_str(), dlq.c_str()};
  size_t lens[] = {3, stream.size(), dlq.size()};
  if (auto* r = static_cast<redisReply*>(redisCommandArgv(ctx, 3, argv, lens)))
    freeReplyObject(r);
}

redisContext* connect_raw(const redis_url& url) {
  auto* ctx = redisConnect(url.host.c_str(), url.port);
  if (ctx == nullptr || ctx->err != 0)
    fail("esbench: cannot connect to Redis at " + to_string(url));
  if (!url.password.empty()) {
    auto* r = static_cast<redisReply*>(
      redisCommand(ctx, "AUTH %s", url.password.c_str()));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR)
      fail("esbench: Redis refused the password");
    freeReplyObject(r);
  }
  auto* r = static_cast<redisReply*>(redisCommand(ctx, "SELECT %d", url.db));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR)
    fail("esbench: Redis refused SELECT");
  freeReplyObject(r);
  return ctx;
}

/// Deletes what a bench run left at the broker.
void drop_bus(const std::string& url, const std::string& name) {
  if (broker_of(url) == "redis") {
    auto* ctx = connect_raw(*parse_redis_url(url));
    drop(ctx, name);
    redisFree(ctx);
    return;
  }
#ifdef ES_BENCH_RABBITMQ
  if (broker_of(url) == "rabbitmq")
    drop_rabbitmq_bus(url, name);
#endif
  // Kafka: the mock cluster keeps the topics until it stops.
}

} // namespace

run_result run_bus_publish(caf::actor_system& sys, const bench_params& params,
                           const std::string& url) {
  auto events = make_bench_events(params.events);
  broker_bus_settings settings;
  settings.name = bus_name(url);
  auto bus = open_broker_bus(sys, url, settings);
  if (!bus)
    fail("esbench: cannot open the bus at " + masked_url(url) + ": "
         + describe(bus.error()));
  run_result r;
  r.backend = broker_of(url);
  r.scenario = "bus-publish";
  r.events = params.events;
  r.writers = 1;
  r.batch = params.batch;
  r.note = "(es::" + r.backend + " bus facade, envelopes encoded in the call)";
  auto batch = static_cast<size_t>(std::max(1, params.batch));
  auto start = clock::now();
  for (size_t i = 0; i < events.size(); i += batch) {
    recorded_events part(
      events.begin() + static_cast<ptrdiff_t>(i),
      events.begin()
        + static_cast<ptrdiff_t>(std::min(events.size(), i + batch)));
    auto t = clock::now();
    if (auto err = (*bus)->publish(std::move(part)))
      fail("esbench: publish failed: " + describe(err));
    r.latencies_us.push_back(micros_since(t));
  }
  r.seconds = micros_since(start) / 1e6;
  bus->reset();
  drop_bus(url, settings.name);
  return r;
}

run_result run_raw_hiredis_xadd(const bench_params& params,
                                const std::string& url) {
  auto parsed = parse_redis_url(url);
  if (!parsed)
    fail("esbench: bad --redis-url: " + describe(parsed.error()));
  auto events = make_bench_events(params.events);
  auto prefix = stream_prefix();
  auto stream = prefix + ":stream";
  // The commands, encoded before the clock: the same fields the bus sends.
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(events.size());
  for (const auto& ev : events) {
    std::vector<std::string> cmd{"XADD", stream, "*"};
    for (auto& [k, v] : envelope_headers(ev)) {
      cmd.push_back(std::move(k));
      cmd.push_back(std::move(v));
    }
    cmd.push_back("envelope");
    cmd.push_back(*encode_envelope(ev));
    cmds.push_back(std::move(cmd));
  }
  auto* ctx = connect_raw(*parsed);
  run_result r;
  r.backend = "raw-hiredis";
  r.scenario = "bus-publish";
  r.events = params.events;
  r.writers = 1;
  r.batch = params.batch;
  r.note = "(pipelined XADD of pre-encoded envelopes, one connection)";
  auto batch = static_cast<size_t>(std::max(1, params.batch));
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  auto start = clock::now();
  for (size_t i = 0; i < cmds.size(); i += batch) {
    auto t = clock::now();
    auto end = std::min(cmds.size(), i + batch);
    for (size_t j = i; j < end; ++j) {
      argv.clear();
      lens.clear();
      for (const auto& a : cmds[j]) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(),
                             lens.data());
    }
    for (size_t j = i; j < end; ++j) {
      void* reply = nullptr;
      if (redisGetReply(ctx, &reply) != REDIS_OK || reply == nullptr)
        fail("esbench: raw XADD failed");
      if (static_cast<redisReply*>(reply)->type == REDIS_REPLY_ERROR)
        fail("esbench: raw XADD refused");
      freeReplyObject(reply);
    }
    r.latencies_us.push_back(micros_since(t));
  }
  r.seconds = micros_since(start) / 1e6;
  drop(ctx, prefix);
  redisFree(ctx);
  return r;
}

namespace {

/// Commit times by event id, and the handler side that turns them into
/// latencies; waits until every event arrived.
struct latency_probe {
  std::mutex mtx;
  std::condition_variable cv;
  std::unordered_map<uuid, clock::time_point> committed;
  std::unordered_map<uuid, clock::time_point> arrived;
  clock::time_point last_arrival;

  void commit(const event_batch& batch) {
    auto now = clock::now();
    std::lock_guard guard{mtx};
    for (const auto& ev : batch)
      committed.emplace(ev.event_id, now);
  }

  void arrive(const recorded_event& ev) {
    auto now = clock::now();
    std::lock_guard guard{mtx};
    if (arrived.emplace(ev.event_id, now).second) {
      last_arrival = now;
      cv.notify_all();
    }
  }

  bool wait_for(size_t n) {
    std::unique_lock guard{mtx};
    return cv.wait_for(guard, std::chrono::minutes(5), [&] {
      return arrived.size() >= n;
    });
  }

  /// Commit-to-handler latencies; an event handled before its append
  /// returned counts as 0.
  std::vector<double> latencies() {
    std::lock_guard guard{mtx};
    std::vector<double> result;
    for (const auto& [id, at] : arrived) {
      auto i = committed.find(id);
      if (i == committed.end())
        continue;
      result.push_back(
        at > i->second
          ? std::chrono::duration<double, std::micro>(at - i->second).count()
          : 0.0);
    }
    return result;
  }
};

std::string relay_db(const bench_params& p) {
  std::filesystem::create_directories(p.dir);
  auto path = (std::filesystem::path{p.dir} / "esbench-relay.db").string();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix);
  return path;
}

/// Appends the rows on the writer threads; `after(batch, result)` runs
/// after each append. Returns the time the first append started.
clock::time_point append_all(
  event_store& store, const bench_params& p,
  const std::function<void(const event_batch&, const append_result&)>& after) {
  auto rows = make_rows(p);
  auto start = clock::now();
  run_threads(p.writers, [&](int w) {
    auto& mine = rows[static_cast<size_t>(w)];
    int64_t version = 0;
    for (auto& batch : mine.calls) {
      auto copy = batch;
      auto res = store.append(mine.stream, expected_version::exact(version),
                              std::move(batch));
      if (!res)
        fail("esbench: append failed: " + describe(res.error()));
      version = res->last_version;
      after(copy, *res);
    }
  });
  return start;
}

run_result finish(latency_probe& probe, const bench_params& p,
                  clock::time_point start, std::string backend,
                  std::string note) {
  run_result r;
  r.backend = std::move(backend);
  r.scenario = "relay";
  r.writers = p.writers;
  r.batch = 1;
  r.latencies_us = probe.latencies();
  r.events = static_cast<int64_t>(r.latencies_us.size());
  r.seconds = std::chrono::duration<double>(probe.last_arrival - start).count();
  r.note = std::move(note);
  return r;
}

} // namespace

run_result run_relay_broker(caf::actor_system& sys, const bench_params& params,
                            const std::string& url) {
  auto p = params;
  p.batch = 1;
  sqlite_config sc;
  sc.path = relay_db(p);
  sc.synchronous = p.sync;
  sc.outbox = true;
  auto store = make_sqlite_event_store(sc);
  if (!store)
    fail("esbench: " + describe(store.error()));
  auto outbox = make_sqlite_outbox(sc.path);
  if (!outbox)
    fail("esbench: " + describe(outbox.error()));
  broker_bus_settings settings;
  settings.name = bus_name(url);
  settings.block = std::chrono::milliseconds(100);
  auto bus = open_broker_bus(sys, url, settings);
  if (!bus)
    fail("esbench: cannot open the bus at " + masked_url(url) + ": "
         + describe(bus.error()));
  latency_probe probe;
  (*bus)->subscribe_to_all_events([&](const recorded_event& ev) {
    probe.arrive(ev);
    return caf::error{};
  });
  if (auto err = (*bus)->start())
    fail("esbench: " + describe(err));
  outbox_relay_config relay_cfg;
  relay_cfg.outbox = *outbox;
  relay_cfg.store = *store;
  relay_cfg.bus = *bus;
  relay_cfg.poll_interval = std::chrono::milliseconds(5);
  // Before the clock, one event through the bus, so that the consumer is
  // connected (a Kafka group has formed) when the appends start.
  if (auto err = (*bus)->publish(make_bench_events(1)))
    fail("esbench: warm-up publish failed: " + describe(err));
  if (!probe.wait_for(1))
    fail("esbench: the warm-up event did not arrive");
  auto relay = spawn_outbox_relay(sys, relay_cfg);
  auto start = append_all(**store, p,
                          [&](const event_batch& batch, const append_result&) {
                            probe.commit(batch);
                          });
  auto total
    = static_cast<size_t>(p.writers)
      * static_cast<size_t>(std::max<int64_t>(1, p.events / p.writers));
  if (!probe.wait_for(total + 1))
    fail("esbench: not every relayed event arrived");
  caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  static_cast<void>((*bus)->stop(std::chrono::seconds(10)));
  bus->reset();
  drop_bus(url, settings.name);
  auto broker = broker_of(url);
  return finish(probe, p, start, broker + "-relay",
                "(SQLite outbox -> relay -> " + broker
                  + " -> consumer group -> handler; latency from commit)");
}

run_result run_relay_in_process(caf::actor_system& sys,
                                const bench_params& params) {
  auto p = params;
  p.batch = 1;
  sqlite_config sc;
  sc.path = relay_db(p);
  sc.synchronous = p.sync;
  auto store = make_sqlite_event_store(sc);
  if (!store)
    fail("esbench: " + describe(store.error()));
  auto bus = make_in_process_bus(sys);
  latency_probe probe;
  bus->subscribe_to_all_events([&](const recorded_event& ev) {
    probe.arrive(ev);
    return caf::error{};
  });
  auto start = append_all(
    **store, p, [&](const event_batch& batch, const append_result& res) {
      probe.commit(batch);
      recorded_events out;
      auto pos = res.first_position;
      for (const auto& ev : batch) {
        recorded_event x;
        static_cast<event_data&>(x) = ev;
        x.global_position = pos++;
        out.push_back(std::move(x));
      }
      if (auto err = bus->publish(std::move(out)))
        fail("esbench: " + describe(err));
    });
  auto total
    = static_cast<size_t>(p.writers)
      * static_cast<size_t>(std::max<int64_t>(1, p.events / p.writers));
  if (!probe.wait_for(total))
    fail("esbench: not every published event arrived");
  return finish(probe, p, start, "in-process",
                "(SQLite append, then the in-process bus -> handler; "
                "latency from commit)");
}

} // namespace es::bench
