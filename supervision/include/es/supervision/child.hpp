// A supervised child: how it is started and what its supervisor reports.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace es {

/// Spawns (or respawns) one supervised child. A child that keeps state
/// elsewhere (a projection's checkpoint) resumes from it when respawned.
/// Children are dynamically typed: a supervisor restarts actors of any
/// protocol, and whoever supervises a child of a known protocol casts the
/// handle it gets back (the projection coordinator does).
using child_factory = std::function<caf::actor(caf::actor_system&)>;

enum class child_state : uint8_t { running, restarting, failed, stopped };

const char* to_string(child_state x);

/// What a supervisor reports about one child.
struct child_status {
  std::string name;
  child_state state = child_state::running;
  uint32_t restarts = 0;
  std::string last_error;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, child_status& x) {
    return f(caf::meta::type_name("es.child_status"), x.name, x.state,
             x.restarts, x.last_error);
  }
};

} // namespace es
