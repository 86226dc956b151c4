// The event bus contract suite: every event bus (the in-process bus and the
// broker bridges) must pass every test here, and the author of another bus
// can run it against theirs.
//
// Header-only and written for Catch2 v2, like the store contract suite
// (es/testing/store_contract.hpp): include it in one file of a test
// program after naming the fixtures,
//
//   #include "my_bus_fixture.hpp"
//   #define ES_BUS_CONTRACT_FIXTURES my_bus_fixture
//   #include "es/testing/bus_contract.hpp"
//
// and link es::testing, Catch2::Catch2WithMain and the bus. A fixture is a
// default-constructible class with
//
//   es::event_bus_ptr open();
//   es::event_bus_ptr peer(const es::event_bus_ptr& bus);
//
// `open` returns a new bus on a namespace of its own (a fresh stream,
// exchange or topic), not started; `peer` returns another bus on the same
// namespace, as a second process would open it (the in-process bus returns
// `bus` itself). The fixture lives for one test and may clean up in its
// destructor. Test names end in the fixture's name.
//
// What the suite holds every bus to:
// - every published event reaches the subscribers that want it, with every
//   field intact, at least once;
// - a subscription that is alone in its group sees each aggregate's events
//   in publish order;
// - subscriptions get the types they ask for;
// - a failing handler does not keep the others from their events;
// - every consumer group gets every event; the members of one group share
//   them, none handled by two members;
// - an unsubscribed handler gets nothing more;
// - stats count what was published and handled;
// - after `stop`, no event is lost: publishes are refused with
//   `bus_closed` or wait in the broker until `start`.
#pragma once

#ifndef ES_BUS_CONTRACT_FIXTURES
#  error "define ES_BUS_CONTRACT_FIXTURES first: see the top of this file"
#endif

#include "es/bus/errors.hpp"
#include "es/bus/event_bus.hpp"
#include "es/store/errors.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace es::testing::bus_contract {

TEMPLATE_TEST_CASE("every published event reaches a subscriber unchanged",
                   "[bus-contract]", ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto events = make_events(3, 10);
  events[0].tenant_id = uuid::random();
  events[1].metadata.clear();
  publish_all(*bus, events);
  REQUIRE(seen.wait_for(events.size()));
  std::map<uuid, recorded_event> got;
  for (auto& ev : seen.events())
    got.emplace(ev.event_id, ev);
  for (const auto& ev : events) {
    INFO("event at position " << ev.global_position);
    REQUIRE(got.count(ev.event_id) == 1);
    CHECK(got[ev.event_id] == ev);
  }
}

TEMPLATE_TEST_CASE("each aggregate's events arrive in order", "[bus-contract]",
                   ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto events = make_events(4, 25);
  publish_all(*bus, events, 7);
  REQUIRE(seen.wait_for(events.size()));
  // First arrivals only: a redelivery may repeat an event later.
  std::set<uuid> first;
  std::map<uuid, std::vector<int64_t>> versions;
  for (const auto& ev : seen.events())
    if (first.insert(ev.event_id).second)
      versions[ev.aggregate_id].push_back(ev.aggregate_version);
  REQUIRE(versions.size() == 4);
  std::vector<int64_t> expected;
  for (int64_t v = 1; v <= 25; ++v)
    expected.push_back(v);
  for (const auto& [id, vs] : versions)
    CHECK(vs == expected);
}

TEMPLATE_TEST_CASE("subscriptions get the types they ask for", "[bus-contract]",
                   ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector only_a;
  collector all;
  auto a_and_c = std::make_shared<typed_collector>(
    std::vector<std::string>{"TypeA", "TypeC"});
  bus->subscribe("TypeA", only_a.handler());
  bus->subscribe_all(a_and_c);
  bus->subscribe_to_all_events(all.handler());
  require_started(*bus);
  auto events = make_events(2, 9, 1, {"TypeA", "TypeB", "TypeC"});
  publish_all(*bus, events);
  auto count = [&](std::initializer_list<const char*> types) {
    size_t n = 0;
    for (const auto& ev : events)
      for (auto t : types)
        n += ev.event_type == t ? 1 : 0;
    return n;
  };
  REQUIRE(all.wait_for(events.size()));
  REQUIRE(only_a.wait_for(count({"TypeA"})));
  REQUIRE(a_and_c->seen.wait_for(count({"TypeA", "TypeC"})));
  // Everything published was handled by now: nothing of another type came.
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  for (const auto& ev : only_a.events())
    CHECK(ev.event_type == "TypeA");
  for (const auto& ev : a_and_c->seen.events())
    CHECK(ev.event_type != "TypeB");
  CHECK(only_a.distinct() == count({"TypeA"}));
}

TEMPLATE_TEST_CASE("a failing handler does not hold back the others",
                   "[bus-contract]", ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector good;
  std::atomic<int> failures{0};
  bus->subscribe_to_all_events([&](const recorded_event&) {
    ++failures;
    return caf::make_error(bus_errc::handler_failed,
                           std::string{"this handler always fails"});
  });
  bus->subscribe_to_all_events([](const recorded_event&) -> caf::error {
    throw std::runtime_error("this handler always throws");
  });
  bus->subscribe_to_all_events(good.handler());
  require_started(*bus);
  auto events = make_events(2, 5);
  publish_all(*bus, events);
  REQUIRE(good.wait_for(events.size()));
  CHECK(good.ids() == ids_of(events));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  CHECK(failures.load() >= static_cast<int>(events.size()));
  CHECK(bus->stats().handler_errors >= 2 * events.size());
}

TEMPLATE_TEST_CASE("every consumer group gets every event", "[bus-contract]",
                   ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector g1;
  collector g2;
  subscribe_options o1;
  o1.group = "contract-g1";
  subscribe_options o2;
  o2.group = "contract-g2";
  bus->subscribe_to_all_events(g1.handler(), o1);
  bus->subscribe_to_all_events(g2.handler(), o2);
  require_started(*bus);
  auto events = make_events(5, 4);
  publish_all(*bus, events);
  REQUIRE(g1.wait_for(events.size()));
  REQUIRE(g2.wait_for(events.size()));
  CHECK(g1.ids() == ids_of(events));
  CHECK(g2.ids() == ids_of(events));
}

TEMPLATE_TEST_CASE("the members of one group share its events, none twice",
                   "[bus-contract]", ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  auto other = fx.peer(bus);
  collector a;
  collector b;
  subscribe_options opts;
  opts.group = "contract-shared";
  bus->subscribe_to_all_events(a.handler(), opts);
  other->subscribe_to_all_events(b.handler(), opts);
  require_started(*bus);
  if (other != bus)
    require_started(*other);
  // The group forms first. While it does (on Kafka, a rebalance moves
  // partitions as the second member joins), a batch handled by one member
  // may come again to the next owner of its partition: at-least-once. So
  // events go out in rounds until both members handle some, and only the
  // events after that are held to "none twice".
  auto in_both_members = [&] {
    return a.distinct() > 0 && b.distinct() > 0;
  };
  int64_t position = 1;
  for (int round = 0; round < 30 && !in_both_members(); ++round) {
    auto warm_up = make_events(8, 1, position);
    position += static_cast<int64_t>(warm_up.size());
    publish_all(*bus, warm_up);
    eventually(in_both_members, std::chrono::seconds(1));
  }
  REQUIRE(in_both_members());
  // Many aggregates, so that every way of sharing gives both members some.
  auto events = make_events(32, 2, position);
  auto expected = ids_of(events);
  publish_all(*bus, events, 4);
  auto counted = [&](const collector& c) {
    std::vector<uuid> result;
    for (const auto& ev : c.events())
      if (expected.count(ev.event_id) > 0)
        result.push_back(ev.event_id);
    return result;
  };
  std::set<uuid> both;
  REQUIRE(eventually([&] {
    auto in_a = counted(a);
    auto in_b = counted(b);
    both = std::set<uuid>(in_a.begin(), in_a.end());
    both.insert(in_b.begin(), in_b.end());
    return both.size() >= expected.size();
  }));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  if (other != bus)
    REQUIRE_FALSE(other->drain(arrival_timeout));
  CHECK(both == expected);
  auto a_events = counted(a);
  auto b_events = counted(b);
  std::set<uuid> in_a(a_events.begin(), a_events.end());
  std::set<uuid> in_b(b_events.begin(), b_events.end());
  std::vector<uuid> twice;
  std::set_intersection(in_a.begin(), in_a.end(), in_b.begin(), in_b.end(),
                        std::back_inserter(twice));
  CHECK(twice.empty());
  CHECK_FALSE(in_a.empty());
  CHECK_FALSE(in_b.empty());
  // Within one member, no event twice either.
  CHECK(a_events.size() == in_a.size());
  CHECK(b_events.size() == in_b.size());
}

TEMPLATE_TEST_CASE("an unsubscribed handler gets nothing more",
                   "[bus-contract]", ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector leaving;
  collector staying;
  auto id = bus->subscribe_to_all_events(leaving.handler());
  bus->subscribe_to_all_events(staying.handler());
  require_started(*bus);
  auto first = make_events(1, 5);
  publish_all(*bus, first);
  REQUIRE(leaving.wait_for(5));
  REQUIRE(staying.wait_for(5));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  CHECK(bus->unsubscribe(id));
  CHECK_FALSE(bus->unsubscribe(id));
  auto second = make_events(1, 5, 6);
  publish_all(*bus, second);
  REQUIRE(staying.wait_for(10));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  CHECK(leaving.ids() == ids_of(first));
}

TEMPLATE_TEST_CASE("stats count what was published and handled",
                   "[bus-contract]", ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector one;
  collector two;
  bus->subscribe_to_all_events(one.handler());
  bus->subscribe_to_all_events(two.handler());
  require_started(*bus);
  auto before = bus->stats();
  CHECK(before.subscribers == 2);
  CHECK(before.handler_errors == 0);
  auto events = make_events(3, 4);
  publish_all(*bus, events);
  REQUIRE(one.wait_for(events.size()));
  REQUIRE(two.wait_for(events.size()));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  auto after = bus->stats();
  CHECK(after.events_published - before.events_published == events.size());
  CHECK(after.handlers_invoked - before.handlers_invoked >= 2 * events.size());
  CHECK(after.handler_errors == 0);
  CHECK(after.deliveries_in_flight == 0);
}

TEMPLATE_TEST_CASE("a stopped bus loses nothing", "[bus-contract]",
                   ES_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto first = make_events(2, 5);
  publish_all(*bus, first);
  REQUIRE(seen.wait_for(first.size()));
  auto err = bus->stop(std::chrono::seconds(20));
  INFO(describe(err));
  REQUIRE_FALSE(err);
  // While stopped, a publish is refused (nobody would get it) or waits in
  // the broker; either way no handler runs.
  auto second = make_events(2, 5, 11);
  auto refused = bus->publish(second);
  if (refused)
    CHECK(has_code(refused, bus_errc::bus_closed));
  CHECK(seen.distinct() == first.size());
  require_started(*bus);
  if (refused)
    publish_all(*bus, second);
  REQUIRE(seen.wait_for(first.size() + second.size()));
  auto all = ids_of(first);
  auto more = ids_of(second);
  all.insert(more.begin(), more.end());
  CHECK(seen.ids() == all);
}

} // namespace es::testing::bus_contract
