#include "bus_scenarios.hpp"

#include "es/bus/envelope.hpp"
#include "es/redis/redis.hpp"

#include <hiredis/hiredis.h>

#include <caf/actor_system.hpp>

#include <memory>

namespace es::bench {

namespace {

/// `n` recorded events over 100 aggregates, as a store would return them.
recorded_events make_events(int64_t n) {
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

std::string stream_prefix() {
  return "esbench:" + uuid::random().to_string();
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

} // namespace

run_result run_redis_bus_publish(caf::actor_system& sys,
                                 const bench_params& params,
                                 const std::string& url) {
  auto events = make_events(params.events);
  redis_bus_config cfg;
  cfg.url = url;
  cfg.stream_prefix = stream_prefix();
  auto bus = make_redis_bus(sys, cfg);
  if (!bus)
    fail("esbench: cannot open the Redis bus: " + describe(bus.error()));
  run_result r;
  r.backend = "redis";
  r.scenario = "bus-publish";
  r.events = params.events;
  r.writers = 1;
  r.batch = params.batch;
  r.note = "(es::redis bus facade, envelopes encoded in the call)";
  auto batch = static_cast<size_t>(std::max(1, params.batch));
  auto start = clock::now();
  for (size_t i = 0; i < events.size(); i += batch) {
    recorded_events part(
      events.begin() + static_cast<ptrdiff_t>(i),
      events.begin() + static_cast<ptrdiff_t>(std::min(events.size(), i + batch)));
    auto t = clock::now();
    if (auto err = (*bus)->publish(std::move(part)))
      fail("esbench: publish failed: " + describe(err));
    r.latencies_us.push_back(micros_since(t));
  }
  r.seconds = micros_since(start) / 1e6;
  auto parsed = parse_redis_url(url);
  auto* ctx = connect_raw(*parsed);
  drop(ctx, cfg.stream_prefix);
  redisFree(ctx);
  return r;
}

run_result run_raw_hiredis_xadd(const bench_params& params,
                                const std::string& url) {
  auto parsed = parse_redis_url(url);
  if (!parsed)
    fail("esbench: bad --redis-url: " + describe(parsed.error()));
  auto events = make_events(params.events);
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

} // namespace es::bench
