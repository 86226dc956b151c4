// The outbox relay over the PostgreSQL outbox and the in-process bus: rows
// go out once and in order, a refusing bus keeps them, a row that keeps
// failing is given up and reported, partitions split the work, two relays
// never publish the same row, and a relay that dies between publish and
// mark publishes again (consumers dedupe).
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/bus/type_ids.hpp"
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <set>

using namespace es;
using namespace es::test;
using Catch::Contains;

namespace {

/// What the bus delivered, in order.
struct delivered {
  std::mutex mtx;
  recorded_events events;

  void add(const recorded_event& ev) {
    std::lock_guard guard{mtx};
    events.push_back(ev);
  }

  recorded_events get() {
    std::lock_guard guard{mtx};
    return events;
  }
};

struct relay_fixture {
  postgres_fixture pg;
  postgres_config cfg;
  event_store_ptr store;
  outbox_ptr outbox;
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  event_bus_ptr bus;
  delivered seen;
  std::vector<outbox_relay_actor> relays;

  relay_fixture() : sys(init(sys_cfg)) {
    cfg = pg.fresh_config();
    cfg.outbox = true;
    auto s = make_postgres_event_store(cfg);
    if (!s)
      FAIL("cannot open the PostgreSQL store: " << describe(s.error())
                                                << " (start the server with "
                                                   "`scripts/pg start`)");
    store = *s;
    auto ob = make_postgres_outbox(cfg);
    REQUIRE(ob);
    outbox = *ob;
    bus = make_in_process_bus(sys);
    bus->subscribe_to_all_events([this](const recorded_event& ev) {
      seen.add(ev);
      return caf::error{};
    });
  }

  ~relay_fixture() {
    for (auto& r : relays)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_bus_module(c);
    c.set("scheduler.max-threads", 2);
    return c;
  }

  /// A relay that works only when asked (no polling).
  outbox_relay_actor relay(outbox_partition part = {}, int32_t retries = 10) {
    outbox_relay_config rc;
    rc.outbox = outbox;
    rc.store = store;
    rc.bus = bus;
    rc.partition = part;
    rc.max_retries = retries;
    rc.batch_size = 16;
    rc.poll_interval = caf::timespan{0};
    auto r = spawn_outbox_relay(sys, rc);
    REQUIRE(r);
    relays.push_back(r);
    return r;
  }

  caf::expected<uint64_t> flush(const outbox_relay_actor& r) {
    caf::scoped_actor self{sys};
    caf::expected<uint64_t> result{uint64_t{0}};
    self->request(r, std::chrono::seconds(60), caf::flush_atom_v)
      .receive(
        [&](uint64_t n) {
          result = n;
        },
        [&](caf::error& err) {
          result = std::move(err);
        });
    return result;
  }

  outbox_relay_status status(const outbox_relay_actor& r) {
    caf::scoped_actor self{sys};
    outbox_relay_status result;
    self->request(r, std::chrono::seconds(60), stats_atom_v)
      .receive(
        [&](outbox_relay_status& s) {
          result = std::move(s);
        },
        [&](caf::error& err) {
          FAIL("no status: " << describe(err));
        });
    return result;
  }

  /// Appends `per_stream` events to each of `streams` new streams,
  /// interleaved (one append per event); returns the streams.
  std::vector<stream_id> append(int streams, int per_stream) {
    std::vector<stream_id> ids;
    for (int i = 0; i < streams; ++i)
      ids.push_back(new_stream());
    for (int v = 0; v < per_stream; ++v)
      for (auto& s : ids)
        REQUIRE(store->append(s, expected_version::any(), make_batch(s, 1)));
    return ids;
  }

  outbox_counts counts() {
    auto c = outbox->counts();
    REQUIRE(c);
    return *c;
  }
};

std::vector<int64_t> positions(const recorded_events& events) {
  std::vector<int64_t> result;
  for (const auto& ev : events)
    result.push_back(ev.global_position);
  return result;
}

} // namespace

TEST_CASE_METHOD(relay_fixture,
                 "the relay publishes every outbox row once, in order",
                 "[postgres][relay]") {
  append(3, 10);
  auto r = relay();
  auto n = flush(r);
  REQUIRE(n);
  CHECK(*n == 30);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  auto got = positions(seen.get());
  std::vector<int64_t> expected;
  for (int64_t p = 1; p <= 30; ++p)
    expected.push_back(p);
  CHECK(got == expected);
  auto c = counts();
  CHECK(c.published == 30);
  CHECK(c.pending == 0);
  CHECK_FALSE(c.oldest_waiting.has_value());
  auto st = status(r);
  CHECK(st.published == 30);
  CHECK(st.pending == 0);
  CHECK(st.oldest_waiting_ms == 0);
  // Nothing left: a second flush publishes nothing again.
  n = flush(r);
  REQUIRE(n);
  CHECK(*n == 0);
  CHECK(seen.get().size() == 30);
}

TEST_CASE_METHOD(relay_fixture,
                 "a bus that refuses keeps the rows until it takes them",
                 "[postgres][relay][faults]") {
  auto r = relay();
  REQUIRE_FALSE(bus->stop(std::chrono::seconds(10)));
  append(1, 5);
  auto n = flush(r);
  REQUIRE_FALSE(n);
  CHECK(has_code(n.error(), bus_errc::bus_closed));
  auto c = counts();
  CHECK(c.failed == 5);
  CHECK(c.published == 0);
  REQUIRE(c.oldest_waiting.has_value());
  auto st = status(r);
  CHECK(st.publish_failures == 1);
  CHECK(st.failed == 5);
  CHECK_THAT(st.last_error, Contains("bus_closed"));
  CHECK(seen.get().empty());
  // Back: the failed rows go first, in order, with what came meanwhile.
  REQUIRE_FALSE(bus->start());
  append(1, 3);
  n = flush(r);
  REQUIRE(n);
  CHECK(*n == 8);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  CHECK(positions(seen.get()) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  c = counts();
  CHECK(c.published == 8);
  CHECK(c.failed == 0);
}

TEST_CASE_METHOD(relay_fixture,
                 "a row that keeps failing is given up and reported",
                 "[postgres][relay][faults]") {
  auto r = relay({}, 2);
  REQUIRE_FALSE(bus->stop(std::chrono::seconds(10)));
  append(3, 1);
  CHECK_FALSE(flush(r));
  CHECK_FALSE(flush(r));
  // Two failed publishes each: no longer claimed.
  auto n = flush(r);
  REQUIRE(n);
  CHECK(*n == 0);
  auto st = status(r);
  CHECK(st.given_up == 3);
  CHECK(st.failed == 3);
  CHECK(st.oldest_waiting_ms >= 0);
  // The rest goes on once the bus is back; the given-up rows stay failed
  // for an operator.
  REQUIRE_FALSE(bus->start());
  append(1, 2);
  n = flush(r);
  REQUIRE(n);
  CHECK(*n == 2);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  CHECK(positions(seen.get()) == std::vector<int64_t>{4, 5});
  auto c = counts();
  CHECK(c.failed == 3);
  CHECK(c.published == 2);
}

TEST_CASE_METHOD(relay_fixture,
                 "relays of disjoint partitions publish everything once, "
                 "each aggregate in order",
                 "[postgres][relay]") {
  auto streams = append(16, 6);
  outbox_partition p0{0, 2};
  outbox_partition p1{1, 2};
  auto r0 = relay(p0);
  auto r1 = relay(p1);
  // Both at once.
  caf::scoped_actor self{sys};
  uint64_t total = 0;
  for (auto* r : {&r0, &r1})
    self->send(*r, caf::flush_atom_v);
  for (int i = 0; i < 2; ++i)
    self->receive(
      [&](uint64_t n) {
        total += n;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      },
      caf::after(std::chrono::seconds(60)) >>
        [&] {
          FAIL("a relay did not answer");
        });
  CHECK(total == 96);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  auto got = seen.get();
  std::set<uuid> ids;
  std::map<uuid, std::vector<int64_t>> versions;
  for (const auto& ev : got) {
    CHECK(ids.insert(ev.event_id).second);
    versions[ev.aggregate_id].push_back(ev.aggregate_version);
  }
  CHECK(ids.size() == 96);
  size_t in_p0 = 0;
  for (const auto& s : streams) {
    CHECK(versions[s.aggregate_id] == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
    in_p0 += p0.contains(s.aggregate_id) ? 6 : 0;
  }
  CHECK(status(r0).published == in_p0);
  CHECK(status(r1).published == 96 - in_p0);
}

TEST_CASE_METHOD(relay_fixture, "two relays never publish the same row",
                 "[postgres][relay]") {
  append(10, 30);
  auto a = relay();
  auto b = relay();
  caf::scoped_actor self{sys};
  for (auto* r : {&a, &b})
    self->send(*r, caf::flush_atom_v);
  uint64_t total = 0;
  for (int i = 0; i < 2; ++i)
    self->receive(
      [&](uint64_t n) {
        total += n;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      },
      caf::after(std::chrono::seconds(60)) >>
        [&] {
          FAIL("a relay did not answer");
        });
  CHECK(total == 300);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  std::map<uuid, int> copies;
  for (const auto& ev : seen.get())
    ++copies[ev.event_id];
  CHECK(copies.size() == 300);
  for (const auto& [id, n] : copies)
    CHECK(n == 1);
  CHECK(status(a).published + status(b).published == 300);
}

TEST_CASE_METHOD(relay_fixture,
                 "a relay that dies between publish and mark publishes again",
                 "[postgres][relay][faults]") {
  append(2, 5);
  event_deduper dedupe;
  std::vector<uuid> handled;
  std::mutex mtx;
  bus->subscribe_to_all_events([&](const recorded_event& ev) {
    std::lock_guard guard{mtx};
    if (!dedupe.seen(ev.event_id)) {
      handled.push_back(ev.event_id);
      dedupe.remember(ev.event_id);
    }
    return caf::error{};
  });
  {
    // A relay's steps up to the publish, then a crash: the claim ends
    // without its marks.
    auto claim = outbox->claim(100);
    REQUIRE(claim);
    recorded_events batch;
    for (const auto& e : (*claim)->entries()) {
      auto ev = store->find_event(e.event_id);
      REQUIRE(ev);
      REQUIRE(*ev);
      batch.push_back(**ev);
    }
    REQUIRE(batch.size() == 10);
    REQUIRE_FALSE(bus->publish(batch));
  }
  CHECK(counts().pending == 10);
  auto n = flush(relay());
  REQUIRE(n);
  CHECK(*n == 10);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  // Every event went out twice; the deduping handler ran each once.
  CHECK(seen.get().size() == 20);
  std::lock_guard guard{mtx};
  CHECK(handled.size() == 10);
}

TEST_CASE_METHOD(relay_fixture, "a relay refuses what cannot work",
                 "[postgres][relay][bad-input]") {
  outbox_relay_config rc;
  rc.store = store;
  rc.bus = bus;
  CHECK_FALSE(spawn_outbox_relay(sys, rc));
  append(1, 1);
  for (auto part : {outbox_partition{2, 2}, outbox_partition{0, 0},
                    outbox_partition{0, 257}}) {
    auto n = flush(relay(part));
    REQUIRE_FALSE(n);
    CHECK(has_code(n.error(), store_errc::invalid_argument));
  }
  // Nothing was lost on the way.
  CHECK(counts().pending == 1);
}
