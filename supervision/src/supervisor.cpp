#include "es/store/log.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <map>
#include <random>

namespace es {

const char* to_string(child_state x) {
  switch (x) {
    case child_state::running: return "running";
    case child_state::restarting: return "restarting";
    case child_state::failed: return "failed";
    case child_state::stopped: return "stopped";
  }
  return "?";
}

namespace {

struct child {
  std::shared_ptr<child_factory> factory;
  caf::actor actor;
  child_status status;
  /// Bumped on every supervise, stop and crash: a delayed restart carries
  /// the generation it was scheduled in and is ignored once it changed.
  uint64_t generation = 0;
};

struct supervisor_state {
  static inline const char* name = "es.supervisor";
  restart_policy policy;
  std::map<std::string, child> children;
  std::mt19937_64 rng{std::random_device{}()};

  ~supervisor_state() {
    // Monitoring alone would leave children running past the supervisor
    // and keep the actor system from shutting down: end them.
    for (auto& [name, c] : children)
      if (c.actor)
        caf::anon_send_exit(c.actor, caf::exit_reason::user_shutdown);
  }

  child* find(const caf::actor_addr& addr) {
    for (auto& [name, c] : children)
      if (c.actor && c.actor.address() == addr)
        return &c;
    return nullptr;
  }
};

/// The supervisor as implemented: its protocol and the restart timer it
/// sends itself.
using supervisor_impl_actor = supervisor_actor::extend<
  caf::reacts_to<restart_atom, std::string, uint64_t>>;

using supervisor_pointer
  = supervisor_impl_actor::stateful_pointer<supervisor_state>;

void start(supervisor_pointer self, child& c) {
  c.actor = (*c.factory)(self->system());
  if (!c.actor) {
    c.status.state = child_state::failed;
    c.status.last_error = "the factory returned no actor";
    return;
  }
  self->monitor(c.actor);
  c.status.state = child_state::running;
}

supervisor_impl_actor::behavior_type supervisor_impl(supervisor_pointer self,
                                                     restart_policy policy) {
  self->state.policy = policy;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto* c = st.find(dm.source);
    if (c == nullptr)
      return;
    c->actor = caf::actor{};
    if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown) {
      c->status.state = child_state::stopped;
      return;
    }
    c->status.last_error = describe(dm.reason);
    if (c->status.restarts >= st.policy.max_restarts) {
      c->status.state = child_state::failed;
      log(log_level::error,
          "supervised " + c->status.name + " failed "
            + std::to_string(c->status.restarts + 1)
            + " times; giving up: " + c->status.last_error,
          log_context{"supervision"});
      return;
    }
    c->status.state = child_state::restarting;
    auto delay = backoff_delay(st.policy.backoff, c->status.restarts, st.rng);
    ++c->status.restarts;
    log(log_level::warning,
        "supervised " + c->status.name + " crashed (" + c->status.last_error
          + "); restart " + std::to_string(c->status.restarts) + " soon",
        log_context{"supervision"});
    ++c->generation;
    self->delayed_send(self, delay, restart_atom_v, c->status.name,
                       c->generation);
  });
  return {
    [self](supervise_atom, const std::string& name,
           std::shared_ptr<child_factory> factory) -> caf::result<caf::actor> {
      auto& c = self->state.children[name];
      if (c.actor)
        self->send_exit(c.actor, caf::exit_reason::user_shutdown);
      c.factory = std::move(factory);
      c.status = child_status{name, child_state::running, 0, {}};
      ++c.generation;
      start(self, c);
      if (!c.actor)
        return caf::make_error(supervision_errc::not_found,
                               "could not start " + name);
      return c.actor;
    },
    [self](restart_atom, const std::string& name, uint64_t generation) {
      auto i = self->state.children.find(name);
      if (i == self->state.children.end()
          || i->second.status.state != child_state::restarting
          || i->second.generation != generation)
        return;
      start(self, i->second);
    },
    [self](children_atom) -> std::vector<child_status> {
      std::vector<child_status> result;
      for (auto& [name, c] : self->state.children)
        result.push_back(c.status);
      return result;
    },
    [self](child_atom, const std::string& name) -> caf::result<caf::actor> {
      auto i = self->state.children.find(name);
      if (i == self->state.children.end())
        return caf::make_error(supervision_errc::not_found,
                               "no child named " + name);
      return i->second.actor;
    },
    [self](stop_atom, const std::string& name) -> bool {
      auto i = self->state.children.find(name);
      if (i == self->state.children.end())
        return false;
      if (i->second.actor) {
        self->demonitor(i->second.actor);
        self->send_exit(i->second.actor, caf::exit_reason::user_shutdown);
        i->second.actor = caf::actor{};
      }
      i->second.status.state = child_state::stopped;
      ++i->second.generation;
      return true;
    },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  restart_policy policy) {
  return sys.spawn(supervisor_impl, policy);
}

caf::expected<caf::actor>
supervise(caf::actor_system& sys, const supervisor_actor& supervisor,
          const std::string& name, child_factory factory) {
  caf::scoped_actor self{sys};
  caf::expected<caf::actor> result{caf::error{}};
  self
    ->request(supervisor, caf::infinite, supervise_atom_v, name,
              std::make_shared<child_factory>(std::move(factory)))
    .receive(
      [&](caf::actor& a) {
        result = std::move(a);
      },
      [&](caf::error& err) {
        result = std::move(err);
      });
  return result;
}

} // namespace es
