// What the RabbitMQ bus does beyond the bus contract: clear errors for bad
// addresses, credentials and configurations, dead letters for foreign
// messages (listed, discarded), events published before any consumer ran,
// a broker restart, queue info (dead letters of failing handlers and the
// supervisor are in the broker bus contract suite).
#include "es/bus/errors.hpp"
#include "es/rabbitmq/rabbitmq.hpp"
#include "es/store/errors.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "rabbitmq_fixture.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

using namespace es;
using namespace es::test;
using namespace es::testing::bus_contract;
using Catch::Contains;

namespace {

struct rabbitmq_bus_test {
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  test_topology topology;
  rabbitmq_bus_config cfg;

  rabbitmq_bus_test() : sys(init(sys_cfg)) {
    cfg.url = test_amqp_url_text();
    cfg.exchange_name = topology.exchange();
    cfg.block = std::chrono::milliseconds(100);
    topology.groups({"default"});
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_rabbitmq_module(c);
    c.set("scheduler.max-threads", 2);
    return c;
  }

  event_bus_ptr open(rabbitmq_bus_config c) {
    auto bus = make_rabbitmq_bus(sys, c);
    if (!bus)
      FAIL("cannot open a RabbitMQ bus: " << describe(bus.error()) << "; "
                                          << rabbitmq_instructions);
    return *bus;
  }

  event_bus_ptr open() {
    return open(cfg);
  }
};

} // namespace

TEST_CASE("a bad address, password or configuration is refused at once",
          "[rabbitmq][bus][bad-input]") {
  caf::actor_system_config sys_cfg;
  add_rabbitmq_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{sys_cfg};
  auto good = test_amqp_url();
  auto refused = [&](rabbitmq_bus_config c, rabbitmq_errc code) {
    INFO(c.url << " " << c.exchange_type);
    auto bus = make_rabbitmq_bus(sys, c);
    REQUIRE_FALSE(bus);
    CHECK(has_code(bus.error(), code));
    CHECK_THAT(describe(bus.error()), !Contains(good.password));
  };
  auto with_url = [](std::string url) {
    rabbitmq_bus_config c;
    c.url = std::move(url);
    c.connect_timeout = std::chrono::milliseconds(500);
    return c;
  };
  refused(
    with_url("amqp://" + good.user + ":" + good.password + "@127.0.0.1:1/%2f"),
    rabbitmq_errc::connection_failed);
  refused(with_url("amqp://" + good.user + ":not-the-password@" + good.host
                   + ":" + std::to_string(good.port) + "/%2f"),
          rabbitmq_errc::authentication_failed);
  refused(with_url("amqp://" + good.user + ":" + good.password + "@" + good.host
                   + ":" + std::to_string(good.port) + "/no-such-vhost"),
          rabbitmq_errc::authentication_failed);
  refused(with_url("http://localhost"), rabbitmq_errc::invalid_url);
  auto c = with_url(test_amqp_url_text());
  c.exchange_type = "x-nonsense";
  refused(c, rabbitmq_errc::invalid_config);
  c.exchange_type = "direct"; // without binding keys
  refused(c, rabbitmq_errc::invalid_config);
  c.exchange_type = "topic";
  c.queue_type = "stream-ish";
  refused(c, rabbitmq_errc::invalid_config);
}

TEST_CASE_METHOD(rabbitmq_bus_test,
                 "a queue declared otherwise before is a clear server_error",
                 "[rabbitmq][bus][bad-input]") {
  {
    auto classic = open();
    static_cast<void>(classic);
  }
  auto c = cfg;
  c.queue_type = "quorum";
  auto bus = make_rabbitmq_bus(sys, c);
  REQUIRE_FALSE(bus);
  CHECK(has_code(bus.error(), rabbitmq_errc::server_error));
  CHECK_THAT(describe(bus.error()), Contains("PRECONDITION_FAILED"));
}

TEST_CASE_METHOD(rabbitmq_bus_test,
                 "messages that are not envelopes become dead letters and "
                 "the rest go on",
                 "[rabbitmq][bus][bad-input]") {
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  // Another program publishes to the exchange.
  auto raw = connect_test_rabbitmq();
  detail::amqp::outgoing junk;
  junk.exchange = cfg.exchange_name;
  junk.routing_key = "Order.Junk";
  junk.body = "{not json";
  junk.message_id = "junk-1";
  REQUIRE_FALSE(raw.publish(junk));
  auto events = make_events(1, 3);
  publish_all(*bus, events);
  REQUIRE(seen.wait_for(3));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  CHECK(seen.ids() == ids_of(events));
  auto dlq = bus->dead_letters();
  REQUIRE(dlq);
  REQUIRE(eventually([&] {
    return *dlq->count() == 1;
  }));
  auto letters = dlq->list(10);
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  const auto& letter = letters->front();
  CHECK(letter.raw == "{not json");
  CHECK_FALSE(letter.event.has_value());
  CHECK_THAT(letter.error, Contains("not an event envelope"));
  CHECK(letter.group == "default");
  // Listing gives them back: still there, still one.
  CHECK(*dlq->count() == 1);
  auto replayed = dlq->replay(letter.id);
  REQUIRE_FALSE(replayed);
  CHECK(has_code(replayed.error(), store_errc::invalid_argument));
  CHECK(*dlq->count() == 1);
  auto info = read_rabbitmq_bus_info(cfg);
  REQUIRE(info);
  CHECK(info->dead_letters == 1);
  REQUIRE(info->groups.size() == 1);
  CHECK(info->groups[0].name == cfg.exchange_name + ".default");
  CHECK(info->groups[0].messages == 0);
  CHECK(info->groups[0].consumers == 1);
  CHECK(*dlq->discard(letter.id));
  CHECK(*dlq->count() == 0);
  CHECK_FALSE(*dlq->discard(letter.id));
}

TEST_CASE_METHOD(rabbitmq_bus_test,
                 "events published before any consumer ran wait in the "
                 "group's queue",
                 "[rabbitmq][bus]") {
  auto events = make_events(2, 3);
  {
    auto publisher = open();
    publish_all(*publisher, events);
  }
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  REQUIRE(seen.wait_for(events.size()));
  CHECK(seen.ids() == ids_of(events));
}

TEST_CASE_METHOD(rabbitmq_bus_test,
                 "an idle publisher keeps its connection: heartbeats are "
                 "serviced on a timer",
                 "[rabbitmq][bus][heartbeat]") {
  cfg.heartbeat = std::chrono::seconds(1);
  auto bus = open();
  publish_all(*bus, make_events(1, 1));
  // Idle for four heartbeat intervals (the scenario, not a wait for
  // something): the broker drops a connection that misses two of them,
  // and rabbitmq-c answers heartbeats only inside its calls.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  publish_all(*bus, make_events(1, 1, 2));
  auto st = bus->stats();
  CHECK(st.broker_reconnects == 0);
  CHECK(st.events_published == 2);
}

TEST_CASE_METHOD(rabbitmq_bus_test, "the bus goes on after a broker restart",
                 "[rabbitmq][bus][faults][restart]") {
  const char* restart = std::getenv("ES_TEST_RABBITMQ_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("ES_TEST_RABBITMQ_RESTART is not set (scripts/test sets it to "
         "`scripts/rabbitmq restart`)");
  auto bus = open();
  collector seen;
  bus->subscribe_to_all_events(seen.handler());
  require_started(*bus);
  auto before = make_events(2, 3);
  publish_all(*bus, before);
  REQUIRE(seen.wait_for(before.size()));
  REQUIRE(std::system(restart) == 0);
  // The publisher and the consumer both lost their connections; durable
  // queues and persistent messages survive the restart. A publish may
  // fail while the broker comes back (retryable); the caller retries, as
  // the outbox relay does.
  auto after = make_events(2, 3, 7);
  REQUIRE(eventually(
    [&] {
      auto err = bus->publish(after);
      if (err)
        CHECK(has_code(err, bus_errc::broker_unavailable));
      return !err;
    },
    std::chrono::seconds(60)));
  REQUIRE(seen.wait_for(before.size() + after.size()));
  auto all = ids_of(before);
  auto more = ids_of(after);
  all.insert(more.begin(), more.end());
  CHECK(seen.ids() == all);
}
