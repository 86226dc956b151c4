// The bus contract suites (es/testing/bus_contract.hpp and
// broker_bus_contract.hpp) on the Kafka bus,
// against a librdkafka mock cluster per test; a peer is a second bus on
// the same topic, as another process would be.
#include "es/kafka/kafka.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "mock_cluster.hpp"

#include <memory>
#include <string>

namespace {

struct kafka_bus_fixture {
  // The cluster outlives the actor system, whose consumers leave their
  // groups as they end.
  es::test::mock_cluster cluster;
  caf::actor_system_config cfg;
  caf::actor_system sys;

  kafka_bus_fixture() : sys(init(cfg)) {
    cluster.topic("contract.events", 4);
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    es::add_kafka_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    return cfg;
  }

  es::event_bus_ptr make(uint32_t max_retries = 3) {
    es::kafka_bus_config c;
    c.max_retries = max_retries;
    c.bootstrap_servers = cluster.bootstrap();
    c.topic_prefix = "contract";
    c.block = std::chrono::milliseconds(100);
    c.session_timeout = std::chrono::milliseconds(6000);
    auto bus = es::make_kafka_bus(sys, c);
    if (!bus)
      FAIL("cannot open a Kafka bus: " << es::describe(bus.error()));
    return *bus;
  }

  es::event_bus_ptr open() {
    return make();
  }

  es::event_bus_ptr peer(const es::event_bus_ptr&) {
    return make();
  }

  caf::actor_system& system() {
    return sys;
  }

  es::event_bus_ptr open_broker(uint32_t max_retries) {
    return make(max_retries);
  }

  es::supervisor_actor supervisor(const es::event_bus_ptr& bus) {
    return es::kafka_bus_supervisor(bus);
  }
};

} // namespace

#define ES_BUS_CONTRACT_FIXTURES kafka_bus_fixture
#include "es/testing/bus_contract.hpp"
#define ES_BROKER_BUS_CONTRACT_FIXTURES kafka_bus_fixture
#include "es/testing/broker_bus_contract.hpp"
