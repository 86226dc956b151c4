#include "es/store/errors.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

namespace es {

namespace {

template <class T>
caf::result<T> lift(caf::expected<T>&& x) {
  if (x)
    return std::move(*x);
  return std::move(x.error());
}

dead_letter_actor::behavior_type
dead_letter_impl(dead_letter_actor::pointer self, dead_letter_store_ptr store,
                 event_store_ptr events) {
  return {
    [store](dlq_add_atom, const dead_letter& entry) -> caf::result<int64_t> {
      return lift(store->add(entry));
    },
    [store](dlq_list_atom, const dead_letter_query& q)
      -> caf::result<std::vector<dead_letter>> {
      return lift(store->list(q));
    },
    [store](dlq_get_atom, int64_t id) -> caf::result<std::vector<dead_letter>> {
      auto res = store->get(id);
      if (!res)
        return std::move(res.error());
      std::vector<dead_letter> result;
      if (*res)
        result.push_back(std::move(**res));
      return result;
    },
    [store](dlq_retrying_atom, int64_t id) -> caf::result<bool> {
      return lift(store->mark_retrying(id));
    },
    [store](dlq_resolve_atom, int64_t id,
            const std::string& by) -> caf::result<bool> {
      return lift(store->mark_resolved(id, by));
    },
    [store](dlq_stats_atom) -> caf::result<dead_letter_stats> {
      return lift(store->stats());
    },
    [store](dlq_purge_atom, int64_t seconds) -> caf::result<int64_t> {
      return lift(store->purge_resolved(std::chrono::seconds{seconds}));
    },
    [self, store,
     events](dlq_replay_atom, int64_t id,
             const replay_target_actor& projection) -> caf::result<bool> {
      auto entry = store->get(id);
      if (!entry)
        return std::move(entry.error());
      if (!*entry)
        return caf::make_error(supervision_errc::not_found,
                               "no dead letter " + std::to_string(id));
      auto ev = decode_recorded_event((*entry)->event_data);
      if (!ev)
        return std::move(ev.error());
      // The event as the log holds it now: an operator may have repaired
      // it since it failed.
      if (events) {
        auto current = events->find_event(ev->event_id);
        if (!current)
          return std::move(current.error());
        if (*current)
          *ev = std::move(**current);
      }
      if (auto marked = store->mark_retrying(id); !marked)
        return std::move(marked.error());
      auto rp = self->make_response_promise<bool>();
      auto failed = **entry;
      self->request(projection, caf::infinite, replay_atom_v, std::move(*ev))
        .then(
          [store, id, rp]() mutable {
            auto res = store->mark_resolved(id, "replay");
            if (res)
              rp.deliver(*res);
            else
              rp.deliver(res.error());
          },
          [store, failed, rp](caf::error& err) mutable {
            // Record the new failure on the same entry.
            auto again = failed;
            again.error_message = describe(err);
            again.last_failed_at = now_utc();
            static_cast<void>(store->add(again));
            rp.deliver(std::move(err));
          });
      return rp;
    },
  };
}

} // namespace

dead_letter_actor spawn_dead_letter_actor(caf::actor_system& sys,
                                          dead_letter_store_ptr store,
                                          event_store_ptr events) {
  return sys.spawn<caf::detached>(dead_letter_impl, std::move(store),
                                  std::move(events));
}

} // namespace es
