// The broker bus contract suite: what every bus bridge to a broker (Redis,
// RabbitMQ, Kafka, or another one built on es/bus/detail/broker_bus.hpp)
// must do beyond the bus contract (es/testing/bus_contract.hpp): dead
// letters and a supervisor for its consumers.
//
// Header-only, for Catch2 v2: include it in one file of a test program
// after naming the fixtures,
//
//   #define ES_BROKER_BUS_CONTRACT_FIXTURES my_broker_fixture
//   #include "es/testing/broker_bus_contract.hpp"
//
// A fixture is a default-constructible class with
//
//   caf::actor_system& system();
//   es::event_bus_ptr open_broker(uint32_t max_retries);
//   es::supervisor_actor supervisor(const es::event_bus_ptr& bus);
//
// `open_broker` returns a new bus on a namespace of its own, not started,
// that dead-letters an event after `max_retries` retries of a failing
// handler; `supervisor` returns the supervisor of the bus's consumers.
//
// What the suite holds every broker bus to:
// - an event whose handler keeps failing is delivered 1 + max_retries
//   times, then lands in the dead letters with its event and its error,
//   while the others go on; replayed once the handler is fixed, it reaches
//   the handler and leaves the dead letters;
// - a consumer that crashes is restarted by the bus's supervisor with the
//   group's subscriptions, and the group goes on; a stop is no crash.
#pragma once

#ifndef ES_BROKER_BUS_CONTRACT_FIXTURES
#  error                                                                       \
    "define ES_BROKER_BUS_CONTRACT_FIXTURES first: see the top of this file"
#endif

#include "es/bus/errors.hpp"
#include "es/bus/event_bus.hpp"
#include "es/supervision/actors.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>

namespace es::testing::bus_contract {

TEMPLATE_TEST_CASE("a poison event is dead-lettered after its retries and "
                   "replayed once fixed",
                   "[broker-bus-contract]", ES_BROKER_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open_broker(2);
  auto events = make_events(1, 5);
  auto poison = events[2].event_id;
  std::atomic<bool> broken{true};
  std::atomic<int> poison_attempts{0};
  collector handled;
  bus->subscribe_to_all_events([&](const recorded_event& ev) -> caf::error {
    if (ev.event_id == poison && broken) {
      ++poison_attempts;
      return caf::make_error(bus_errc::handler_failed,
                             std::string{"cannot handle this one"});
    }
    handled.add(ev);
    return caf::none;
  });
  require_started(*bus);
  publish_all(*bus, events);
  REQUIRE(handled.wait_for(4));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  // The first delivery and two retries.
  CHECK(poison_attempts.load() == 3);
  auto dlq = bus->dead_letters();
  REQUIRE(dlq);
  REQUIRE(eventually([&] {
    auto n = dlq->count();
    return n && *n == 1;
  }));
  auto letters = dlq->list(10);
  INFO((letters ? std::string{} : describe(letters.error())));
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  auto letter = letters->front();
  REQUIRE(letter.event.has_value());
  CHECK(*letter.event == events[2]);
  CHECK(letter.error.find("3 times") != std::string::npos);
  CHECK_FALSE(letter.failed_at.empty());
  CHECK_FALSE(letter.group.empty());
  // Fixed: the replay reaches the handler, and the dead letter is gone.
  broken = false;
  auto replayed = dlq->replay(letter.id);
  REQUIRE(replayed);
  CHECK(*replayed);
  REQUIRE(handled.wait_for(5));
  CHECK(handled.ids() == ids_of(events));
  CHECK(*dlq->count() == 0);
  CHECK_FALSE(*dlq->replay(letter.id));
  CHECK(*dlq->replay_all() == 0);
}

TEMPLATE_TEST_CASE("the supervisor restarts a consumer that crashed, and "
                   "the group goes on",
                   "[broker-bus-contract]", ES_BROKER_BUS_CONTRACT_FIXTURES) {
  TestType fx;
  auto bus = fx.open_broker(3);
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto first = make_events(2, 2);
  publish_all(*bus, first);
  REQUIRE(seen.wait_for(first.size()));
  auto sup = fx.supervisor(bus);
  REQUIRE(sup);
  auto consumer = consumer_of(fx.system(), sup, "default");
  REQUIRE(consumer);
  caf::anon_send_exit(consumer, caf::exit_reason::kill);
  REQUIRE(eventually([&] {
    return bus->stats().consumer_restarts == 1;
  }));
  // The new consumer takes the subscriptions of the old one.
  auto second = make_events(2, 2, 5);
  publish_all(*bus, second);
  REQUIRE(seen.wait_for(first.size() + second.size()));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  auto kids = children_of(fx.system(), sup);
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].name == "consumer:default");
  CHECK(kids[0].state == child_state::running);
  CHECK(kids[0].restarts == 1);
  CHECK_FALSE(kids[0].last_error.empty());
  // A stop is no crash: the consumer is not restarted after it.
  REQUIRE_FALSE(bus->stop(arrival_timeout));
  kids = children_of(fx.system(), sup);
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].state == child_state::stopped);
  CHECK(bus->stats().consumer_restarts == 1);
}

} // namespace es::testing::bus_contract
