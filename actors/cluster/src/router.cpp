#include "router.hpp"

#include "es/actors/errors.hpp"
#include "es/actors/shard.hpp"
#include "es/actors/type_ids.hpp"
#include "es/store/log.hpp"

#include <caf/actor_cast.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/message_view.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include <map>
#include <set>
#include <string>

namespace es::cluster::detail {

namespace {

using steady = std::chrono::steady_clock;

/// A command waiting for an owner or a connection.
struct pending {
  caf::message msg;
  caf::response_promise rp;
  steady::time_point deadline;
};

/// The router of another node, as this router reaches it.
struct remote {
  std::string host;
  uint16_t port = 0;
  caf::actor handle;
  bool connecting = false;
  /// Commands waiting for the connection.
  std::vector<pending> waiting;
  /// Commands sent and not answered, by request number.
  std::map<uint64_t, caf::response_promise> in_flight;
};

struct router_state {
  static inline const char* name = "es.cluster.router";

  std::shared_ptr<const router_env> env;
  std::map<std::string, remote> remotes;
  std::map<caf::actor_addr, std::string> remote_by_addr;
  /// Commands whose shard has no owner yet.
  std::vector<pending> waiting;
  bool retry_scheduled = false;
  /// Shards served as of the last view.
  std::set<uint32_t> served;
  uint64_t next_request = 0;
};

using router_actor = caf::stateful_actor<router_state>;

constexpr auto retry_interval = std::chrono::milliseconds(50);

void dispatch(router_actor* self, pending p);

void schedule_retry(router_actor* self) {
  auto& st = self->state;
  if (st.retry_scheduled || st.waiting.empty())
    return;
  st.retry_scheduled = true;
  self->delayed_send(self, retry_interval, caf::tick_atom_v);
}

void retry_waiting(router_actor* self) {
  auto waiting = std::move(self->state.waiting);
  self->state.waiting.clear();
  for (auto& p : waiting)
    dispatch(self, std::move(p));
  schedule_retry(self);
}

const caf::actor* region_for(router_actor* self, const caf::message& msg,
                             size_t pos) {
  if (msg.size() <= pos)
    return nullptr;
  auto rtti = msg.type(pos);
  if (rtti.second == nullptr)
    return nullptr;
  auto& regions = self->state.env->regions;
  auto i = regions.find(std::type_index{*rtti.second});
  return i == regions.end() ? nullptr : &i->second;
}

caf::error no_region(const caf::message& msg, size_t pos) {
  return caf::make_error(actors_errc::invalid_command,
                         "no aggregate type on this cluster handles "
                           + (msg.size() > pos ? caf::to_string(msg.type(pos))
                                               : std::string{"nothing"}));
}

std::optional<caf::response_promise>
take_in_flight(router_actor* self, const std::string& node, uint64_t request) {
  auto r = self->state.remotes.find(node);
  if (r == self->state.remotes.end())
    return std::nullopt;
  auto i = r->second.in_flight.find(request);
  if (i == r->second.in_flight.end())
    return std::nullopt;
  auto rp = std::move(i->second);
  r->second.in_flight.erase(i);
  return rp;
}

void send_forward(router_actor* self, const std::string& node, remote& rc,
                  pending p) {
  const auto& cfg = self->state.env->cfg;
  auto now = steady::now();
  auto budget = std::min<caf::timespan>(
    std::chrono::duration_cast<caf::timespan>(cfg.forward_timeout),
    std::chrono::duration_cast<caf::timespan>(p.deadline - now));
  if (budget.count() <= 0)
    budget = std::chrono::milliseconds(1);
  auto request = ++self->state.next_request;
  rc.in_flight.emplace(request, std::move(p.rp));
  auto msg = p.msg;
  auto deadline = p.deadline;
  self->request(rc.handle, budget, caf::make_message(forward_atom_v) + p.msg)
    .then(
      [self, node, request](command_result& res) {
        if (auto rp = take_in_flight(self, node, request))
          rp->deliver(std::move(res));
      },
      [self, node, request, msg, deadline](caf::error& err) mutable {
        auto rp = take_in_flight(self, node, request);
        if (!rp)
          return;
        if (has_code(err, actors_errc::shard_moved)) {
          // Nothing ran there: ask the new owner once the view shows it.
          self->state.waiting.push_back(
            {std::move(msg), std::move(*rp), deadline});
          schedule_retry(self);
          return;
        }
        if (err == caf::sec::request_timeout
            || err == caf::sec::request_receiver_down
            || err == caf::sec::remote_linking_failed) {
          rp->deliver(caf::make_error(
            actors_errc::outcome_unknown,
            "node " + node + " did not answer the command (" + to_string(err)
              + "); it may or may not have been applied"));
          return;
        }
        rp->deliver(std::move(err));
      });
}

void connect(router_actor* self, const std::string& node) {
  auto& rc = self->state.remotes[node];
  rc.connecting = true;
  const auto& cfg = self->state.env->cfg;
  auto mm = self->home_system().middleman().actor_handle();
  self
    ->request(mm,
              std::chrono::duration_cast<caf::timespan>(cfg.forward_timeout),
              caf::connect_atom_v, rc.host, rc.port)
    .then(
      [self, node](const caf::node_id&, caf::strong_actor_ptr& ptr,
                   const std::set<std::string>&) {
        auto& rc = self->state.remotes[node];
        rc.connecting = false;
        auto waiting = std::move(rc.waiting);
        rc.waiting.clear();
        if (!ptr) {
          for (auto& p : waiting)
            self->state.waiting.push_back(std::move(p));
          schedule_retry(self);
          return;
        }
        rc.handle = caf::actor_cast<caf::actor>(std::move(ptr));
        self->monitor(rc.handle);
        self->state.remote_by_addr[rc.handle.address()] = node;
        for (auto& p : waiting)
          send_forward(self, node, rc, std::move(p));
      },
      [self, node](caf::error&) {
        // Nothing was sent: the commands wait for the view to change (the
        // node may be gone) or the next attempt.
        auto& rc = self->state.remotes[node];
        rc.connecting = false;
        for (auto& p : rc.waiting)
          self->state.waiting.push_back(std::move(p));
        rc.waiting.clear();
        schedule_retry(self);
      });
}

void forward(router_actor* self, const node_info& owner, pending p) {
  auto& rc = self->state.remotes[owner.node_id];
  if (rc.host != owner.host || rc.port != owner.port) {
    // The node restarted elsewhere: the old connection is useless.
    if (rc.handle)
      self->state.remote_by_addr.erase(rc.handle.address());
    rc.handle = nullptr;
    rc.host = owner.host;
    rc.port = owner.port;
  }
  if (rc.handle) {
    send_forward(self, owner.node_id, rc, std::move(p));
    return;
  }
  rc.waiting.push_back(std::move(p));
  if (!rc.connecting)
    connect(self, owner.node_id);
}

void dispatch(router_actor* self, pending p) {
  auto& env = *self->state.env;
  const auto& cfg = env.cfg;
  auto now = steady::now();
  const auto& ce = p.msg.get_as<command_envelope>(0);
  auto shard = shard_of(ce.aggregate_id, cfg.shards);
  if (now >= p.deadline) {
    p.rp.deliver(caf::make_error(
      actors_errc::no_shard_owner,
      "no live node served shard " + std::to_string(shard) + " of "
        + std::to_string(cfg.shards) + " within the command's deadline; "
        + "nothing was done"));
    return;
  }
  auto v = env.view();
  if (v->serves(shard_kind, shard, now)) {
    if (auto* region = region_for(self, p.msg, 1))
      p.rp.delegate(*region, std::move(p.msg));
    else
      p.rp.deliver(no_region(p.msg, 1));
    return;
  }
  if (auto* o = v->owner(shard_kind, shard); o && o->node_id != cfg.node_id)
    if (auto* n = v->node(o->node_id)) {
      forward(self, *n, std::move(p));
      return;
    }
  self->state.waiting.push_back(std::move(p));
  schedule_retry(self);
}

void on_leases(router_actor* self) {
  auto& st = self->state;
  auto v = st.env->view();
  std::set<uint32_t> now_served;
  if (auto i = v->held.find(shard_kind); i != v->held.end())
    for (auto& [item, epoch] : i->second)
      now_served.insert(item);
  shard_set lost;
  lost.count = st.env->cfg.shards;
  for (auto s : st.served)
    if (now_served.count(s) == 0)
      lost.shards.push_back(s);
  st.served = std::move(now_served);
  if (!lost.shards.empty())
    for (const auto& region : st.env->all_regions)
      // Anonymous: the region's count must not come back as a message.
      caf::anon_send(region, passivate_atom_v, lost);
  retry_waiting(self);
}

void on_down(router_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto i = st.remote_by_addr.find(dm.source);
  if (i == st.remote_by_addr.end())
    return;
  auto node = i->second;
  st.remote_by_addr.erase(i);
  auto& rc = st.remotes[node];
  rc.handle = nullptr;
  auto in_flight = std::move(rc.in_flight);
  rc.in_flight.clear();
  for (auto& [request, rp] : in_flight)
    rp.deliver(caf::make_error(
      actors_errc::outcome_unknown,
      "node " + node + " went down with the command in flight ("
        + to_string(dm.reason) + "); it may or may not have been applied"));
}

caf::result<caf::message> on_message(router_actor* self, caf::message_view& x) {
  auto& content = x.content();
  auto& env = *self->state.env;
  if (content.size() >= 2 && content.match_element<forward_atom>(0)
      && content.match_element<command_envelope>(1)) {
    auto msg = x.move_content_to_message();
    auto shard
      = shard_of(msg.get_as<command_envelope>(1).aggregate_id, env.cfg.shards);
    auto v = env.view();
    if (!v->serves(shard_kind, shard, steady::now()))
      return caf::make_error(actors_errc::shard_moved,
                             "node " + env.cfg.node_id
                               + " does not serve shard "
                               + std::to_string(shard) + "; nothing was done",
                             shard);
    auto* region = region_for(self, msg, 2);
    if (region == nullptr)
      return no_region(msg, 2);
    return self->delegate(*region, msg.drop(1));
  }
  if (content.empty() || !content.match_element<command_envelope>(0)) {
    // Only a request gets an error back: an error sent as a plain message
    // would end an actor that has no error handler.
    if (!self->current_message_id().is_request()) {
      log(log_level::warning,
          "cluster router: dropped a message that is "
          "no command: "
            + caf::to_string(x.content()),
          log_context{"cluster"});
      return caf::delegated<caf::message>{};
    }
    return caf::make_error(actors_errc::invalid_command,
                           std::string{"a cluster router takes "
                                       "(command_envelope, command) "
                                       "messages"});
  }
  auto rp = self->make_response_promise();
  dispatch(self, pending{x.move_content_to_message(), rp,
                         steady::now() + env.cfg.command_deadline});
  return rp;
}

caf::behavior router_impl(router_actor* self,
                          std::shared_ptr<const router_env> env) {
  self->state.env = std::move(env);
  self->set_default_handler(
    [](caf::scheduled_actor* ptr,
       caf::message_view& x) -> caf::result<caf::message> {
      return on_message(static_cast<router_actor*>(ptr), x);
    });
  self->set_down_handler([self](caf::down_msg& dm) {
    on_down(self, dm);
  });
  return {
    [self](leases_atom) {
      on_leases(self);
    },
    [self](caf::tick_atom) {
      self->state.retry_scheduled = false;
      retry_waiting(self);
    },
  };
}

} // namespace

caf::actor spawn_router(caf::actor_system& sys,
                        std::shared_ptr<const router_env> env) {
  return sys.spawn(router_impl, std::move(env));
}

} // namespace es::cluster::detail
