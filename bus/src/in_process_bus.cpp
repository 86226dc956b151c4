#include "es/bus/in_process_bus.hpp"

#include "es/bus/detail/facade.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/log.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace es {

event_subscriber::~event_subscriber() {
  // nop
}

event_bus::~event_bus() {
  // nop
}

bus_dead_letters::~bus_dead_letters() {
  // nop
}

namespace {

// -- delivery actors ----------------------------------------------------------

using detail::active_flag;

/// Runs a handler for each event of a delivery, isolating its failures.
bus_subscriber_actor::behavior_type
function_delivery(bus_subscriber_actor::pointer, event_handler_fn fn,
                  std::string label, active_flag active) {
  return {
    [fn, label,
     active](deliver_atom,
             const recorded_events& events) -> caf::result<uint64_t, uint64_t> {
      uint64_t invoked = 0;
      uint64_t errors = 0;
      for (const auto& ev : events) {
        if (!active->load())
          break;
        ++invoked;
        tracing::span sp;
        if (tracing::enabled()) {
          sp = tracing::span{"eventsource.event_bus.handle",
                             tracing::span_kind::consumer,
                             tracing::extract(ev.metadata)};
          sp.set_attribute("eventsource.handler", label);
          sp.set_attribute("eventsource.event.type", ev.event_type);
          sp.set_attribute("eventsource.event.id", ev.event_id.to_string());
        }
        caf::error err;
        try {
          err = fn(ev);
        } catch (const std::exception& ex) {
          err = caf::make_error(bus_errc::handler_failed,
                                std::string{"handler threw: "} + ex.what());
        } catch (...) {
          err = caf::make_error(bus_errc::handler_failed,
                                std::string{"handler threw"});
        }
        if (err) {
          ++errors;
          sp.set_error(describe(err));
          log(log_level::warning,
              "bus subscriber " + label + " failed on event "
                + ev.event_id.to_string() + " (" + ev.event_type
                + "): " + describe(err),
              log_context{"bus"});
        }
      }
      return {invoked, errors};
    },
  };
}

/// Forwards deliveries to a user actor and waits for its reply. `target`
/// is dynamically typed: any reply means "done" (see
/// `event_bus::subscribe_actor`), which no typed handle can express.
bus_subscriber_actor::behavior_type
actor_delivery(bus_subscriber_actor::pointer self, caf::actor target,
               active_flag active) {
  return {
    [self, target,
     active](deliver_atom,
             const recorded_events& events) -> caf::result<uint64_t, uint64_t> {
      if (!active->load())
        return {uint64_t{0}, uint64_t{0}};
      auto rp = self->make_response_promise<uint64_t, uint64_t>();
      auto n = static_cast<uint64_t>(events.size());
      self->request(target, caf::infinite, deliver_atom_v, events)
        .then(
          [rp, n]() mutable {
            rp.deliver(n, uint64_t{0});
          },
          [rp, n](caf::error& err) mutable {
            // A reply of another shape than void still means "done".
            if (err == caf::sec::unexpected_response) {
              rp.deliver(n, uint64_t{0});
              return;
            }
            log(log_level::warning,
                "bus subscriber actor failed: " + describe(err),
                log_context{"bus"});
            rp.deliver(n, n);
          });
      return rp;
    },
  };
}

// -- the bus actor ------------------------------------------------------------

struct subscriber_entry {
  subscription_id id = 0;
  bus_subscriber_actor delivery;
  std::vector<std::string> types;
  /// Empty: a group of its own (it gets every event it wants).
  std::string group;
  size_t max_queued = 0;
  size_t queued = 0;
  /// Deliveries sent and not answered yet.
  uint64_t in_flight = 0;

  bool wants(const recorded_event& ev) const {
    return types.empty()
           || std::find(types.begin(), types.end(), ev.event_type)
                != types.end();
  }
};

/// A publish answered later. Void answers go through untyped promises:
/// `typed_response_promise<void>` cannot deliver in CAF 0.17.
struct waiting_publish {
  recorded_events events;
  caf::response_promise rp;
};

struct bus_state {
  static inline const char* name = "es.in_process_bus";

  std::vector<subscriber_entry> subs;
  subscription_id next_id = 1;
  std::deque<waiting_publish> waiting;
  std::vector<caf::response_promise> drainers;
  bus_stats stats;
  /// Between `stop` and `start`: publishes are refused.
  bool stopped = false;

  ~bus_state() {
    for (auto& s : subs)
      caf::anon_send_exit(s.delivery, caf::exit_reason::user_shutdown);
    // Nobody may wait forever on a bus that is gone.
    auto closed
      = caf::make_error(bus_errc::bus_closed, std::string{"the bus stopped"});
    for (auto& w : waiting)
      w.rp.deliver(closed);
    for (auto& rp : drainers)
      rp.deliver(closed);
  }

  subscriber_entry* find(subscription_id id) {
    auto i = std::find_if(subs.begin(), subs.end(), [id](const auto& s) {
      return s.id == id;
    });
    return i == subs.end() ? nullptr : &*i;
  }

  bool idle() const {
    return waiting.empty() && stats.deliveries_in_flight == 0;
  }
};

using bus_pointer = bus_actor::stateful_pointer<bus_state>;

void delivery_done(bus_pointer self, subscription_id id, size_t count,
                   uint64_t invoked, uint64_t errors);

/// Hands `events` to every interested subscriber if all of them have room;
/// returns false (and does nothing) otherwise. A subscriber with an empty
/// queue always has room, so a batch larger than a limit cannot wait
/// forever.
/// Which events of `events` each subscriber gets (indexes into `events`,
/// per subscriber index). A subscriber without a group gets every event it
/// wants; the members of a group share theirs: each event goes to one of
/// the members that want it, chosen by its aggregate id, so one member
/// sees all of an aggregate's events, in order, while the group's members
/// stay the same.
std::vector<std::vector<size_t>> route(const bus_state& st,
                                       const recorded_events& events) {
  std::vector<std::vector<size_t>> take(st.subs.size());
  std::vector<size_t> members;
  for (size_t k = 0; k < events.size(); ++k) {
    const auto& ev = events[k];
    for (size_t i = 0; i < st.subs.size(); ++i) {
      const auto& s = st.subs[i];
      if (!s.group.empty() || !s.wants(ev))
        continue;
      take[i].push_back(k);
    }
    // Each group once: at the first member that wants the event.
    for (size_t i = 0; i < st.subs.size(); ++i) {
      const auto& s = st.subs[i];
      if (s.group.empty() || !s.wants(ev))
        continue;
      bool seen_group = false;
      for (size_t j = 0; j < i && !seen_group; ++j)
        seen_group = st.subs[j].group == s.group && st.subs[j].wants(ev);
      if (seen_group)
        continue;
      members.clear();
      for (size_t j = i; j < st.subs.size(); ++j)
        if (st.subs[j].group == s.group && st.subs[j].wants(ev))
          members.push_back(j);
      auto pick = members[ev.aggregate_id.hash() % members.size()];
      take[pick].push_back(k);
    }
  }
  return take;
}

/// Spans of a publish: one per event, with a dispatch span per subscriber
/// that gets it, children of the command that wrote the event.
template <class State>
void trace_dispatch(const State& st, const recorded_events& events,
                    const std::vector<std::vector<size_t>>& take) {
  for (size_t k = 0; k < events.size(); ++k) {
    const auto& ev = events[k];
    tracing::span publish{"eventsource.event_bus.publish",
                          tracing::span_kind::producer,
                          tracing::extract(ev.metadata)};
    publish.set_attribute("eventsource.event.type", ev.event_type);
    publish.set_attribute("eventsource.event.id", ev.event_id.to_string());
    for (size_t i = 0; i < st.subs.size(); ++i) {
      if (std::find(take[i].begin(), take[i].end(), k) == take[i].end())
        continue;
      tracing::span dispatch{"eventsource.event_bus.dispatch",
                             tracing::span_kind::internal, publish.context()};
      dispatch.set_attribute("eventsource.subscription",
                             static_cast<int64_t>(st.subs[i].id));
    }
  }
}

bool try_dispatch(bus_pointer self, recorded_events& events) {
  auto& st = self->state;
  auto take = route(st, events);
  std::vector<std::pair<size_t, size_t>> plan; // (subscriber index, count)
  for (size_t i = 0; i < st.subs.size(); ++i) {
    auto& s = st.subs[i];
    size_t n = take[i].size();
    if (n == 0)
      continue;
    if (s.queued > 0 && s.queued + n > s.max_queued)
      return false;
    plan.emplace_back(i, n);
  }
  st.stats.events_published += events.size();
  if (tracing::enabled())
    trace_dispatch(st, events, take);
  // Subscribers that want every event share one message (no copies).
  caf::message all;
  for (const auto& step : plan) {
    // Plain variables, not a structured binding: the lambdas below capture
    // them (Clang 14, which builds the fuzzers, cannot capture bindings).
    auto i = step.first;
    auto n = step.second;
    auto& s = st.subs[i];
    caf::message msg;
    if (n == events.size()) {
      if (all.empty())
        all = caf::make_message(deliver_atom_v, events);
      msg = all;
    } else {
      recorded_events part;
      part.reserve(n);
      for (auto k : take[i])
        part.push_back(events[k]);
      msg = caf::make_message(deliver_atom_v, std::move(part));
    }
    s.queued += n;
    ++s.in_flight;
    ++st.stats.deliveries_in_flight;
    auto id = s.id;
    // Sent as a prebuilt message, which only the dynamic handle takes: the
    // subscribers that want every event share one copy of the events.
    self
      ->request(caf::actor_cast<caf::actor>(s.delivery), caf::infinite,
                std::move(msg))
      .then(
        [self, id, n](uint64_t invoked, uint64_t errors) {
          delivery_done(self, id, n, invoked, errors);
        },
        [self, id, n](caf::error& err) {
          log(log_level::warning, "bus delivery failed: " + describe(err),
              log_context{"bus"});
          delivery_done(self, id, n, 0, n);
        });
  }
  return true;
}

void flush_waiting(bus_pointer self) {
  auto& st = self->state;
  while (!st.waiting.empty()) {
    auto& front = st.waiting.front();
    if (!try_dispatch(self, front.events))
      break;
    front.rp.deliver(caf::unit);
    st.waiting.pop_front();
  }
  st.stats.publishes_waiting = st.waiting.size();
  if (st.idle()) {
    for (auto& rp : st.drainers)
      rp.deliver(caf::unit);
    st.drainers.clear();
  }
}

void delivery_done(bus_pointer self, subscription_id id, size_t count,
                   uint64_t invoked, uint64_t errors) {
  auto& st = self->state;
  auto* s = st.find(id);
  // A late answer for an ended subscription was already written off.
  if (s == nullptr)
    return;
  s->queued -= std::min(s->queued, count);
  --s->in_flight;
  --st.stats.deliveries_in_flight;
  ++st.stats.deliveries_completed;
  st.stats.handlers_invoked += invoked;
  st.stats.handler_errors += errors;
  flush_waiting(self);
}

bus_actor::behavior_type bus_impl(bus_pointer self) {
  return {
    [self](caf::publish_atom, recorded_events& events) -> caf::result<void> {
      auto& st = self->state;
      if (st.stopped)
        return caf::make_error(bus_errc::bus_closed,
                               std::string{"the bus is stopped: nobody would "
                                           "receive the events"});
      if (st.waiting.empty() && try_dispatch(self, events))
        return caf::unit;
      auto rp = self->make_response_promise();
      st.waiting.push_back(waiting_publish{std::move(events), rp});
      st.stats.publishes_waiting = st.waiting.size();
      return rp;
    },
    [self](caf::subscribe_atom, bus_subscriber_actor delivery,
           std::vector<std::string>& types, uint64_t max_queued,
           std::string& group) -> subscription_id {
      auto& st = self->state;
      subscriber_entry entry;
      entry.id = st.next_id++;
      entry.delivery = std::move(delivery);
      entry.types = std::move(types);
      entry.group = std::move(group);
      entry.max_queued = std::max<uint64_t>(1, max_queued);
      st.subs.push_back(std::move(entry));
      st.stats.subscribers = st.subs.size();
      return st.subs.back().id;
    },
    [self](caf::unsubscribe_atom, subscription_id id) -> bool {
      auto& st = self->state;
      auto i
        = std::find_if(st.subs.begin(), st.subs.end(), [id](const auto& s) {
            return s.id == id;
          });
      if (i == st.subs.end())
        return false;
      // Stop the delivery actor before it handles what is still queued for
      // it: the exit jumps the queue. (An exit_msg is no part of the typed
      // protocol, and a typed actor may not send to a dynamic handle: hence
      // an anonymous send; the message names the bus as its source.)
      caf::anon_send<caf::message_priority::high>(
        caf::actor_cast<caf::actor>(i->delivery),
        caf::exit_msg{self->address(), caf::exit_reason::user_shutdown});
      st.stats.deliveries_in_flight -= i->in_flight;
      st.subs.erase(i);
      st.stats.subscribers = st.subs.size();
      // Its queued events no longer hold anyone back.
      flush_waiting(self);
      return true;
    },
    [self](stats_atom) -> bus_stats {
      return self->state.stats;
    },
    [self](drain_atom) -> caf::result<void> {
      if (self->state.idle())
        return caf::unit;
      auto rp = self->make_response_promise();
      self->state.drainers.push_back(rp);
      return rp;
    },
    [self](start_atom) {
      self->state.stopped = false;
    },
    [self](stop_atom) -> caf::result<void> {
      // Refuse new publishes, then answer once what was accepted is
      // handled.
      self->state.stopped = true;
      if (self->state.idle())
        return caf::unit;
      auto rp = self->make_response_promise();
      self->state.drainers.push_back(rp);
      return rp;
    },
  };
}

} // namespace

// -- the blocking facade ------------------------------------------------------

namespace detail {

namespace {

class actor_bus_facade final : public event_bus {
public:
  actor_bus_facade(caf::actor_system& sys, bus_actor bus)
    : sys_(sys), bus_(std::move(bus)) {
    // nop
  }

  ~actor_bus_facade() override {
    caf::anon_send_exit(bus_, caf::exit_reason::user_shutdown);
  }

  bus_actor handle() const override {
    return bus_;
  }

  caf::error publish(recorded_events events) override {
    caf::scoped_actor self{sys_};
    caf::error result;
    self->request(bus_, caf::infinite, caf::publish_atom_v, std::move(events))
      .receive([] {},
               [&](caf::error& err) {
                 result = std::move(err);
               });
    return result;
  }

  subscription_id subscribe(std::string event_type, event_handler_fn fn,
                            subscribe_options opts) override {
    auto label = event_type;
    auto active = make_active();
    return add(spawn_function(std::move(fn), std::move(label), opts, active),
               {std::move(event_type)}, opts, active);
  }

  subscription_id subscribe_all(std::shared_ptr<event_subscriber> sub,
                                subscribe_options opts) override {
    auto types = sub->subscribed_to();
    auto fn = [sub](const recorded_event& ev) {
      return sub->handle(ev);
    };
    auto active = make_active();
    return add(spawn_function(std::move(fn), "subscriber", opts, active),
               std::move(types), opts, active);
  }

  subscription_id subscribe_to_all_events(event_handler_fn fn,
                                          subscribe_options opts) override {
    auto active = make_active();
    return add(spawn_function(std::move(fn), "all-events", opts, active), {},
               opts, active);
  }

  subscription_id subscribe_actor(caf::actor target,
                                  std::vector<std::string> event_types,
                                  subscribe_options opts) override {
    auto active = make_active();
    return add(sys_.spawn(actor_delivery, std::move(target), active),
               std::move(event_types), opts, active);
  }

  bool unsubscribe(subscription_id id) override {
    {
      // Events still queued for the subscription are dropped from here on,
      // even those already in its delivery actor's mailbox.
      std::lock_guard<std::mutex> guard{mtx_};
      if (auto i = active_.find(id); i != active_.end()) {
        i->second->store(false);
        active_.erase(i);
      }
    }
    caf::scoped_actor self{sys_};
    bool result = false;
    self->request(bus_, caf::infinite, caf::unsubscribe_atom_v, id)
      .receive(
        [&](bool found) {
          result = found;
        },
        [](caf::error&) {});
    return result;
  }

  bus_stats stats() override {
    caf::scoped_actor self{sys_};
    bus_stats result;
    self->request(bus_, caf::infinite, stats_atom_v)
      .receive(
        [&](bus_stats& x) {
          result = x;
        },
        [](caf::error&) {});
    return result;
  }

  caf::error start() override {
    caf::scoped_actor self{sys_};
    caf::error result;
    self->request(bus_, caf::infinite, start_atom_v)
      .receive([] {},
               [&](caf::error& err) {
                 result = std::move(err);
               });
    return result;
  }

  caf::error stop(std::chrono::milliseconds timeout) override {
    caf::scoped_actor self{sys_};
    caf::error result;
    self->request(bus_, caf::timespan{timeout}, stop_atom_v)
      .receive([] {},
               [&](caf::error& err) {
                 result = has_code(err, caf::sec::request_timeout)
                            ? caf::make_error(
                              bus_errc::publish_timeout,
                              std::string{"handlers still ran when the stop "
                                          "timed out"})
                            : std::move(err);
               });
    return result;
  }

  caf::error drain(std::chrono::milliseconds timeout) override {
    caf::scoped_actor self{sys_};
    caf::error result;
    self->request(bus_, caf::timespan{timeout}, drain_atom_v)
      .receive([] {},
               [&](caf::error& err) {
                 result = has_code(err, caf::sec::request_timeout)
                            ? caf::make_error(
                              bus_errc::publish_timeout,
                              std::string{"bus did not drain in time"})
                            : std::move(err);
               });
    return result;
  }

private:
  static bool has_code(const caf::error& err, caf::sec code) {
    return err && err == code;
  }

  static active_flag make_active() {
    return std::make_shared<std::atomic<bool>>(true);
  }

  bus_subscriber_actor spawn_function(event_handler_fn fn, std::string label,
                                      const subscribe_options& opts,
                                      active_flag active) {
    if (opts.blocking)
      return sys_.spawn<caf::detached>(function_delivery, std::move(fn),
                                       std::move(label), std::move(active));
    return sys_.spawn(function_delivery, std::move(fn), std::move(label),
                      std::move(active));
  }

  subscription_id add(bus_subscriber_actor delivery,
                      std::vector<std::string> types,
                      const subscribe_options& opts, active_flag active) {
    caf::scoped_actor self{sys_};
    subscription_id result = 0;
    self
      ->request(bus_, caf::infinite, caf::subscribe_atom_v, delivery,
                std::move(types), static_cast<uint64_t>(opts.max_queued_events),
                opts.group)
      .receive(
        [&](subscription_id id) {
          result = id;
          std::lock_guard<std::mutex> guard{mtx_};
          active_.emplace(id, std::move(active));
        },
        [&](caf::error&) {
          caf::anon_send_exit(delivery, caf::exit_reason::user_shutdown);
        });
    return result;
  }

  caf::actor_system& sys_;
  bus_actor bus_;
  std::mutex mtx_;
  /// The flags of the subscriptions made through this facade.
  std::unordered_map<subscription_id, active_flag> active_;
};

} // namespace

event_bus_ptr make_bus_facade(caf::actor_system& sys, bus_actor bus) {
  return std::make_shared<actor_bus_facade>(sys, std::move(bus));
}

bus_subscriber_actor
spawn_function_delivery(caf::actor_system& sys, event_handler_fn fn,
                        std::string label, bool blocking, active_flag active) {
  if (blocking)
    return sys.spawn<caf::detached>(function_delivery, std::move(fn),
                                    std::move(label), std::move(active));
  return sys.spawn(function_delivery, std::move(fn), std::move(label),
                   std::move(active));
}

bus_subscriber_actor spawn_actor_delivery(caf::actor_system& sys,
                                          caf::actor target,
                                          active_flag active) {
  return sys.spawn(actor_delivery, std::move(target), std::move(active));
}

} // namespace detail

bus_actor spawn_in_process_bus(caf::actor_system& sys) {
  return sys.spawn(bus_impl);
}

event_bus_ptr make_in_process_bus(caf::actor_system& sys) {
  return detail::make_bus_facade(sys, spawn_in_process_bus(sys));
}

} // namespace es
