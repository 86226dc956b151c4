// What the Redis Streams bus does beyond the bus contract: clear errors for
// bad addresses and credentials, dead letters for foreign entries and for
// events whose handler keeps failing (listed, replayed, discarded), reclaim
// of what a dead consumer left pending, a server restart, stream info, a
// restarted consumer's own pending entries, the breaker around the
// publisher (dead letters of failing handlers and the supervisor are in
// the broker bus contract suite).
#include "es/bus/errors.hpp"
#include "es/redis/redis.hpp"
#include "es/store/errors.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "redis_fixture.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace es;
using namespace es::test;
using namespace es::testing::bus_contract;
using Catch::Contains;

namespace {

std::string url_text() {
  static_cast<void>(test_redis_url()); // FAILs with instructions
  return std::getenv("ES_TEST_REDIS_URL");
}

struct redis_bus_test {
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  test_keys keys;
  redis_bus_config cfg;

  redis_bus_test() : sys(init(sys_cfg)) {
    cfg.url = url_text();
    cfg.stream_prefix = keys("bus");
    keys("bus:stream");
    keys("bus:dlq");
    cfg.block = std::chrono::milliseconds(100);
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_redis_module(c);
    c.set("scheduler.max-threads", 2);
    return c;
  }

  event_bus_ptr open(redis_bus_config c) {
    auto bus = make_redis_bus(sys, c);
    if (!bus)
      FAIL("cannot open a Redis bus: " << describe(bus.error()) << "; "
                                       << redis_instructions);
    return *bus;
  }

  event_bus_ptr open() {
    return open(cfg);
  }

  std::string stream() const {
    return cfg.stream_prefix + ":stream";
  }
};

} // namespace

TEST_CASE("a bad address or password is refused at once",
          "[redis][bus][bad-input]") {
  caf::actor_system_config sys_cfg;
  add_redis_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{sys_cfg};
  auto good = test_redis_url();
  auto refused = [&](const std::string& url, redis_errc code) {
    INFO(url);
    redis_bus_config c;
    c.url = url;
    auto bus = make_redis_bus(sys, c);
    REQUIRE_FALSE(bus);
    CHECK(has_code(bus.error(), code));
    // The password never shows.
    CHECK_THAT(describe(bus.error()),
               !Contains(good.password.empty() ? "\x01" : good.password));
  };
  refused("redis://:" + good.password + "@127.0.0.1:1/0",
          redis_errc::connection_failed);
  refused("redis://:not-the-password@" + good.host + ":"
            + std::to_string(good.port) + "/0",
          redis_errc::authentication_failed);
  refused("http://127.0.0.1:6379", redis_errc::invalid_url);
  refused("rediss://" + good.host + ":" + std::to_string(good.port),
          redis_errc::tls_unsupported);
  redis_bus_config c;
  c.url = url_text();
  c.stream_prefix = "";
  CHECK_FALSE(make_redis_bus(sys, c));
}

TEST_CASE_METHOD(redis_bus_test,
                 "entries that are not envelopes become dead letters and "
                 "the rest go on",
                 "[redis][bus][bad-input]") {
  // Another program writes to the stream first.
  auto raw = connect_test_redis();
  must(raw, {"XADD", stream(), "*", "envelope", "{not json"});
  must(raw, {"XADD", stream(), "*", "something", "else"});
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto events = make_events(1, 3);
  publish_all(*bus, events);
  REQUIRE(seen.wait_for(3));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  CHECK(seen.ids() == ids_of(events));
  auto dlq = bus->dead_letters();
  REQUIRE(dlq);
  auto letters = dlq->list(10);
  REQUIRE(letters);
  REQUIRE(letters->size() == 2);
  CHECK((*letters)[0].raw == "{not json");
  CHECK_FALSE((*letters)[0].event.has_value());
  CHECK_THAT((*letters)[0].error, Contains("not an event envelope"));
  CHECK_THAT((*letters)[1].error, Contains("no field \"envelope\""));
  CHECK((*letters)[0].group == "default");
  // Nothing to replay in them: they can only be discarded.
  auto replayed = dlq->replay((*letters)[0].id);
  REQUIRE_FALSE(replayed);
  CHECK(has_code(replayed.error(), store_errc::invalid_argument));
  auto discarded = dlq->discard((*letters)[0].id);
  REQUIRE(discarded);
  CHECK(*discarded);
  CHECK(*dlq->count() == 1);
  CHECK_FALSE(*dlq->discard((*letters)[0].id));
  // Paging: after the first, nothing but the second.
  auto rest = dlq->list(10, (*letters)[0].id);
  REQUIRE(rest);
  CHECK(rest->size() == 1);
  auto info = read_redis_stream_info(cfg);
  REQUIRE(info);
  CHECK(info->length == 5);
  CHECK(info->dead_letters == 1);
  REQUIRE(info->groups.size() == 1);
  CHECK(info->groups[0].name == "default");
  CHECK(info->groups[0].pending == 0);
}

TEST_CASE_METHOD(redis_bus_test,
                 "another member reclaims what a dead consumer left pending",
                 "[redis][bus][faults]") {
  // A consumer reads four entries and dies before acknowledging them.
  auto raw = connect_test_redis();
  must(raw, {"XGROUP", "CREATE", stream(), "default", "0", "MKSTREAM"});
  auto publisher = open();
  auto events = make_events(2, 2);
  publish_all(*publisher, events);
  auto got = must(raw, {"XREADGROUP", "GROUP", "default", "dead-consumer",
                        "COUNT", "10", "STREAMS", stream(), ">"});
  REQUIRE(got.is_array());
  auto pending = must(raw, {"XPENDING", stream(), "default"});
  REQUIRE(pending[0].integer() == 4);
  // A live member takes them over once they have been idle long enough.
  auto c = cfg;
  c.max_pending_time = std::chrono::milliseconds(200);
  auto live = open(c);
  collector seen;
  live->subscribe_to_all_events(seen.handler());
  require_started(*live);
  REQUIRE(seen.wait_for(4));
  CHECK(seen.ids() == ids_of(events));
  // Acknowledged once handled: the group's pending count drops to zero
  // (polled, with a deadline).
  auto deadline = std::chrono::steady_clock::now() + arrival_timeout;
  int64_t left = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    left = must(raw, {"XPENDING", stream(), "default"})[0].integer();
    if (left == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(left == 0);
}

TEST_CASE_METHOD(redis_bus_test, "the bus goes on after a server restart",
                 "[redis][bus][faults][restart]") {
  const char* restart = std::getenv("ES_TEST_REDIS_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("ES_TEST_REDIS_RESTART is not set (scripts/test sets it to "
         "`scripts/redis restart`)");
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto before = make_events(1, 3);
  publish_all(*bus, before);
  REQUIRE(seen.wait_for(3));
  REQUIRE(std::system(restart) == 0);
  // The publisher and the consumer both lost their connections; the
  // publish reconnects, the consumer reconnects and creates its group
  // again (the test server keeps no data across restarts).
  auto after = make_events(1, 3, 4);
  publish_all(*bus, after);
  REQUIRE(seen.wait_for(6));
  auto all = ids_of(before);
  auto more = ids_of(after);
  all.insert(more.begin(), more.end());
  CHECK(seen.ids() == all);
}

TEST_CASE_METHOD(redis_bus_test,
                 "a consumer first handles what it read and never "
                 "acknowledged",
                 "[redis][bus][supervision]") {
  // A consumer of this name read two entries and went away (a crash, a
  // lost connection, a restarted process that keeps its name); reclaim
  // by others would take ten minutes.
  cfg.consumer_name = "the-same-name";
  cfg.max_pending_time = std::chrono::minutes(10);
  auto events = make_events(1, 4);
  {
    auto publisher = open();
    publish_all(*publisher, events);
  }
  auto raw = connect_test_redis();
  must(raw, {"XGROUP", "CREATE", stream(), "default", "0", "MKSTREAM"});
  auto read = must(raw, {"XREADGROUP", "GROUP", "default", "the-same-name",
                         "COUNT", "2", "STREAMS", stream(), ">"});
  REQUIRE(read.size() == 1);
  REQUIRE(read[0][1].size() == 2);
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  REQUIRE(seen.wait_for(events.size()));
  // In stream order: the two pending ones first.
  std::vector<uuid> order;
  for (const auto& ev : seen.events())
    order.push_back(ev.event_id);
  REQUIRE(order.size() == events.size());
  for (size_t i = 0; i < events.size(); ++i)
    CHECK(order[i] == events[i].event_id);
  // Acknowledged once handled (this bus published nothing, so its drain
  // would not wait: poll the group instead).
  CHECK(eventually([&] {
    return must(raw, {"XPENDING", stream(), "default"})[0].integer() == 0;
  }));
}

TEST_CASE_METHOD(redis_bus_test,
                 "the breaker refuses publishes at once while Redis is away, "
                 "and closes when it is back",
                 "[redis][bus][breaker]") {
  // A user of its own, switched off by the test: new logins fail while the
  // shared server stays up for every other test.
  auto admin = connect_test_redis();
  auto user = "es-test-" + uuid::random().to_string().substr(0, 8);
  auto base = test_redis_url();
  must(admin, {"ACL", "SETUSER", user, "on", ">user-pass", "~*", "+@all"});
  struct drop_user {
    std::string name;
    ~drop_user() {
      auto conn = detail::redis::connection::open(
        test_redis_url(), std::chrono::seconds{2}, std::chrono::seconds{5});
      if (conn)
        static_cast<void>(conn->command({"ACL", "DELUSER", name}));
    }
  } cleanup{user};
  cfg.url = "redis://" + user + ":user-pass@" + base.host + ":"
            + std::to_string(base.port) + "/" + std::to_string(base.db);
  cfg.breaker.failure_threshold = 3;
  cfg.breaker.recovery_timeout = std::chrono::milliseconds(300);
  auto bus = open();
  publish_all(*bus, make_events(1, 1));
  CHECK(bus->stats().broker_circuit == circuit_state::closed);
  // Away: logins refused, the bus's connection cut.
  must(admin, {"ACL", "SETUSER", user, "off"});
  must(admin, {"CLIENT", "KILL", "USER", user});
  for (int i = 0; i < 3; ++i) {
    auto err = bus->publish(make_events(1, 1, 10 + i));
    REQUIRE(err);
    CHECK(has_code(err, bus_errc::broker_unavailable));
    CHECK_THAT(describe(err), !Contains("circuit open"));
  }
  auto st = bus->stats();
  CHECK(st.publish_failures == 3);
  CHECK(st.broker_circuit == circuit_state::open);
  // Open: refused without trying, saying nothing was published.
  auto refused = bus->publish(make_events(1, 1, 20));
  REQUIRE(refused);
  CHECK(has_code(refused, bus_errc::broker_unavailable));
  CHECK_THAT(describe(refused), Contains("circuit open"));
  CHECK_THAT(describe(refused), Contains("nothing was published"));
  CHECK(bus->stats().publishes_rejected == 1);
  CHECK(bus->stats().publish_failures == 3);
  // Back: once the recovery time passed, a test publish closes it.
  must(admin, {"ACL", "SETUSER", user, "on"});
  auto last = make_events(1, 1, 30);
  REQUIRE(eventually([&] {
    auto err = bus->publish(last);
    return !err;
  }));
  st = bus->stats();
  CHECK(st.broker_circuit == circuit_state::closed);
  CHECK(st.broker_reconnects == 1);
  CHECK(st.publish_failures == 3);
  CHECK(st.events_published == 2);
  auto len = must(admin, {"XLEN", stream()});
  CHECK(len.integer() == 2);
}
