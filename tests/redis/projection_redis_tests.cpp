// A projection actor that catches up from the store and then takes its live
// events from the Redis bus: no gap and no duplicate at the switch, and
// events the bus brings twice are applied once.
#include "es/projections/projection.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/redis/redis.hpp"
#include "es/store/memory_event_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>

#include "redis_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>

using namespace es;
using namespace es::test;

namespace {

/// Records the positions it handles; waits for a count.
class positions_projection : public projection {
public:
  std::string name() const override {
    return "positions";
  }

  caf::error handle(const recorded_event& ev) override {
    std::lock_guard guard{mtx_};
    seen_.push_back(ev.global_position);
    cv_.notify_all();
    return caf::none;
  }

  bool wait_for(size_t n) {
    std::unique_lock guard{mtx_};
    return cv_.wait_for(guard, std::chrono::seconds(30), [&] {
      return seen_.size() >= n;
    });
  }

  std::vector<int64_t> seen() {
    std::lock_guard guard{mtx_};
    return seen_;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<int64_t> seen_;
};

/// Appends `n` events to `store` and returns them as recorded.
recorded_events append(event_store& store, int n) {
  recorded_events result;
  for (int i = 0; i < n; ++i) {
    auto s = new_stream();
    auto res = store.append(s, expected_version::no_stream(), make_batch(s, 1));
    REQUIRE(res);
    auto page = store.read_stream(s, {});
    REQUIRE(page);
    result.push_back(page->events.front());
  }
  return result;
}

} // namespace

TEST_CASE("a projection catches up from the store, then goes live on Redis",
          "[redis][projections]") {
  caf::actor_system_config sys_cfg;
  add_redis_module(sys_cfg);
  add_projections_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  test_keys keys;
  redis_bus_config rc;
  static_cast<void>(test_redis_url());
  rc.url = std::getenv("ES_TEST_REDIS_URL");
  rc.stream_prefix = keys("proj");
  keys("proj:stream");
  keys("proj:dlq");
  rc.block = std::chrono::milliseconds(100);
  auto bus = make_redis_bus(sys, rc);
  if (!bus)
    FAIL("cannot open a Redis bus: " << describe(bus.error()) << "; "
                                     << redis_instructions);
  REQUIRE_FALSE((*bus)->start());
  auto store = make_memory_event_store();
  // Before the projection starts: only in the store.
  append(*store, 20);
  // Written while it may still be catching up: in the store and on the
  // bus, so the switch sees them from both sides.
  auto proj = std::make_shared<positions_projection>();
  subscription_config cfg;
  cfg.store = store;
  cfg.bus = (*bus)->handle();
  cfg.page_size = 7;
  auto actor = spawn_projection_actor(sys, proj, cfg);
  REQUIRE(actor);
  auto both = append(*store, 20);
  REQUIRE_FALSE((*bus)->publish(both));
  REQUIRE(proj->wait_for(40));
  // Live only on the bus, and once more (a redelivery).
  auto live = append(*store, 10);
  REQUIRE_FALSE((*bus)->publish(live));
  REQUIRE_FALSE((*bus)->publish(live));
  REQUIRE(proj->wait_for(50));
  REQUIRE_FALSE((*bus)->drain(std::chrono::seconds(20)));
  std::vector<int64_t> expected;
  for (int64_t p = 1; p <= 50; ++p)
    expected.push_back(p);
  CHECK(proj->seen() == expected);
  // The live events came through Redis (the actor answered deliveries).
  CHECK((*bus)->stats().handlers_invoked >= 10);
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
}
