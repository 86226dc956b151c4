#include "es/actors/aggregate_region.hpp"

#include "es/actors/errors.hpp"
#include "es/actors/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_view.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include <list>
#include <unordered_map>
#include <vector>

namespace es {

namespace {

struct stashed_command {
  caf::message msg;
  caf::response_promise rp;
  /// The sender of an asynchronous message (a part of a joint command),
  /// which a response promise does not keep.
  caf::strong_actor_ptr sender;
};

struct child_entry {
  caf::actor actor;
  caf::actor_clock::time_point last_used;
  std::list<uuid>::iterator lru_pos;
  bool passivating = false;
  /// Commands that arrived during a passivation, oldest first. A vector, not
  /// a deque: an empty deque allocates, and there is one entry per live
  /// aggregate.
  std::vector<stashed_command> stash;
};

struct region_state {
  static inline const char* name = "es.aggregate_region";

  region_options opts;
  aggregate_spawner spawner;
  std::unordered_map<uuid, child_entry> children;
  std::unordered_map<caf::actor_addr, uuid> by_addr;
  /// Least recently used first.
  std::list<uuid> lru;
  /// Children not being passivated.
  size_t active = 0;
  region_stats stats;

  ~region_state() {
    for (auto& [id, entry] : children)
      caf::anon_send_exit(entry.actor, caf::exit_reason::user_shutdown);
  }
};

using region_actor = caf::stateful_actor<region_state>;

void touch(region_actor* self, child_entry& entry) {
  auto& st = self->state;
  entry.last_used = self->clock().now();
  // Moves the node: no allocation per command, and the iterator stays valid.
  st.lru.splice(st.lru.end(), st.lru, entry.lru_pos);
}

void passivate(region_actor* self, child_entry& entry) {
  if (entry.passivating)
    return;
  entry.passivating = true;
  --self->state.active;
  // Commands already sent to the child run first; then it ends and the
  // down handler either forgets it or starts its successor.
  self->send(entry.actor, passivate_atom_v);
}

child_entry& spawn_child(region_actor* self, const uuid& id) {
  auto& st = self->state;
  // Make room: passivate the least recently used active aggregates.
  for (auto i = st.lru.begin();
       st.active >= st.opts.max_live && i != st.lru.end(); ++i) {
    auto& victim = st.children[*i];
    if (!victim.passivating)
      passivate(self, victim);
  }
  auto child = st.spawner(self, id);
  self->monitor(child);
  st.by_addr[child.address()] = id;
  auto& entry = st.children[id];
  entry.actor = std::move(child);
  entry.passivating = false;
  entry.last_used = self->clock().now();
  entry.lru_pos = st.lru.insert(st.lru.end(), id);
  ++st.active;
  ++st.stats.spawned;
  st.stats.live = st.children.size();
  return entry;
}

/// Passes a command on to its aggregate actor. A request is delegated (the
/// aggregate answers the requester); an asynchronous message, the part of
/// a joint command, goes with its sender, to whom the aggregate offers its
/// events and answers.
caf::result<caf::message> pass_on(region_actor* self, const caf::actor& dest,
                                  caf::message msg) {
  if (self->current_message_id().is_request())
    return self->delegate(dest, std::move(msg));
  dest->enqueue(caf::make_mailbox_element(self->current_sender(),
                                          caf::make_message_id(), {},
                                          std::move(msg)),
                self->context());
  return caf::delegated<caf::message>{};
}

caf::result<caf::message> route(region_actor* self, caf::message_view& x) {
  auto& content = x.content();
  if (content.empty() || !content.match_element<command_envelope>(0))
    return caf::make_error(actors_errc::invalid_command,
                           std::string{"a region takes (command_envelope, "
                                       "command) messages"});
  auto id = content.get_as<command_envelope>(0).aggregate_id;
  auto& st = self->state;
  ++st.stats.commands_routed;
  auto i = st.children.find(id);
  if (i == st.children.end())
    return pass_on(self, spawn_child(self, id).actor,
                   x.move_content_to_message());
  auto& entry = i->second;
  if (entry.passivating) {
    auto rp = self->make_response_promise();
    entry.stash.push_back({x.move_content_to_message(), rp,
                           self->current_message_id().is_request()
                             ? nullptr
                             : self->current_sender()});
    ++st.stats.commands_stashed;
    return rp;
  }
  touch(self, entry);
  return pass_on(self, entry.actor, x.move_content_to_message());
}

void on_down(region_actor* self, caf::down_msg& dm) {
  auto& st = self->state;
  auto a = st.by_addr.find(dm.source);
  if (a == st.by_addr.end())
    return;
  auto id = a->second;
  st.by_addr.erase(a);
  auto i = st.children.find(id);
  if (i == st.children.end())
    return;
  auto& entry = i->second;
  if (dm.reason && dm.reason != caf::exit_reason::user_shutdown)
    ++st.stats.crashed;
  else if (entry.passivating)
    ++st.stats.passivated;
  auto stash = std::move(entry.stash);
  if (!entry.passivating)
    --st.active;
  st.lru.erase(entry.lru_pos);
  st.children.erase(i);
  if (!stash.empty()) {
    // Commands that arrived during the passivation go, in order, to the
    // aggregate's next actor.
    auto& fresh = spawn_child(self, id);
    for (auto& s : stash) {
      if (s.sender)
        fresh.actor->enqueue(caf::make_mailbox_element(std::move(s.sender),
                                                       caf::make_message_id(),
                                                       {}, std::move(s.msg)),
                             self->context());
      else
        s.rp.delegate(fresh.actor, std::move(s.msg));
    }
  }
  st.stats.live = st.children.size();
}

void check_idle(region_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  for (auto& [id, entry] : st.children)
    if (!entry.passivating && now - entry.last_used >= st.opts.idle_timeout)
      passivate(self, entry);
}

caf::timespan tick_interval(const region_options& opts) {
  return std::max<caf::timespan>(opts.idle_timeout / 4,
                                 std::chrono::milliseconds(10));
}

caf::behavior region_impl(region_actor* self, region_options opts,
                          aggregate_spawner spawner) {
  self->state.opts = opts;
  self->state.spawner = std::move(spawner);
  self->set_default_handler(
    [](caf::scheduled_actor* ptr,
       caf::message_view& x) -> caf::result<caf::message> {
      return route(static_cast<region_actor*>(ptr), x);
    });
  self->set_down_handler([self](caf::down_msg& dm) {
    on_down(self, dm);
  });
  if (opts.idle_timeout.count() > 0)
    self->delayed_send(self, tick_interval(opts), caf::tick_atom_v);
  return {
    [self](caf::tick_atom) {
      check_idle(self);
      self->delayed_send(self, tick_interval(self->state.opts),
                         caf::tick_atom_v);
    },
    [self](passivate_atom, const uuid& id) -> bool {
      auto i = self->state.children.find(id);
      if (i == self->state.children.end())
        return false;
      passivate(self, i->second);
      return true;
    },
    [self](passivate_atom, const shard_set& shards) -> uint64_t {
      uint64_t n = 0;
      for (auto& [id, entry] : self->state.children)
        if (!entry.passivating && shards.owns(id)) {
          passivate(self, entry);
          ++n;
        }
      return n;
    },
    [self](snapshot_atom, const uuid& id) -> caf::result<caf::message> {
      auto i = self->state.children.find(id);
      if (i == self->state.children.end() || i->second.passivating)
        return caf::make_message(false);
      return self->delegate(i->second.actor, snapshot_atom_v);
    },
    [self](region_stats_atom) -> region_stats {
      auto result = self->state.stats;
      result.live = self->state.children.size();
      return result;
    },
  };
}

} // namespace

caf::actor spawn_region_with(caf::actor_system& sys, region_options opts,
                             aggregate_spawner spawner) {
  return sys.spawn(region_impl, opts, std::move(spawner));
}

} // namespace es
