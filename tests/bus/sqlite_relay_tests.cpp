// The SQLite outbox and the relay over it: rows are written with appends
// (and not for refused ones), published once and in order, kept when the
// bus refuses, claimed by one relay at a time, and claimable again once a
// dropped claim's time is up.
#include "es/bus/errors.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/bus/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <mutex>
#include <set>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

struct sqlite_relay_fixture {
  temp_dir dir;
  std::string path = dir.file("events.db");
  event_store_ptr store;
  outbox_ptr outbox;
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  event_bus_ptr bus;
  std::mutex mtx;
  recorded_events seen;

  sqlite_relay_fixture() : sys(init(sys_cfg)) {
    sqlite_config cfg;
    cfg.path = path;
    cfg.outbox = true;
    auto s = make_sqlite_event_store(cfg);
    REQUIRE(s);
    store = *s;
    auto ob = make_sqlite_outbox(path, std::chrono::milliseconds(200));
    REQUIRE(ob);
    outbox = *ob;
    bus = make_in_process_bus(sys);
    bus->subscribe_to_all_events([this](const recorded_event& ev) {
      std::lock_guard guard{mtx};
      seen.push_back(ev);
      return caf::error{};
    });
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_bus_module(c);
    c.set("scheduler.max-threads", 2);
    return c;
  }

  std::vector<int64_t> positions() {
    std::lock_guard guard{mtx};
    std::vector<int64_t> result;
    for (const auto& ev : seen)
      result.push_back(ev.global_position);
    return result;
  }

  caf::expected<uint64_t> flush(outbox_partition part = {},
                                int32_t retries = 10) {
    outbox_relay_config rc;
    rc.outbox = outbox;
    rc.store = store;
    rc.bus = bus;
    rc.partition = part;
    rc.max_retries = retries;
    rc.poll_interval = caf::timespan{0};
    auto relay = spawn_outbox_relay(sys, rc);
    REQUIRE(relay);
    caf::scoped_actor self{sys};
    caf::expected<uint64_t> result{uint64_t{0}};
    self->request(relay, std::chrono::seconds(60), caf::flush_atom_v)
      .receive(
        [&](uint64_t n) {
          result = n;
        },
        [&](caf::error& err) {
          result = std::move(err);
        });
    self->send_exit(relay, caf::exit_reason::user_shutdown);
    REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
    return result;
  }

  outbox_counts counts() {
    auto c = outbox->counts();
    REQUIRE(c);
    return *c;
  }
};

} // namespace

TEST_CASE_METHOD(sqlite_relay_fixture,
                 "SQLite appends write outbox rows the relay publishes once",
                 "[sqlite][outbox][relay]") {
  std::vector<stream_id> streams{new_stream(), new_stream(), new_stream()};
  for (int v = 0; v < 4; ++v)
    for (auto& s : streams)
      REQUIRE(store->append(s, expected_version::any(), make_batch(s, 1)));
  // A refused append writes no row.
  REQUIRE_FALSE(store->append(streams[0], expected_version::no_stream(),
                              make_batch(streams[0], 1)));
  auto c = counts();
  CHECK(c.pending == 12);
  REQUIRE(c.oldest_waiting.has_value());
  auto n = flush();
  REQUIRE(n);
  CHECK(*n == 12);
  std::vector<int64_t> expected;
  for (int64_t p = 1; p <= 12; ++p)
    expected.push_back(p);
  CHECK(positions() == expected);
  c = counts();
  CHECK(c.published == 12);
  CHECK(c.pending == 0);
  CHECK_FALSE(c.oldest_waiting.has_value());
  n = flush();
  REQUIRE(n);
  CHECK(*n == 0);
  // Published rows go after a while.
  CHECK(*outbox->cleanup(std::chrono::seconds(3600)) == 0);
  CHECK(*outbox->cleanup(std::chrono::seconds(-1)) == 12);
}

TEST_CASE_METHOD(sqlite_relay_fixture,
                 "a refusing bus keeps the SQLite rows until it takes them",
                 "[sqlite][outbox][relay][faults]") {
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 3)));
  REQUIRE_FALSE(bus->stop(std::chrono::seconds(10)));
  auto n = flush();
  REQUIRE_FALSE(n);
  CHECK(has_code(n.error(), bus_errc::bus_closed));
  CHECK(counts().failed == 3);
  REQUIRE_FALSE(bus->start());
  n = flush();
  REQUIRE(n);
  CHECK(*n == 3);
  CHECK(positions() == std::vector<int64_t>{1, 2, 3});
  CHECK(counts().published == 3);
}

TEST_CASE_METHOD(sqlite_relay_fixture,
                 "a claim holds its rows until it commits or its time is up",
                 "[sqlite][outbox][faults]") {
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 4)));
  auto a = outbox->claim(10);
  REQUIRE(a);
  CHECK((*a)->entries().size() == 4);
  // Another relay gets nothing meanwhile.
  auto b = outbox->claim(10);
  REQUIRE(b);
  CHECK((*b)->entries().empty());
  // The first relay dies without committing: once the claim's time is up
  // (200 ms here), the rows can be claimed again; polled with a deadline.
  a->reset();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t again = 0;
  while (std::chrono::steady_clock::now() < deadline && again == 0) {
    auto c = outbox->claim(10);
    REQUIRE(c);
    again = (*c)->entries().size();
    if (again == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(again == 4);
}

TEST_CASE_METHOD(sqlite_relay_fixture,
                 "SQLite outbox partitions split the rows",
                 "[sqlite][outbox][relay]") {
  std::vector<stream_id> streams;
  for (int i = 0; i < 12; ++i) {
    streams.push_back(new_stream());
    REQUIRE(store->append(streams.back(), expected_version::any(),
                          make_batch(streams.back(), 2)));
  }
  outbox_partition p0{0, 3};
  size_t in_p0 = 0;
  for (const auto& s : streams)
    in_p0 += p0.contains(s.aggregate_id) ? 2 : 0;
  auto n = flush(p0);
  REQUIRE(n);
  CHECK(*n == in_p0);
  for (uint32_t k = 1; k < 3; ++k)
    REQUIRE(flush(outbox_partition{k, 3}));
  CHECK(counts().published == 24);
  std::set<int64_t> unique;
  for (auto p : positions())
    CHECK(unique.insert(p).second);
  CHECK(unique.size() == 24);
  auto bad = outbox->claim(10, 10, outbox_partition{3, 3});
  REQUIRE_FALSE(bad);
  CHECK(has_code(bad.error(), store_errc::invalid_argument));
}
