#include "es/bus/detail/consumer.hpp"

#include "es/bus/envelope.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/log.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <algorithm>
#include <utility>

namespace es::detail {

bool local_sub::wants(const recorded_event& ev) const {
  return types.empty()
         || std::find(types.begin(), types.end(), ev.event_type) != types.end();
}

void consumer_counters::fill(bus_stats& x) const {
  x.handlers_invoked = handlers_invoked.load();
  x.handler_errors = handler_errors.load();
  x.deliveries_in_flight = in_flight.load();
  x.deliveries_completed = completed.load();
  x.consumer_restarts = consumer_restarts.load();
}

void group_registry::set_subs(const std::string& group,
                              std::vector<local_sub> subs) {
  std::lock_guard guard{mtx_};
  subs_[group] = std::move(subs);
  ++generation_;
}

void group_registry::refresh(const std::string& group, uint64_t& generation,
                             std::vector<local_sub>& out) {
  if (generation_.load() == generation)
    return;
  std::lock_guard guard{mtx_};
  out = subs_[group];
  generation = generation_.load();
}

void group_registry::started(const std::string& group, caf::actor consumer,
                             consumer_counters& counters) {
  auto addr = consumer.address();
  {
    std::lock_guard guard{mtx_};
    running_[group] = consumer;
    if (starts_[group]++ > 0)
      ++counters.consumer_restarts;
  }
  // Leaves the registry when it ends (unless a newer one took its place).
  consumer->attach_functor([self = shared_from_this(), group, addr] {
    std::lock_guard guard{self->mtx_};
    auto i = self->running_.find(group);
    if (i != self->running_.end() && i->second.address() == addr)
      self->running_.erase(i);
  });
}

void group_registry::reset_starts(const std::string& group) {
  std::lock_guard guard{mtx_};
  starts_[group] = 0;
}

caf::actor group_registry::running(const std::string& group) {
  std::lock_guard guard{mtx_};
  auto i = running_.find(group);
  return i == running_.end() ? caf::actor{} : i->second;
}

namespace {

/// Delivers `events` to `sub` and waits for its answer: (invoked, errors).
std::pair<uint64_t, uint64_t> deliver(caf::scoped_actor& self,
                                      const local_sub& sub,
                                      const recorded_events& events) {
  std::pair<uint64_t, uint64_t> result{0, events.size()};
  self->request(sub.delivery, caf::infinite, deliver_atom_v, events)
    .receive(
      [&](uint64_t invoked, uint64_t errors) {
        result = {invoked, errors};
      },
      [&](caf::error&) {
        // The delivery actor is gone (unsubscribed meanwhile): nothing ran.
        result = {0, 0};
      });
  return result;
}

} // namespace

batch_failures
deliver_batch(caf::actor_system& sys, const std::vector<local_sub>& subs,
              const recorded_events& events, uint32_t max_retries,
              consumer_counters& counters) {
  batch_failures failed;
  if (events.empty())
    return failed;
  caf::scoped_actor self{sys};
  counters.in_flight += events.size();
  for (const auto& sub : subs) {
    recorded_events part;
    std::vector<size_t> index;
    for (size_t k = 0; k < events.size(); ++k)
      if (sub.wants(events[k])) {
        part.push_back(events[k]);
        index.push_back(k);
      }
    if (part.empty())
      continue;
    auto [invoked, errors] = deliver(self, sub, part);
    counters.handlers_invoked += invoked;
    counters.handler_errors += errors;
    if (errors == 0)
      continue;
    for (size_t j = 0; j < part.size(); ++j) {
      bool ok = false;
      for (uint32_t attempt = 0; attempt < max_retries && !ok; ++attempt) {
        auto [i2, e2] = deliver(self, sub, recorded_events{part[j]});
        counters.handlers_invoked += i2;
        counters.handler_errors += e2;
        ok = e2 == 0;
      }
      if (!ok)
        failed[index[j]] = "a handler failed " + std::to_string(max_retries + 1)
                           + " times (see the log)";
    }
  }
  counters.in_flight -= events.size();
  return failed;
}

batch_failures handle_envelopes(
  caf::actor_system& sys, const std::vector<local_sub>& subs,
  const std::vector<std::string_view>& bodies, uint32_t max_retries,
  consumer_counters& counters,
  const std::function<std::optional<std::string>(size_t)>& refuse) {
  batch_failures result;
  recorded_events events;
  std::vector<size_t> origin;
  for (size_t i = 0; i < bodies.size(); ++i) {
    if (refuse) {
      if (auto why = refuse(i)) {
        result[i] = std::move(*why);
        continue;
      }
    }
    auto ev = decode_envelope(bodies[i]);
    if (!ev) {
      result[i] = "not an event envelope: " + describe(ev.error());
      continue;
    }
    events.push_back(std::move(*ev));
    origin.push_back(i);
  }
  for (auto& [k, why] : deliver_batch(sys, subs, events, max_retries, counters))
    result[origin[k]] = std::move(why);
  counters.completed += 1;
  return result;
}

caf::behavior consumer_loop(caf::event_based_actor* self, consumer_base& base,
                            consumer_counters& counters, consumer_hooks hooks) {
  base.registry->started(base.group, caf::actor_cast<caf::actor>(self),
                         counters);
  self->send(self, caf::tick_atom_v);
  return {
    [self, &base, hooks = std::move(hooks)](caf::tick_atom) {
      base.registry->refresh(base.group, base.subs_generation, base.subs);
      if (base.subs.empty()) {
        if (hooks.idle)
          hooks.idle();
        self->delayed_send(self, hooks.idle_pause, caf::tick_atom_v);
        return;
      }
      if (auto err = hooks.poll()) {
        log(log_level::warning, hooks.label + ": " + describe(err),
            log_context{"bus"});
        if (hooks.failed)
          hooks.failed();
        auto delay
          = backoff_delay(hooks.backoff, base.failures_in_row, base.rng);
        ++base.failures_in_row;
        self->delayed_send(self, delay, caf::tick_atom_v);
        return;
      }
      base.failures_in_row = 0;
      self->send(self, caf::tick_atom_v);
    },
  };
}

} // namespace es::detail
