// The whole path between processes, for any broker: appends to PostgreSQL
// write outbox rows, a relay publishes them to the broker, a consumer group
// hands them to a handler. A broker restart in the middle loses nothing the
// store committed, and with dedupe by event id each event is handled once,
// in its aggregate's order. Used by tests/redis and tests/rabbitmq.
#pragma once

#include "es/brokers/brokers.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/postgres/postgres.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace es::test {

/// Appends 100 events to 10 streams of a fresh PostgreSQL store with an
/// outbox, runs `restart` (a shell command restarting the broker) half way,
/// and checks that the relay got every event through the bus at `url`
/// (named `name` at the broker) to a handler, once after dedupe, in order.
inline void relay_across_broker_restart(const std::string& url,
                                        const std::string& name,
                                        const std::string& restart) {
  postgres_fixture pg;
  auto pg_cfg = pg.fresh_config();
  pg_cfg.outbox = true;
  auto store = make_postgres_event_store(pg_cfg);
  if (!store)
    FAIL("cannot open the PostgreSQL store: " << describe(store.error())
                                              << " (scripts/pg start)");
  auto outbox = make_postgres_outbox(pg_cfg);
  REQUIRE(outbox);
  caf::actor_system_config sys_cfg;
  add_broker_modules(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  broker_bus_settings settings;
  settings.name = name;
  settings.block = std::chrono::milliseconds(100);
  auto bus = open_broker_bus(sys, url, settings);
  if (!bus)
    FAIL("cannot open the bus at " << masked_url(url) << ": "
                                   << describe(bus.error()));
  // The handler dedupes by event id, as at-least-once delivery asks.
  std::mutex mtx;
  std::condition_variable cv;
  event_deduper dedupe;
  std::map<uuid, std::vector<int64_t>> versions;
  size_t handled = 0;
  size_t deliveries = 0;
  (*bus)->subscribe_to_all_events([&](const recorded_event& ev) {
    std::lock_guard guard{mtx};
    ++deliveries;
    if (!dedupe.seen(ev.event_id)) {
      dedupe.remember(ev.event_id);
      versions[ev.aggregate_id].push_back(ev.aggregate_version);
      ++handled;
      cv.notify_all();
    }
    return caf::error{};
  });
  REQUIRE_FALSE((*bus)->start());
  outbox_relay_config rc;
  rc.outbox = *outbox;
  rc.store = *store;
  rc.bus = *bus;
  rc.batch_size = 16;
  rc.poll_interval = std::chrono::milliseconds(20);
  rc.backoff.initial_delay = std::chrono::milliseconds(20);
  rc.backoff.max_delay = std::chrono::milliseconds(200);
  auto relay = spawn_outbox_relay(sys, rc);
  REQUIRE(relay);
  std::vector<stream_id> streams;
  for (int i = 0; i < 10; ++i)
    streams.push_back(new_stream());
  auto append_round = [&](int rounds) {
    for (int r = 0; r < rounds; ++r)
      for (auto& s : streams)
        REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 1)));
  };
  append_round(5);
  REQUIRE(std::system(restart.c_str()) == 0);
  append_round(5);
  {
    std::unique_lock guard{mtx};
    REQUIRE(cv.wait_for(guard, std::chrono::seconds(60), [&] {
      return handled >= 100;
    }));
    CHECK(handled == 100);
    CHECK(deliveries >= 100);
    std::vector<int64_t> expected;
    for (int64_t v = 1; v <= 10; ++v)
      expected.push_back(v);
    for (const auto& s : streams)
      CHECK(versions[s.aggregate_id] == expected);
  }
  caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  // The relay marked every row published (polled, with a deadline).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int64_t published = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto counts = (*outbox)->counts();
    REQUIRE(counts);
    published = counts->published;
    if (published == 100)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(published == 100);
}

} // namespace es::test
