#include "es/actors/aggregate_region.hpp"

#include "es/actors/errors.hpp"
#include "es/actors/type_ids.hpp"

#include <caf/actor_clock.hpp>
#include <caf/actor_pool.hpp>
#include <caf/actor_system.hpp>
#include <caf/detail/sync_request_bouncer.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

// A region is two parts behind one handle (an actor pool):
// - the router, which runs inside `enqueue` on the sender's thread: a command
//   for a live aggregate goes straight into that aggregate actor's mailbox,
//   sender and request id untouched, so the aggregate answers the sender and
//   the region costs a command no message of its own;
// - the manager, an actor that spawns, passivates and forgets aggregate
//   actors and answers every other message.
// Both work on the routing table under one mutex. Commands for an aggregate
// without a live actor (not spawned yet, or passivating) wait in its entry
// and go, in order, to its next actor.

namespace es {

namespace {

struct child_entry {
  /// Empty while the manager spawns the actor.
  caf::actor actor;
  caf::actor_clock::time_point last_used;
  /// Valid while `actor` is set.
  std::list<uuid>::iterator lru_pos;
  bool passivating = false;
  /// Commands waiting for the next actor, oldest first. A vector, not a
  /// deque: an empty deque allocates, and there is one entry per live
  /// aggregate.
  std::vector<caf::mailbox_element_ptr> stash;
};

struct region_core {
  region_core(region_options o, caf::actor_clock& c) : opts(o), clock(&c) {
    // nop
  }

  std::mutex mtx;
  const region_options opts;
  caf::actor_clock* clock;
  std::unordered_map<uuid, child_entry> children;
  /// Entries with an actor, least recently used first.
  std::list<uuid> lru;
  /// Entries with an actor that is not being passivated.
  size_t active = 0;
  region_stats stats;
  /// The manager ended: nothing is routed any more.
  bool closed = false;
};

using core_ptr = std::shared_ptr<region_core>;

void bounce(const caf::mailbox_element& x) {
  caf::detail::sync_request_bouncer f{
    caf::make_error(caf::exit_reason::user_shutdown)};
  f(x);
}

/// Marks a use of `entry` (for the idle check and the LRU order). Call with
/// the lock held.
void touch(region_core& core, child_entry& entry) {
  if (core.opts.idle_timeout.count() > 0)
    entry.last_used = core.clock->now();
  // Moves the node: no allocation per command, and the iterator stays valid.
  core.lru.splice(core.lru.end(), core.lru, entry.lru_pos);
}

/// The router: called by the pool with its lock held.
void route(region_core& core, const caf::actor& manager,
           caf::mailbox_element_ptr& ptr, caf::execution_unit* host) {
  auto id = ptr->content().get_as<command_envelope>(0).aggregate_id;
  std::unique_lock<std::mutex> guard{core.mtx};
  if (core.closed) {
    guard.unlock();
    bounce(*ptr);
    return;
  }
  ++core.stats.commands_routed;
  auto [i, added] = core.children.try_emplace(id);
  auto& entry = i->second;
  if (!added && entry.actor && !entry.passivating) {
    touch(core, entry);
    // Under the lock: a passivation marks the entry and sends its message
    // under it too, so a command either precedes that message in the
    // actor's mailbox or waits for the next actor.
    entry.actor->enqueue(std::move(ptr), host);
    return;
  }
  if (entry.passivating)
    ++core.stats.commands_stashed;
  entry.stash.push_back(std::move(ptr));
  if (added) {
    guard.unlock();
    manager->enqueue(nullptr, caf::make_message_id(),
                     caf::make_message(caf::spawn_atom_v, id), host);
  }
}

/// The pool's dispatch: commands to the router, the rest to the manager (the
/// pool's only worker).
struct region_policy {
  core_ptr core;

  void operator()(caf::actor_system&, caf::actor_pool::uplock& guard,
                  const caf::actor_pool::actor_vec& workers,
                  caf::mailbox_element_ptr& ptr, caf::execution_unit* host) {
    const auto& content = ptr->content();
    if (!content.empty() && content.match_element<command_envelope>(0)) {
      route(*core, workers.front(), ptr, host);
      return;
    }
    auto manager = workers.front();
    guard.unlock();
    manager->enqueue(std::move(ptr), host);
  }
};

struct region_state {
  static inline const char* name = "es.aggregate_region";

  core_ptr core;
  aggregate_spawner spawner;
  std::unordered_map<caf::actor_addr, uuid> by_addr;

  ~region_state() {
    if (!core)
      return;
    std::vector<caf::mailbox_element_ptr> waiting;
    {
      std::lock_guard<std::mutex> guard{core->mtx};
      core->closed = true;
      for (auto& [id, entry] : core->children) {
        if (entry.actor)
          caf::anon_send_exit(entry.actor, caf::exit_reason::user_shutdown);
        for (auto& x : entry.stash)
          waiting.push_back(std::move(x));
      }
      core->children.clear();
      core->lru.clear();
    }
    for (auto& x : waiting)
      bounce(*x);
  }
};

using region_actor = caf::stateful_actor<region_state>;

/// Starts passivating `entry`. Call with the lock held.
void passivate(region_actor* self, region_core& core, child_entry& entry) {
  if (entry.passivating || !entry.actor)
    return;
  entry.passivating = true;
  --core.active;
  // Commands already in the actor's mailbox run first; then it ends and the
  // down handler either forgets it or starts its successor.
  self->send(entry.actor, passivate_atom_v);
}

/// Spawns the actor of `id`, whose entry waits for one, and hands it the
/// commands that wait there.
void spawn_child(region_actor* self, const uuid& id) {
  auto& st = self->state;
  auto& core = *st.core;
  {
    std::lock_guard<std::mutex> guard{core.mtx};
    auto i = core.children.find(id);
    if (i == core.children.end() || i->second.actor)
      return;
    // Make room: passivate the least recently used active aggregates.
    for (auto j = core.lru.begin();
         core.active >= core.opts.max_live && j != core.lru.end(); ++j)
      passivate(self, core, core.children[*j]);
  }
  auto child = st.spawner(self, id);
  self->monitor(child);
  st.by_addr[child.address()] = id;
  std::lock_guard<std::mutex> guard{core.mtx};
  auto i = core.children.find(id);
  if (i == core.children.end()) {
    // Only when closing.
    caf::anon_send_exit(child, caf::exit_reason::user_shutdown);
    return;
  }
  auto& entry = i->second;
  entry.actor = child;
  entry.passivating = false;
  entry.last_used = core.clock->now();
  entry.lru_pos = core.lru.insert(core.lru.end(), id);
  ++core.active;
  ++core.stats.spawned;
  for (auto& x : entry.stash)
    child->enqueue(std::move(x), self->context());
  std::vector<caf::mailbox_element_ptr>{}.swap(entry.stash);
}

void on_down(region_actor* self, caf::down_msg& dm) {
  auto& st = self->state;
  auto a = st.by_addr.find(dm.source);
  if (a == st.by_addr.end())
    return;
  auto id = a->second;
  st.by_addr.erase(a);
  auto& core = *st.core;
  {
    std::lock_guard<std::mutex> guard{core.mtx};
    auto i = core.children.find(id);
    if (i == core.children.end() || i->second.actor.address() != dm.source)
      return;
    auto& entry = i->second;
    if (dm.reason && dm.reason != caf::exit_reason::user_shutdown)
      ++core.stats.crashed;
    else if (entry.passivating)
      ++core.stats.passivated;
    if (!entry.passivating)
      --core.active;
    core.lru.erase(entry.lru_pos);
    if (entry.stash.empty()) {
      core.children.erase(i);
      return;
    }
    // Commands that arrived during the passivation go, in order, to the
    // aggregate's next actor.
    entry.actor = nullptr;
    entry.passivating = false;
  }
  spawn_child(self, id);
}

void check_idle(region_actor* self) {
  auto& core = *self->state.core;
  std::lock_guard<std::mutex> guard{core.mtx};
  auto now = core.clock->now();
  for (auto& [id, entry] : core.children)
    if (entry.actor && !entry.passivating
        && now - entry.last_used >= core.opts.idle_timeout)
      passivate(self, core, entry);
}

caf::timespan tick_interval(const region_options& opts) {
  return std::max<caf::timespan>(opts.idle_timeout / 4,
                                 std::chrono::milliseconds(10));
}

caf::behavior region_impl(region_actor* self, core_ptr core,
                          aggregate_spawner spawner) {
  self->state.core = core;
  self->state.spawner = std::move(spawner);
  self->set_down_handler([self](caf::down_msg& dm) {
    on_down(self, dm);
  });
  self->set_default_handler(
    [](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
      return caf::make_error(actors_errc::invalid_command,
                             std::string{"a region takes (command_envelope, "
                                         "command) messages"});
    });
  if (core->opts.idle_timeout.count() > 0)
    self->delayed_send(self, tick_interval(core->opts), caf::tick_atom_v);
  return {
    [self](caf::spawn_atom, const uuid& id) {
      spawn_child(self, id);
    },
    [self](caf::tick_atom) {
      check_idle(self);
      self->delayed_send(self, tick_interval(self->state.core->opts),
                         caf::tick_atom_v);
    },
    [self](passivate_atom, const uuid& id) -> bool {
      auto& core = *self->state.core;
      std::lock_guard<std::mutex> guard{core.mtx};
      auto i = core.children.find(id);
      if (i == core.children.end() || !i->second.actor)
        return false;
      passivate(self, core, i->second);
      return true;
    },
    [self](passivate_atom, const shard_set& shards) -> uint64_t {
      auto& core = *self->state.core;
      std::lock_guard<std::mutex> guard{core.mtx};
      uint64_t n = 0;
      for (auto& [id, entry] : core.children)
        if (entry.actor && !entry.passivating && shards.owns(id)) {
          passivate(self, core, entry);
          ++n;
        }
      return n;
    },
    [self](snapshot_atom, const uuid& id) -> caf::result<caf::message> {
      caf::actor dest;
      {
        auto& core = *self->state.core;
        std::lock_guard<std::mutex> guard{core.mtx};
        auto i = core.children.find(id);
        if (i != core.children.end() && !i->second.passivating)
          dest = i->second.actor;
      }
      if (!dest)
        return caf::make_message(false);
      return self->delegate(dest, snapshot_atom_v);
    },
    [self](region_stats_atom) -> region_stats {
      auto& core = *self->state.core;
      std::lock_guard<std::mutex> guard{core.mtx};
      auto result = core.stats;
      result.live = core.children.size();
      return result;
    },
  };
}

} // namespace

caf::actor spawn_region_with(caf::actor_system& sys, region_options opts,
                             aggregate_spawner spawner) {
  auto core = std::make_shared<region_core>(opts, sys.clock());
  auto manager = sys.spawn(region_impl, core, std::move(spawner));
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(),
                                    region_policy{std::move(core)});
  caf::anon_send(pool, caf::sys_atom_v, caf::put_atom_v, manager);
  return pool;
}

} // namespace es
