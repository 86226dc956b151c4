// redis_subscriber: subscribes to the orders demo's events on a Redis
// Streams bus and prints them until interrupted. docs/buses.md shows the
// part between the markers; tests/docs keeps the two the same.
//
// Usage: redis_subscriber URL [STREAM_PREFIX [GROUP]]
// Laid out as the docs show it (aligned comments, one-line members):
// clang-format off
#include "es/redis/redis.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <csignal>
#include <iostream>
#include <thread>

namespace {

volatile std::sig_atomic_t interrupted = 0;

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: redis_subscriber URL [STREAM_PREFIX [GROUP]]\n";
    return 2;
  }
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  auto handler = [](const es::recorded_event& ev) {
    std::cout << ev.global_position << " " << ev.event_type << " "
              << ev.aggregate_id.to_string() << '\n';
    return caf::error{};
  };
  // [redis-bus]
  es::add_redis_module(cfg);                 // in the actor system's config
  caf::actor_system sys{cfg};
  es::redis_bus_config rc;
  rc.url = argv[1];                          // redis://:secret@127.0.0.1:6379/0
  rc.stream_prefix = argc > 2 ? argv[2] : "orders"; // orders:stream, orders:dlq
  rc.consumer_group = argc > 3 ? argv[3] : "printer";
  auto bus = es::make_redis_bus(sys, rc);    // a bad URL, address or password fails here
  if (!bus) {
    std::cerr << es::describe(bus.error()) << '\n';
    return 1;
  }
  (*bus)->subscribe_to_all_events(handler);
  if (auto err = (*bus)->start()) {
    std::cerr << es::describe(err) << '\n';
    return 1;
  }
  // [/redis-bus]
  std::signal(SIGINT, [](int) { interrupted = 1; });
  std::signal(SIGTERM, [](int) { interrupted = 1; });
  while (interrupted == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  static_cast<void>((*bus)->stop(std::chrono::seconds(10)));
}
