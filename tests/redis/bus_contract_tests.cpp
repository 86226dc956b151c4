// The bus contract suites (es/testing/bus_contract.hpp and
// broker_bus_contract.hpp) on the Redis Streams
// bus, against the test server: each test gets a stream of its own, and a
// peer is a second bus on the same stream, as another process would be.
#include "es/redis/redis.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "redis_fixture.hpp"

#include <memory>
#include <string>
#include <vector>

namespace {

struct redis_bus_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  /// Deletes the streams of the test at the end.
  es::test::test_keys keys;
  std::string prefix;

  redis_bus_fixture() : sys(init(cfg)) {
    // nop
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    es::add_redis_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    return cfg;
  }

  es::event_bus_ptr make(uint32_t max_retries = 3) {
    es::redis_bus_config c;
    c.max_retries = max_retries;
    c.url = std::getenv("ES_TEST_REDIS_URL") != nullptr
              ? std::getenv("ES_TEST_REDIS_URL")
              : "";
    static_cast<void>(es::test::test_redis_url()); // FAILs with instructions
    c.stream_prefix = prefix;
    c.block = std::chrono::milliseconds(100);
    auto bus = es::make_redis_bus(sys, c);
    if (!bus)
      FAIL("cannot open a Redis bus: " << es::describe(bus.error()) << "; "
                                       << es::test::redis_instructions);
    return *bus;
  }

  es::event_bus_ptr open() {
    prefix = keys("bus");
    keys("bus:stream");
    keys("bus:dlq");
    return make();
  }

  es::event_bus_ptr peer(const es::event_bus_ptr&) {
    return make();
  }

  caf::actor_system& system() {
    return sys;
  }

  es::event_bus_ptr open_broker(uint32_t max_retries) {
    prefix = keys("bus");
    keys("bus:stream");
    keys("bus:dlq");
    return make(max_retries);
  }

  es::supervisor_actor supervisor(const es::event_bus_ptr& bus) {
    return es::redis_bus_supervisor(bus);
  }
};

} // namespace

#define ES_BUS_CONTRACT_FIXTURES redis_bus_fixture
#include "es/testing/bus_contract.hpp"
#define ES_BROKER_BUS_CONTRACT_FIXTURES redis_bus_fixture
#include "es/testing/broker_bus_contract.hpp"
