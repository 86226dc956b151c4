#include "es/supervision/actors.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message_view.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <random>
#include <unordered_map>

namespace es {

namespace {

struct pending_call {
  caf::message msg;
  caf::response_promise rp;
  uint32_t attempt = 0;
};

struct retrying_state {
  static inline const char* name = "es.retrying";
  retry_config cfg;
  std::shared_ptr<const error_classifier> classifier;
  std::unordered_map<uint64_t, pending_call> pending;
  uint64_t next_id = 1;
  std::mt19937_64 rng{std::random_device{}()};
};

using retrying_actor = caf::stateful_actor<retrying_state>;

void attempt(retrying_actor* self, caf::actor target, uint64_t id) {
  auto& call = self->state.pending[id];
  self->request(target, caf::infinite, call.msg)
    .then(
      [self, id]() {
        auto i = self->state.pending.find(id);
        i->second.rp.deliver(caf::unit);
        self->state.pending.erase(i);
      },
      [self, target, id](caf::error& err) {
        auto& st = self->state;
        auto i = st.pending.find(id);
        auto& call = i->second;
        if (err == caf::sec::unexpected_response) {
          call.rp.deliver(err.context());
          st.pending.erase(i);
          return;
        }
        if (!st.classifier->classify(err).retryable) {
          call.rp.deliver(std::move(err));
          st.pending.erase(i);
          return;
        }
        if (call.attempt >= st.cfg.max_retries) {
          call.rp.deliver(caf::make_error(supervision_errc::retries_exhausted,
                                          "gave up after "
                                            + std::to_string(call.attempt + 1)
                                            + " attempts: " + describe(err)));
          st.pending.erase(i);
          return;
        }
        auto delay = backoff_delay(st.cfg, call.attempt, st.rng);
        ++call.attempt;
        self->delayed_send(self, delay, retry_atom_v, id);
      });
}

caf::behavior
retrying_impl(retrying_actor* self, caf::actor target, retry_config cfg,
              std::shared_ptr<const error_classifier> classifier) {
  self->state.cfg = cfg;
  self->state.classifier
    = classifier ? std::move(classifier) : std::make_shared<error_classifier>();
  self->set_default_handler([self, target](caf::scheduled_actor*,
                                           caf::message_view& x)
                              -> caf::result<caf::message> {
    auto id = self->state.next_id++;
    auto rp = self->make_response_promise();
    self->state.pending[id] = pending_call{x.move_content_to_message(), rp, 0};
    attempt(self, target, id);
    return rp;
  });
  return {
    [self, target](retry_atom, uint64_t id) {
      if (self->state.pending.count(id) > 0)
        attempt(self, target, id);
    },
  };
}

} // namespace

caf::actor spawn_retrying(caf::actor_system& sys, caf::actor target,
                          retry_config cfg,
                          std::shared_ptr<const error_classifier> classifier) {
  return sys.spawn(retrying_impl, std::move(target), cfg,
                   std::move(classifier));
}

} // namespace es
