// Store fixtures that go through the store actor and the blocking facade,
// so the store contract suite also covers them.
#pragma once

#include "es/actors/blocking.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "store_fixtures.hpp"

namespace es::test {

struct threaded_config : caf::actor_system_config {
  threaded_config() {
    add_actors_module(*this);
    set("scheduler.max-threads", 2);
  }
};

/// Wraps another fixture's store in a store actor and the blocking facade.
template <class Inner>
struct actor_fixture_of {
  threaded_config cfg;
  caf::actor_system sys{cfg};
  Inner inner;
  std::vector<store_actor> actors;

  ~actor_fixture_of() {
    caf::scoped_actor self{sys};
    for (auto& a : actors)
      self->send_exit(a, caf::exit_reason::user_shutdown);
  }

  event_store_ptr open(std::shared_ptr<const event_registry> registry = {},
                       store_limits limits = {}) {
    auto store = inner.open(std::move(registry), limits);
    actors.push_back(spawn_store_actor(sys, store));
    return make_actor_event_store(sys, actors.back(), std::chrono::seconds(30));
  }
};

struct actor_memory_fixture : actor_fixture_of<memory_fixture> {};
struct actor_sqlite_fixture : actor_fixture_of<sqlite_fixture> {};

} // namespace es::test
