// The bus contract suites (es/testing/bus_contract.hpp and
// broker_bus_contract.hpp) on the RabbitMQ bus,
// against the test broker: each test gets an exchange of its own, and a
// peer is a second bus on the same exchange, as another process would be.
#include "es/rabbitmq/rabbitmq.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "rabbitmq_fixture.hpp"

#include <memory>
#include <string>

namespace {

struct rabbitmq_bus_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  /// Deletes the exchanges and queues of the test at the end.
  es::test::test_topology topology;

  rabbitmq_bus_fixture() : sys(init(cfg)) {
    // The contract's groups: the default and the ones it names.
    topology.groups(
      {"default", "contract-g1", "contract-g2", "contract-shared"});
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    es::add_rabbitmq_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    return cfg;
  }

  es::event_bus_ptr make(uint32_t max_retries = 3) {
    es::rabbitmq_bus_config c;
    c.max_retries = max_retries;
    c.url = es::test::test_amqp_url_text();
    c.exchange_name = topology.exchange();
    c.block = std::chrono::milliseconds(100);
    auto bus = es::make_rabbitmq_bus(sys, c);
    if (!bus)
      FAIL("cannot open a RabbitMQ bus: " << es::describe(bus.error()) << "; "
                                          << es::test::rabbitmq_instructions);
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
    return es::rabbitmq_bus_supervisor(bus);
  }
};

} // namespace

#define ES_BUS_CONTRACT_FIXTURES rabbitmq_bus_fixture
#include "es/testing/bus_contract.hpp"
#define ES_BROKER_BUS_CONTRACT_FIXTURES rabbitmq_bus_fixture
#include "es/testing/broker_bus_contract.hpp"
