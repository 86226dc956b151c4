// A member of a Redis consumer group in a process of its own, for the
// kill -9 test: it prints "ready", then "handled <event id>" for each event,
// and after STALL events it stalls inside its handler (printing "stalled"),
// holding its batch unacknowledged until it is killed.
//
// Usage: redis_member URL STREAM_PREFIX GROUP CONSUMER STALL
#include "es/redis/redis.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: redis_member URL PREFIX GROUP CONSUMER "
                         "STALL\n");
    return 2;
  }
  caf::actor_system_config cfg;
  es::add_redis_module(cfg);
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  es::redis_bus_config rc;
  rc.url = argv[1];
  rc.stream_prefix = argv[2];
  rc.consumer_group = argv[3];
  rc.consumer_name = argv[4];
  rc.block = std::chrono::milliseconds(100);
  auto stall = std::atol(argv[5]);
  auto bus = es::make_redis_bus(sys, rc);
  if (!bus) {
    std::fprintf(stderr, "%s\n", es::describe(bus.error()).c_str());
    return 1;
  }
  std::atomic<long> handled{0};
  (*bus)->subscribe_to_all_events(
    [&](const es::recorded_event& ev) -> caf::error {
      if (++handled > stall) {
        std::printf("stalled\n");
        std::fflush(stdout);
        for (;;)
          std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      std::printf("handled %s\n", ev.event_id.to_string().c_str());
      std::fflush(stdout);
      return caf::none;
    },
    es::subscribe_options{10'000, true, {}});
  if (auto err = (*bus)->start()) {
    std::fprintf(stderr, "%s\n", es::describe(err).c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}
