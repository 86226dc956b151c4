// A member of a consumer group killed with SIGKILL in the middle of a
// batch: its entries stay pending in Redis, and another member reclaims
// and handles every one of them.
#include "es/redis/redis.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "child_process.hpp"
#include "redis_fixture.hpp"
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <thread>

using namespace es;
using namespace es::test;
using namespace es::testing::bus_contract;

TEST_CASE("another member reclaims the batch of a member killed mid-batch",
          "[redis][bus][faults]") {
  auto url_text = std::string{std::getenv("ES_TEST_REDIS_URL") != nullptr
                                ? std::getenv("ES_TEST_REDIS_URL")
                                : ""};
  static_cast<void>(test_redis_url()); // FAILs with instructions
  test_keys keys;
  auto prefix = keys("kill");
  keys("kill:stream");
  keys("kill:dlq");
  // The doomed member: handles two events of its batch, then hangs in the
  // third until it is killed.
  child_process doomed{{ES_BUS_MEMBER, url_text, prefix, "workers", "2"}};
  REQUIRE(doomed.line() == "ready");
  caf::actor_system_config sys_cfg;
  add_redis_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  redis_bus_config rc;
  rc.url = url_text;
  rc.stream_prefix = prefix;
  rc.consumer_group = "workers";
  rc.block = std::chrono::milliseconds(100);
  auto publisher = make_redis_bus(sys, rc);
  REQUIRE(publisher);
  auto events = make_events(5, 2);
  publish_all(**publisher, events);
  // Its output: the events it handled (the first ones of a batch may have
  // been acknowledged in an earlier batch), then "stalled".
  std::set<uuid> handled_by_doomed;
  for (auto l = doomed.line(); !l.empty() && l != "stalled";
       l = doomed.line()) {
    REQUIRE(l.rfind("handled ", 0) == 0);
    handled_by_doomed.insert(*uuid::parse(l.substr(8)));
  }
  REQUIRE(handled_by_doomed.size() == 2);
  // Killed in the middle of a batch: that batch is not acknowledged.
  doomed.kill_now();
  auto raw = connect_test_redis();
  auto stream = rc.stream_prefix + ":stream";
  auto pending = must(raw, {"XPENDING", stream, "workers"})[0].integer();
  REQUIRE(pending >= 1);
  // A live member of the same group takes the batch over once it has been
  // idle for max_pending_time.
  auto c = rc;
  c.max_pending_time = std::chrono::milliseconds(300);
  auto live = make_redis_bus(sys, c);
  REQUIRE(live);
  collector seen;
  (*live)->subscribe_to_all_events(seen.handler());
  require_started(**live);
  REQUIRE(seen.wait_for(static_cast<size_t>(pending)));
  // Every event was handled by one of them (some by both: at least once),
  // and the group has nothing pending (polled, with a deadline).
  auto deadline = std::chrono::steady_clock::now() + arrival_timeout;
  int64_t left = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    left = must(raw, {"XPENDING", stream, "workers"})[0].integer();
    if (left == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(left == 0);
  auto all = seen.ids();
  all.insert(handled_by_doomed.begin(), handled_by_doomed.end());
  CHECK(all == ids_of(events));
  CHECK(seen.distinct() >= static_cast<size_t>(pending));
}
