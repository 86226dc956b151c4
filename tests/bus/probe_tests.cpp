#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <catch2/catch.hpp>

#include "bus_test_helpers.hpp"

using namespace es;
using namespace es::test;

TEST_CASE_METHOD(bus_fixture, "probe: actor replying with a value",
                 "[probe]") {
  auto target = sys.spawn([](caf::event_based_actor*) {
    return caf::behavior{
      [](deliver_atom, const recorded_events& evs) -> int32_t {
        return static_cast<int32_t>(evs.size());
      },
    };
  });
  bus->subscribe_actor(target, {});
  require_ok(bus->publish(make_recorded(1, 3)));
  require_ok(bus->drain(drain_timeout));
  auto st = bus->stats();
  CHECK(st.handler_errors == 0);
  CHECK(st.handlers_invoked == 3);
}

TEST_CASE_METHOD(bus_fixture, "probe: unsubscribe with stalled actor",
                 "[probe]") {
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  auto target = sys.spawn([held](caf::event_based_actor* self) {
    return caf::behavior{
      [self, held](deliver_atom, const recorded_events&) {
        held->push_back(self->make_response_promise());
      },
    };
  });
  auto id = bus->subscribe_actor(target, {});
  require_ok(bus->publish(make_recorded(1, 3)));
  auto err = bus->drain(std::chrono::milliseconds{100});
  CHECK(err);
  CHECK(bus->unsubscribe(id));
  auto st = bus->stats();
  CHECK(st.deliveries_in_flight == 0);
  err = bus->drain(std::chrono::milliseconds{500});
  INFO(describe(err));
  CHECK_FALSE(err);
  held->clear();
  caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
}
