// A member of a broker bus's consumer group in a process of its own, for
// the kill -9 tests: it prints "ready", then "handled <event id>" for each
// event, and after STALL events it stalls inside its handler (printing
// "stalled"), holding its batch unacknowledged until it is killed.
//
// Usage: bus_member URL NAME GROUP STALL
//   URL: any URL es::brokers opens (redis://..., amqp://...); NAME: the
//   Redis stream prefix or the RabbitMQ exchange.
#include "es/brokers/brokers.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: bus_member URL NAME GROUP STALL\n");
    return 2;
  }
  caf::actor_system_config cfg;
  es::add_broker_modules(cfg);
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  es::broker_bus_settings settings;
  settings.name = argv[2];
  settings.group = argv[3];
  settings.block = std::chrono::milliseconds(100);
  auto stall = std::atol(argv[4]);
  auto bus = es::open_broker_bus(sys, argv[1], settings);
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
