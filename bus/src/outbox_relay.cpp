#include "es/bus/outbox_relay.hpp"

#include "es/store/errors.hpp"
#include "es/store/log.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <map>
#include <random>

namespace es {

namespace {

/// Sent by the relay to itself: look for rows now.
using relay_impl_actor
  = outbox_relay_actor::extend<caf::reacts_to<caf::tick_atom>>;

struct relay_state {
  static inline const char* name = "es.outbox_relay";

  outbox_relay_config cfg;
  outbox_relay_status status;
  /// Failed publishes or claims in a row, for the backoff.
  uint32_t failures_in_row = 0;
  std::mt19937_64 rng{std::random_device{}()};
};

using relay_pointer = relay_impl_actor::stateful_pointer<relay_state>;

/// What one batch did.
struct batch_result {
  /// Rows published and marked.
  uint64_t published = 0;
  /// Rows claimed (0: nothing left of the partition).
  size_t claimed = 0;
  caf::error err;
};

/// Reads the events of `entries` (oldest first), one page when they sit
/// close together in the feed, else one by one. An event the store does
/// not have is left out of the result.
caf::expected<std::map<int64_t, recorded_event>>
read_events(event_store& store, const std::vector<outbox_entry>& entries) {
  std::map<int64_t, recorded_event> result;
  auto first = entries.front().global_position;
  auto last = entries.back().global_position;
  auto span = static_cast<size_t>(std::max<int64_t>(1, last - first + 1));
  if (span <= 4 * entries.size()) {
    read_all_options opts;
    opts.after_position = first - 1;
    opts.max_count = span;
    auto page = store.read_all(opts);
    if (!page)
      return std::move(page.error());
    std::map<uuid, int64_t> wanted;
    for (const auto& e : entries)
      wanted.emplace(e.event_id, e.id);
    for (auto& ev : page->events)
      if (auto i = wanted.find(ev.event_id); i != wanted.end())
        result.emplace(i->second, std::move(ev));
  }
  for (const auto& e : entries) {
    if (result.count(e.id) > 0)
      continue;
    auto ev = store.find_event(e.event_id);
    if (!ev)
      return std::move(ev.error());
    if (*ev)
      result.emplace(e.id, std::move(**ev));
  }
  return result;
}

void note_failure(relay_state& st, const std::string& what,
                  const caf::error& err) {
  st.status.last_error = what + ": " + describe(err);
  log(log_level::warning, st.cfg.name + ": " + st.status.last_error,
      log_context{"relay"});
}

/// Marks the rows of `entries` failed with `why`, counting the ones given
/// up.
caf::error mark_failed(relay_state& st, outbox_claim& claim,
                       const std::vector<const outbox_entry*>& entries,
                       const std::string& why) {
  for (const auto* e : entries) {
    if (auto err = claim.mark_failed(e->id, why))
      return err;
    if (e->retry_count + 1 >= st.cfg.max_retries) {
      ++st.status.given_up;
      log(log_level::error,
          st.cfg.name + ": gave up event " + e->event_id.to_string() + " ("
            + e->event_type + " of " + e->aggregate_type + "/"
            + e->aggregate_id.to_string() + ") after "
            + std::to_string(e->retry_count + 1) + " failed publishes: " + why,
          log_context{"relay"});
    }
  }
  return caf::none;
}

/// Claims, reads, publishes and marks one batch.
batch_result relay_batch(relay_state& st) {
  batch_result result;
  auto& cfg = st.cfg;
  auto claimed
    = cfg.outbox->claim(cfg.batch_size, cfg.max_retries, cfg.partition);
  if (!claimed) {
    note_failure(st, "claiming outbox rows failed", claimed.error());
    result.err = std::move(claimed.error());
    return result;
  }
  auto& claim = **claimed;
  const auto& entries = claim.entries();
  result.claimed = entries.size();
  if (entries.empty()) {
    static_cast<void>(claim.commit());
    return result;
  }
  auto events = read_events(*cfg.store, entries);
  if (!events) {
    // The claim rolls back: the rows stay as they were.
    note_failure(st, "reading the events of outbox rows failed",
                 events.error());
    result.err = std::move(events.error());
    return result;
  }
  recorded_events batch;
  std::vector<int64_t> ids;
  std::vector<const outbox_entry*> missing;
  std::vector<const outbox_entry*> sent;
  for (const auto& e : entries) {
    auto i = events->find(e.id);
    if (i == events->end()) {
      missing.push_back(&e);
      continue;
    }
    batch.push_back(std::move(i->second));
    ids.push_back(e.id);
    sent.push_back(&e);
  }
  if (!missing.empty())
    if (auto err
        = mark_failed(st, claim, missing, "the event is not in the store")) {
      result.err = std::move(err);
      return result;
    }
  // A span per relayed event, the child of the command that wrote it.
  std::vector<tracing::span> spans;
  if (tracing::enabled())
    for (const auto& ev : batch) {
      auto& sp = spans.emplace_back("eventsource.outbox.relay",
                                    tracing::span_kind::producer,
                                    tracing::extract(ev.metadata));
      sp.set_attribute("eventsource.relay", st.status.name);
      sp.set_attribute("eventsource.event.type", ev.event_type);
      sp.set_attribute("eventsource.event.id", ev.event_id.to_string());
    }
  caf::error published;
  if (!batch.empty())
    published = cfg.bus->publish(std::move(batch));
  for (auto& sp : spans)
    if (published)
      sp.set_error(describe(published));
  spans.clear();
  if (published) {
    ++st.status.publish_failures;
    note_failure(
      st, "publishing " + std::to_string(sent.size()) + " outbox rows failed",
      published);
    // Whatever the bus may have taken is published again later; consumers
    // dedupe by event id.
    if (auto err = mark_failed(st, claim, sent, describe(published))) {
      result.err = std::move(err);
      return result;
    }
    if (auto err = claim.commit())
      note_failure(st, "recording failed publishes failed", err);
    result.err = std::move(published);
    return result;
  }
  if (!ids.empty())
    if (auto err = claim.mark_published(ids)) {
      note_failure(st, "marking outbox rows published failed", err);
      result.err = std::move(err);
      return result;
    }
  if (auto err = claim.commit()) {
    // Published but not marked: they go out again (at least once).
    note_failure(st, "committing outbox marks failed", err);
    result.err = std::move(err);
    return result;
  }
  result.published = ids.size();
  st.status.published += ids.size();
  return result;
}

void schedule(relay_pointer self, const batch_result& r) {
  auto& st = self->state;
  if (st.cfg.poll_interval.count() <= 0)
    return;
  if (r.err) {
    auto delay = backoff_delay(st.cfg.backoff, st.failures_in_row, st.rng);
    ++st.failures_in_row;
    self->delayed_send(self, delay, caf::tick_atom_v);
    return;
  }
  st.failures_in_row = 0;
  if (r.claimed >= st.cfg.batch_size)
    self->send(self, caf::tick_atom_v);
  else
    self->delayed_send(self, st.cfg.poll_interval, caf::tick_atom_v);
}

relay_impl_actor::behavior_type relay_impl(relay_pointer self,
                                           outbox_relay_config cfg) {
  self->state.cfg = std::move(cfg);
  self->state.status.name = self->state.cfg.name;
  if (self->state.cfg.poll_interval.count() > 0)
    self->send(self, caf::tick_atom_v);
  return {
    [self](caf::tick_atom) {
      schedule(self, relay_batch(self->state));
    },
    [self](caf::flush_atom) -> caf::result<uint64_t> {
      uint64_t total = 0;
      for (;;) {
        auto r = relay_batch(self->state);
        if (r.err)
          return std::move(r.err);
        total += r.published;
        if (r.claimed == 0)
          return total;
      }
    },
    [self](stats_atom) -> outbox_relay_status {
      auto& st = self->state;
      auto s = st.status;
      if (auto counts = st.cfg.outbox->counts()) {
        s.pending = counts->pending;
        s.failed = counts->failed;
        if (counts->oldest_waiting) {
          auto age = std::chrono::system_clock::now() - *counts->oldest_waiting;
          s.oldest_waiting_ms = std::max<int64_t>(
            0,
            std::chrono::duration_cast<std::chrono::milliseconds>(age).count());
        }
      } else {
        s.last_error
          = "counting outbox rows failed: " + describe(counts.error());
      }
      return s;
    },
  };
}

} // namespace

outbox_relay_actor spawn_outbox_relay(caf::actor_system& sys,
                                      outbox_relay_config cfg) {
  if (!cfg.outbox || !cfg.store || !cfg.bus)
    return {};
  if (cfg.batch_size == 0)
    cfg.batch_size = 1;
  return sys.spawn<caf::detached>(relay_impl, std::move(cfg));
}

} // namespace es
