// A member of a consumer group killed with SIGKILL in the middle of a
// batch: the broker hands its unacknowledged messages to another member of
// the group, which handles every one of them.
#include "es/rabbitmq/rabbitmq.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "child_process.hpp"
#include "rabbitmq_fixture.hpp"
#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace es;
using namespace es::test;
using namespace es::testing::bus_contract;

TEST_CASE("another member handles the batch of a member killed mid-batch",
          "[rabbitmq][bus][faults]") {
  auto url = test_amqp_url_text();
  test_topology topology;
  topology.groups({"workers", "default"});
  // The doomed member: handles two events of its batch, then hangs in the
  // third until it is killed.
  child_process doomed{
    {ES_BUS_MEMBER, url, topology.exchange(), "workers", "2"}};
  REQUIRE(doomed.line() == "ready");
  caf::actor_system_config sys_cfg;
  add_rabbitmq_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  rabbitmq_bus_config rc;
  rc.url = url;
  rc.exchange_name = topology.exchange();
  rc.consumer_group = "workers";
  rc.block = std::chrono::milliseconds(100);
  auto publisher = make_rabbitmq_bus(sys, rc);
  REQUIRE(publisher);
  auto events = make_events(5, 2);
  publish_all(**publisher, events);
  std::set<uuid> handled_by_doomed;
  for (auto l = doomed.line(); !l.empty() && l != "stalled";
       l = doomed.line()) {
    REQUIRE(l.rfind("handled ", 0) == 0);
    handled_by_doomed.insert(*uuid::parse(l.substr(8)));
  }
  REQUIRE(handled_by_doomed.size() == 2);
  // Killed in the middle of a batch: nothing of it was acknowledged, so
  // the broker puts it back when the connection drops.
  doomed.kill_now();
  auto live = make_rabbitmq_bus(sys, rc);
  REQUIRE(live);
  collector seen;
  (*live)->subscribe_to_all_events(seen.handler());
  require_started(**live);
  // The live member handles every event the doomed one did not (the
  // doomed one may have finished and acknowledged an earlier batch), and
  // those of its unfinished batch again: at least once.
  auto covered = [&] {
    auto all = seen.ids();
    all.insert(handled_by_doomed.begin(), handled_by_doomed.end());
    return all == ids_of(events);
  };
  REQUIRE(eventually(covered, arrival_timeout));
  CHECK(seen.distinct() >= events.size() - handled_by_doomed.size());
  // The queue ends empty (the live bus published nothing, so its drain
  // would not wait: poll the broker instead).
  CHECK(eventually([&] {
    auto info = read_rabbitmq_bus_info(rc);
    return info && info->groups.size() == 1 && info->groups[0].messages == 0;
  }));
}
