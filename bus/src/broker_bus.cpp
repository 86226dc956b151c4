// The bus actor every broker bridge shares; see es/bus/detail/broker_bus.hpp.
#include "es/bus/detail/broker_bus.hpp"

#include "es/bus/detail/facade.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <map>
#include <vector>

namespace es::detail {

broker_backend::~broker_backend() {
  // nop
}

namespace {

struct bus_sub {
  subscription_id id = 0;
  bus_subscriber_actor delivery;
  std::vector<std::string> types;
  std::string group;
};

struct broker_bus_state {
  static inline const char* name = "es.broker_bus";

  std::shared_ptr<broker_backend> backend;
  broker_bus_options opts;
  std::shared_ptr<consumer_counters> counters;
  group_registry_ptr registry = std::make_shared<group_registry>();
  supervisor_actor supervisor;
  std::vector<bus_sub> subs;
  subscription_id next_id = 1;
  /// Groups whose consumer runs (or is being restarted).
  std::set<std::string> consumers;
  bool started = false;
  circuit_breaker breaker;
  uint64_t published = 0;
  uint64_t publish_failures = 0;
  uint64_t publishes_rejected = 0;
  std::vector<caf::response_promise> drainers;
  bool drain_check_scheduled = false;

  ~broker_bus_state() {
    // The supervisor ends the consumers when it goes.
    caf::anon_send_exit(supervisor, caf::exit_reason::user_shutdown);
    for (auto& s : subs)
      caf::anon_send_exit(s.delivery, caf::exit_reason::user_shutdown);
  }
};

/// The bus protocol plus its timers: `tick` for drain checks, `ok` for
/// the backend's idle work.
using broker_bus_actor = bus_actor::extend<caf::reacts_to<caf::tick_atom>,
                                           caf::reacts_to<caf::ok_atom>>;
using broker_bus_pointer = broker_bus_actor::stateful_pointer<broker_bus_state>;

std::string child_name(const std::string& group) {
  return "consumer:" + group;
}

/// Hands the subscriptions of `group` to its consumer.
void share_subs(broker_bus_state& st, const std::string& group) {
  std::vector<local_sub> subs;
  for (const auto& s : st.subs)
    if (s.group == group)
      subs.push_back(local_sub{s.id, s.delivery, s.types});
  st.registry->set_subs(group, std::move(subs));
}

void ensure_consumer(broker_bus_pointer self, const std::string& group) {
  auto& st = self->state;
  if (!st.started || st.consumers.count(group) > 0)
    return;
  st.registry->reset_starts(group);
  auto factory = std::make_shared<child_factory>(
    [backend = st.backend, registry = st.registry,
     group](caf::actor_system& sys) {
      return backend->spawn_consumer(sys, group, registry);
    });
  self
    ->request(st.supervisor, caf::infinite, supervise_atom_v, child_name(group),
              std::move(factory))
    .then([](const caf::actor&) {},
          [broker = st.opts.broker, group](caf::error& err) {
            log(log_level::error,
                broker + " bus: cannot start the consumer of " + group + ": "
                  + describe(err),
                log_context{"bus"});
          });
  st.consumers.insert(group);
}

void check_drains(broker_bus_pointer self) {
  auto& st = self->state;
  st.drain_check_scheduled = false;
  if (st.drainers.empty())
    return;
  caf::expected<bool> done = true;
  if (!st.consumers.empty() && st.published > 0)
    done = st.backend->drained(st.consumers);
  if (done && *done && st.counters->in_flight.load() > 0)
    done = false;
  if (done && !*done) {
    st.drain_check_scheduled = true;
    self->delayed_send(self, std::chrono::milliseconds(10), caf::tick_atom_v);
    return;
  }
  for (auto& rp : st.drainers) {
    if (done)
      rp.deliver(caf::unit);
    else
      rp.deliver(caf::make_error(bus_errc::broker_unavailable,
                                 "checking the groups failed: "
                                   + describe(done.error())));
  }
  st.drainers.clear();
}

broker_bus_actor::behavior_type
broker_bus_impl(broker_bus_pointer self,
                std::shared_ptr<broker_backend> backend,
                broker_bus_options opts,
                std::shared_ptr<consumer_counters> counters,
                supervisor_actor supervisor) {
  auto& st = self->state;
  st.backend = std::move(backend);
  st.breaker = circuit_breaker{opts.breaker};
  st.opts = std::move(opts);
  st.counters = std::move(counters);
  st.supervisor = std::move(supervisor);
  if (st.opts.idle_interval.count() > 0)
    self->delayed_send(self, st.opts.idle_interval, caf::ok_atom_v);
  return {
    [self](caf::publish_atom, recorded_events& events) -> caf::result<void> {
      auto& st = self->state;
      if (events.empty())
        return caf::unit;
      caf::timespan wait{0};
      if (!st.breaker.allow(self->clock().now(), &wait)) {
        ++st.publishes_rejected;
        auto ms
          = std::chrono::duration_cast<std::chrono::milliseconds>(wait).count();
        return caf::make_error(
          bus_errc::broker_unavailable,
          "circuit open: " + st.opts.broker + " failed "
            + std::to_string(st.breaker.consecutive_failures())
            + " publishes in a row; nothing was published; retry_after_ms="
            + std::to_string(ms));
      }
      auto err = st.backend->publish(events);
      if (err && has_code(err, bus_errc::broker_unavailable)) {
        ++st.publish_failures;
        st.breaker.record_failure(self->clock().now());
        return err;
      }
      // Other errors (an event that cannot be encoded, a refusal of the
      // broker's rules) are not the broker being away.
      st.breaker.record_success();
      if (err)
        return err;
      st.published += events.size();
      return caf::unit;
    },
    [self](caf::subscribe_atom, bus_subscriber_actor& delivery,
           std::vector<std::string>& types, uint64_t,
           std::string& group) -> subscription_id {
      auto& st = self->state;
      bus_sub s{st.next_id++, std::move(delivery), std::move(types),
                group.empty() ? st.opts.default_group : std::move(group)};
      if (std::none_of(st.subs.begin(), st.subs.end(), [&s](const auto& x) {
            return x.group == s.group;
          }))
        if (auto err = st.backend->prepare_group(s.group))
          log(log_level::warning,
              st.opts.broker + " bus: preparing group " + s.group
                + " failed: " + describe(err),
              log_context{"bus"});
      st.subs.push_back(s);
      share_subs(st, s.group);
      ensure_consumer(self, s.group);
      return s.id;
    },
    [self](caf::unsubscribe_atom, subscription_id id) -> bool {
      auto& st = self->state;
      auto i
        = std::find_if(st.subs.begin(), st.subs.end(), [id](const auto& s) {
            return s.id == id;
          });
      if (i == st.subs.end())
        return false;
      auto group = i->group;
      caf::anon_send_exit(i->delivery, caf::exit_reason::user_shutdown);
      st.subs.erase(i);
      share_subs(st, group);
      return true;
    },
    [self](stats_atom) -> bus_stats {
      auto& st = self->state;
      bus_stats s;
      st.counters->fill(s);
      s.events_published = st.published;
      s.subscribers = st.subs.size();
      s.publish_failures = st.publish_failures;
      s.publishes_rejected = st.publishes_rejected;
      s.broker_circuit = st.breaker.state(self->clock().now());
      s.broker_reconnects = st.backend->reconnects();
      return s;
    },
    [self](drain_atom) -> caf::result<void> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      st.drainers.push_back(rp);
      if (!st.drain_check_scheduled)
        check_drains(self);
      return rp;
    },
    [self](caf::tick_atom) {
      check_drains(self);
    },
    [self](caf::ok_atom) {
      auto& st = self->state;
      st.backend->idle();
      self->delayed_send(self, st.opts.idle_interval, caf::ok_atom_v);
    },
    [self](start_atom) {
      auto& st = self->state;
      st.started = true;
      std::set<std::string> groups;
      for (const auto& s : st.subs)
        groups.insert(s.group);
      for (const auto& g : groups)
        ensure_consumer(self, g);
    },
    [self](stop_atom) -> caf::result<void> {
      auto& st = self->state;
      st.started = false;
      if (st.consumers.empty())
        return caf::unit;
      // The supervisor stops each consumer for good (no restart after it
      // answered); a consumer ends between rounds, so what it read is
      // handled and acknowledged. Then wait for the consumers to end.
      auto rp = self->make_response_promise();
      auto left = std::make_shared<size_t>(st.consumers.size());
      auto promise = std::make_shared<caf::response_promise>(rp);
      auto one_done = [promise, left] {
        if (--*left == 0)
          promise->deliver(caf::unit);
      };
      self->set_down_handler([one_done](caf::down_msg&) {
        one_done();
      });
      for (const auto& group : st.consumers)
        self
          ->request(st.supervisor, caf::infinite, stop_atom_v,
                    child_name(group))
          .then(
            [self, group, one_done](bool) {
              if (auto running = self->state.registry->running(group))
                self->monitor(running); // a dead one is reported at once
              else
                one_done();
            },
            [one_done](caf::error&) {
              one_done();
            });
      st.consumers.clear();
      return rp;
    },
  };
}

} // namespace

broker_event_bus::broker_event_bus(std::string broker, event_bus_ptr inner,
                                   std::shared_ptr<bus_dead_letters> dlq,
                                   supervisor_actor supervisor)
  : broker_(std::move(broker)), inner_(std::move(inner)), dlq_(std::move(dlq)),
    supervisor_(std::move(supervisor)) {
  // nop
}

bus_actor broker_event_bus::handle() const {
  return inner_->handle();
}

caf::error broker_event_bus::publish(recorded_events events) {
  return inner_->publish(std::move(events));
}

subscription_id broker_event_bus::subscribe(std::string event_type,
                                            event_handler_fn fn,
                                            subscribe_options opts) {
  return inner_->subscribe(std::move(event_type), std::move(fn),
                           std::move(opts));
}

subscription_id
broker_event_bus::subscribe_all(std::shared_ptr<event_subscriber> sub,
                                subscribe_options opts) {
  return inner_->subscribe_all(std::move(sub), std::move(opts));
}

subscription_id
broker_event_bus::subscribe_to_all_events(event_handler_fn fn,
                                          subscribe_options opts) {
  return inner_->subscribe_to_all_events(std::move(fn), std::move(opts));
}

subscription_id
broker_event_bus::subscribe_actor(caf::actor target,
                                  std::vector<std::string> event_types,
                                  subscribe_options opts) {
  return inner_->subscribe_actor(std::move(target), std::move(event_types),
                                 std::move(opts));
}

bool broker_event_bus::unsubscribe(subscription_id id) {
  return inner_->unsubscribe(id);
}

bus_stats broker_event_bus::stats() {
  return inner_->stats();
}

caf::error broker_event_bus::drain(std::chrono::milliseconds timeout) {
  return inner_->drain(timeout);
}

caf::error broker_event_bus::start() {
  return inner_->start();
}

caf::error broker_event_bus::stop(std::chrono::milliseconds timeout) {
  return inner_->stop(timeout);
}

std::shared_ptr<bus_dead_letters> broker_event_bus::dead_letters() {
  return dlq_;
}

event_bus_ptr make_broker_bus(caf::actor_system& sys,
                              std::shared_ptr<broker_backend> backend,
                              broker_bus_options opts,
                              std::shared_ptr<consumer_counters> counters,
                              std::shared_ptr<bus_dead_letters> dlq) {
  auto supervisor = spawn_supervisor(sys, opts.consumer_restarts);
  auto broker = opts.broker;
  auto bus = sys.spawn<caf::detached>(broker_bus_impl, std::move(backend),
                                      std::move(opts), std::move(counters),
                                      supervisor);
  return std::make_shared<broker_event_bus>(
    std::move(broker), make_bus_facade(sys, caf::actor_cast<bus_actor>(bus)),
    std::move(dlq), std::move(supervisor));
}

supervisor_actor broker_bus_supervisor(const event_bus_ptr& bus,
                                       const std::string& broker) {
  auto* x = dynamic_cast<const broker_event_bus*>(bus.get());
  if (x == nullptr || x->broker() != broker)
    return {};
  return x->supervisor();
}

} // namespace es::detail
