// The bus contract suite (es/testing/bus_contract.hpp) on the in-process
// bus. The broker bridges run the same suite against their brokers.
#include "es/bus/in_process_bus.hpp"
#include "es/bus/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <memory>

namespace {

struct in_process_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;

  in_process_fixture() : sys(init(cfg)) {
    // nop
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    es::add_bus_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    return cfg;
  }

  es::event_bus_ptr open() {
    return es::make_in_process_bus(sys);
  }

  /// One process, one bus: its peer is itself.
  es::event_bus_ptr peer(const es::event_bus_ptr& bus) {
    return bus;
  }
};

} // namespace

#define ES_BUS_CONTRACT_FIXTURES in_process_fixture
#include "es/testing/bus_contract.hpp"
