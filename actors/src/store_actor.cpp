#include "es/actors/store_actor.hpp"

#include "es/store/log.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_pool.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <atomic>
#include <vector>

namespace es {

namespace {

// -- the writer ---------------------------------------------------------------

struct pending_append {
  append_request request;
  /// The events as the caller sent them, when a bus is attached (for
  /// publishing) or the store can fail in a retryable way (for retries).
  event_batch events;
  caf::typed_response_promise<append_result> rp;
  /// Retries so far.
  uint32_t attempts = 0;
  /// An earlier attempt ended with the outcome unknown: a replay now means
  /// that attempt wrote the events.
  bool in_doubt = false;
};

struct writer_state {
  static inline const char* name = "es.store_writer";

  event_store_ptr store;
  store_actor_config cfg;
  /// Keep the caller's events (see `pending_append::events`).
  bool keep_events = false;
  size_t pending_publishes = 0;
  std::vector<pending_append> pending;
  /// The group being committed, and the callers it answers: kept to reuse
  /// their memory.
  std::vector<pending_append> batch;
  std::vector<size_t> answer;
  /// Appends waiting for their retry, and when the next retry is due.
  std::vector<pending_append> retrying;
  std::chrono::milliseconds backoff{0};
  bool flush_scheduled = false;
  bool retry_scheduled = false;
};

using writer_actor = caf::stateful_actor<writer_state>;

recorded_events to_recorded(const append_request& req, event_batch events,
                            const append_result& res) {
  recorded_events result;
  result.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    recorded_event rec;
    static_cast<event_data&>(rec) = std::move(events[i]);
    rec.aggregate_id = req.stream.aggregate_id;
    rec.aggregate_type = req.stream.aggregate_type;
    rec.aggregate_version = res.first_version + static_cast<int64_t>(i);
    rec.global_position = res.first_position + static_cast<int64_t>(i);
    result.push_back(std::move(rec));
  }
  return result;
}

void publish(writer_actor* self, recorded_events events) {
  auto& st = self->state;
  ++st.pending_publishes;
  auto on_done = [self] {
    --self->state.pending_publishes;
  };
  auto on_error = [self](caf::error& err) {
    --self->state.pending_publishes;
    log(log_level::warning,
        "publishing committed events failed: " + describe(err),
        log_context{"store"});
  };
  auto handle = self->request(st.cfg.bus, caf::infinite, caf::publish_atom_v,
                              std::move(events));
  // Beyond the limit, stop taking messages until the bus accepted this
  // publish: appends wait in the mailbox, so a slow subscriber slows the
  // writers instead of letting queues grow.
  if (st.pending_publishes > st.cfg.max_pending_publishes)
    handle.await(on_done, on_error);
  else
    handle.then(on_done, on_error);
}

/// Returns whether sending the same append again may succeed: the store
/// wrote nothing, or cannot tell, for a reason that can pass.
bool worth_retrying(const caf::error& err) {
  return has_code(err, store_errc::commit_outcome_unknown)
         || has_code(err, store_errc::connection_failed)
         || has_code(err, store_errc::storage_busy)
         || has_code(err, store_errc::timeout)
         || has_code(err, store_errc::serialization_failure);
}

/// Puts `p` back for a retry after the current backoff.
void schedule_retry(writer_actor* self, pending_append p) {
  auto& st = self->state;
  ++p.attempts;
  st.retrying.push_back(std::move(p));
  if (st.retry_scheduled)
    return;
  st.retry_scheduled = true;
  st.backoff = st.backoff.count() == 0
                 ? st.cfg.retry_backoff
                 : std::min(st.backoff * 2, st.cfg.max_retry_backoff);
  self->delayed_send(self, st.backoff, caf::tick_atom_v);
}

/// Commits everything that queued up since the last flush in one
/// `append_many` call (one transaction on group-committing adapters).
void flush(writer_actor* self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  // Empty here: each flush clears it when done.
  auto& batch = st.batch;
  batch.swap(st.pending);
  std::vector<append_request> requests;
  requests.reserve(batch.size());
  for (auto& p : batch) {
    // The request keeps its stream and expected version for publishing and
    // retries; a retry sends the caller's events again (the store may have
    // assigned versions to the ones it got).
    append_request r{p.request.stream, p.request.expected, {}};
    if (p.attempts > 0)
      r.events = p.events;
    else
      r.events = std::move(p.request.events);
    requests.push_back(std::move(r));
  }
  // One span per request, the child of the command whose trace its events
  // carry (see es/store/tracing.hpp).
  std::vector<tracing::span> spans;
  if (tracing::enabled()) {
    spans.reserve(requests.size());
    for (const auto& r : requests) {
      auto& sp = spans.emplace_back(
        "eventsource.event_store.append_events", tracing::span_kind::client,
        r.events.empty() ? std::nullopt
                         : tracing::extract(r.events.front().metadata));
      sp.set_attribute("eventsource.aggregate.type", r.stream.aggregate_type);
      sp.set_attribute("eventsource.aggregate.id",
                       r.stream.aggregate_id.to_string());
      sp.set_attribute("eventsource.event.count",
                       static_cast<int64_t>(r.events.size()));
      sp.set_attribute("eventsource.group.size",
                       static_cast<int64_t>(requests.size()));
      sp.set_attribute("db.system", st.store->name());
    }
  }
  auto results = st.store->append_many(std::move(requests));
  for (size_t i = 0; i < spans.size(); ++i)
    if (!results[i])
      spans[i].set_error(describe(results[i].error()));
  spans.clear();
  recorded_events committed;
  bool any_ok = false;
  // Callers are answered after the publish is sent, so a caller that hears
  // of its commit and then drains the bus finds its events there.
  auto& answer = st.answer;
  answer.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& p = batch[i];
    auto& res = results[i];
    if (!res && st.keep_events && p.attempts < st.cfg.append_retries
        && worth_retrying(res.error())) {
      p.in_doubt = p.in_doubt
                   || has_code(res.error(), store_errc::commit_outcome_unknown);
      schedule_retry(self, std::move(p));
      continue;
    }
    answer.push_back(i);
    if (!res)
      continue;
    any_ok = true;
    // A replay answering an attempt that ended in doubt: that attempt
    // wrote the events, so this call did.
    if (p.in_doubt && res->deduplicated)
      res->deduplicated = false;
    if (st.cfg.bus && !res->deduplicated) {
      auto recs = to_recorded(p.request, std::move(p.events), *res);
      committed.insert(committed.end(), std::make_move_iterator(recs.begin()),
                       std::make_move_iterator(recs.end()));
    }
  }
  if (any_ok && st.retrying.empty())
    st.backoff = std::chrono::milliseconds{0};
  if (!committed.empty())
    publish(self, std::move(committed));
  for (auto i : answer) {
    if (results[i])
      batch[i].rp.deliver(std::move(*results[i]));
    else
      batch[i].rp.deliver(std::move(results[i].error()));
  }
  batch.clear();
}

caf::behavior store_writer(writer_actor* self, event_store_ptr store,
                           store_actor_config cfg) {
  auto& st = self->state;
  st.keep_events = cfg.bus || store->blocking();
  st.store = std::move(store);
  st.cfg = std::move(cfg);
  return {
    [self](append_atom, append_request& req) -> caf::result<append_result> {
      auto& st = self->state;
      pending_append p;
      if (st.keep_events)
        p.events = req.events;
      p.request = std::move(req);
      p.rp = self->make_response_promise<append_result>();
      auto rp = p.rp;
      st.pending.push_back(std::move(p));
      // With nothing else waiting, commit at once. Otherwise queue a flush
      // message behind everything already in the mailbox, so the appends
      // waiting there end up in the same group.
      if (!st.flush_scheduled) {
        if (self->mailbox().empty()) {
          flush(self);
        } else {
          st.flush_scheduled = true;
          self->send(self, caf::flush_atom_v);
        }
      }
      return rp;
    },
    [self](append_atomic_atom, std::vector<append_request>& requests)
      -> caf::result<std::vector<append_result>> {
      auto& st = self->state;
      // Appends that arrived first are committed first.
      if (!st.pending.empty())
        flush(self);
      std::vector<event_batch> events;
      if (st.cfg.bus)
        for (const auto& req : requests)
          events.push_back(req.events);
      std::vector<append_request> heads;
      for (const auto& req : requests)
        heads.push_back(append_request{req.stream, req.expected, {}});
      auto res = st.store->append_atomic(std::move(requests));
      if (!res)
        return std::move(res.error());
      if (st.cfg.bus) {
        recorded_events committed;
        for (size_t i = 0; i < res->size(); ++i) {
          if ((*res)[i].deduplicated)
            continue;
          auto recs = to_recorded(heads[i], std::move(events[i]), (*res)[i]);
          committed.insert(committed.end(),
                           std::make_move_iterator(recs.begin()),
                           std::make_move_iterator(recs.end()));
        }
        if (!committed.empty())
          publish(self, std::move(committed));
      }
      return std::move(*res);
    },
    [self](caf::flush_atom) {
      if (self->state.flush_scheduled)
        flush(self);
    },
    [self](caf::tick_atom) {
      auto& st = self->state;
      st.retry_scheduled = false;
      for (auto& p : st.retrying)
        st.pending.push_back(std::move(p));
      st.retrying.clear();
      flush(self);
    },
  };
}

// -- readers ------------------------------------------------------------------

template <class T>
caf::result<T> lift(caf::expected<T>&& x) {
  if (x)
    return std::move(*x);
  return std::move(x.error());
}

caf::behavior store_reader(caf::event_based_actor*, event_store_ptr store,
                           snapshot_store_ptr snapshots) {
  return {
    [snapshots](snapshot_save_atom, const snapshot& snap) -> caf::result<bool> {
      if (!snapshots)
        return false;
      return lift(snapshots->save(snap));
    },
    [snapshots](snapshot_load_atom,
                const stream_id& stream) -> caf::result<std::vector<snapshot>> {
      std::vector<snapshot> result;
      if (!snapshots)
        return result;
      auto res = snapshots->load(stream);
      if (!res)
        return std::move(res.error());
      if (*res)
        result.push_back(std::move(**res));
      return result;
    },
    [store](read_stream_atom, const stream_id& stream,
            const read_stream_options& opts) -> caf::result<stream_slice> {
      tracing::span sp;
      if (tracing::enabled()) {
        sp = tracing::span{"eventsource.event_store.get_events",
                           tracing::span_kind::client};
        sp.set_attribute("eventsource.aggregate.type", stream.aggregate_type);
        sp.set_attribute("eventsource.aggregate.id",
                         stream.aggregate_id.to_string());
      }
      auto res = store->read_stream(stream, opts);
      if (sp.active() && !res)
        sp.set_error(describe(res.error()));
      return lift(std::move(res));
    },
    [store](read_all_atom,
            const read_all_options& opts) -> caf::result<all_slice> {
      tracing::span sp;
      if (tracing::enabled()) {
        sp = tracing::span{"eventsource.event_store.read_all",
                           tracing::span_kind::client};
        sp.set_attribute("eventsource.from_position", opts.after_position);
      }
      auto res = store->read_all(opts);
      if (sp.active() && !res)
        sp.set_error(describe(res.error()));
      return lift(std::move(res));
    },
    [store](read_correlated_atom, const uuid& correlation_id,
            const read_all_options& opts) -> caf::result<all_slice> {
      return lift(store->read_correlated(correlation_id, opts));
    },
    [store](stream_version_atom,
            const stream_id& stream) -> caf::result<int64_t> {
      return lift(store->stream_version(stream));
    },
    [store](find_event_atom, const uuid& id) -> caf::result<recorded_events> {
      auto res = store->find_event(id);
      if (!res)
        return std::move(res.error());
      recorded_events result;
      if (*res)
        result.push_back(std::move(**res));
      return result;
    },
    [store](head_position_atom) -> caf::result<int64_t> {
      return lift(store->head_position());
    },
    [store](metrics_atom) -> store_metrics {
      return store->metrics();
    },
  };
}

/// Sends appends to the writer (worker 0) and spreads everything else over
/// the readers, without an extra hop: the pool dispatches inside `enqueue`.
struct split_policy {
  split_policy() = default;
  split_policy(const split_policy&) : next(0) {
    // nop
  }

  void operator()(caf::actor_system&, caf::actor_pool::uplock& guard,
                  const caf::actor_pool::actor_vec& workers,
                  caf::mailbox_element_ptr& ptr, caf::execution_unit* host) {
    const auto& content = ptr->content();
    bool to_writer
      = workers.size() == 1
        || (!content.empty() && content.match_element<caf::atom_value>(0)
            && (content.get_as<caf::atom_value>(0) == append_atom::value
                || content.get_as<caf::atom_value>(0)
                     == append_atomic_atom::value));
    size_t idx = to_writer ? 0 : 1 + next++ % (workers.size() - 1);
    caf::actor selected = workers[idx];
    guard.unlock();
    selected->enqueue(std::move(ptr), host);
  }

  std::atomic<size_t> next{0};
};

} // namespace

store_actor spawn_store_actor(caf::actor_system& sys, event_store_ptr store,
                              store_actor_config cfg) {
  bool detached = cfg.detached.value_or(store->blocking());
  // Reads and snapshots need at least one reader.
  cfg.readers = std::max<size_t>(cfg.readers, 1);
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(), split_policy{});
  auto add = [&](caf::actor worker) {
    caf::anon_send(pool, caf::sys_atom::value, caf::put_atom::value, worker);
  };
  if (detached) {
    add(sys.spawn<caf::detached>(store_writer, store, cfg));
    for (size_t i = 0; i < cfg.readers; ++i)
      add(sys.spawn<caf::detached>(store_reader, store, cfg.snapshots));
  } else {
    add(sys.spawn(store_writer, store, cfg));
    for (size_t i = 0; i < cfg.readers; ++i)
      add(sys.spawn(store_reader, store, cfg.snapshots));
  }
  return caf::actor_cast<store_actor>(pool);
}

} // namespace es
