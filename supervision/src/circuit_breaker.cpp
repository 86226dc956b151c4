#include "es/supervision/circuit_breaker.hpp"

#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message_view.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

namespace es {

const char* to_string(circuit_state x) {
  switch (x) {
    case circuit_state::closed: return "closed";
    case circuit_state::open: return "open";
    case circuit_state::half_open: return "half_open";
  }
  return "?";
}

circuit_state circuit_breaker::state(time_point now) const {
  if (state_ == circuit_state::open
      && now - opened_at_ >= cfg_.recovery_timeout)
    return circuit_state::half_open;
  return state_;
}

bool circuit_breaker::allow(time_point now, caf::timespan* retry_after) {
  if (state_ == circuit_state::open) {
    auto elapsed = now - opened_at_;
    if (elapsed < cfg_.recovery_timeout) {
      if (retry_after != nullptr)
        *retry_after = cfg_.recovery_timeout - elapsed;
      return false;
    }
    state_ = circuit_state::half_open;
    half_open_calls_ = 0;
  }
  if (state_ == circuit_state::half_open) {
    if (half_open_calls_ >= cfg_.half_open_max_calls) {
      if (retry_after != nullptr)
        *retry_after = caf::timespan{0};
      return false;
    }
    ++half_open_calls_;
  }
  return true;
}

void circuit_breaker::record_success() {
  failures_ = 0;
  half_open_calls_ = 0;
  state_ = circuit_state::closed;
}

void circuit_breaker::record_failure(time_point now) {
  ++failures_;
  if (state_ == circuit_state::half_open
      || failures_ >= cfg_.failure_threshold) {
    state_ = circuit_state::open;
    opened_at_ = now;
    half_open_calls_ = 0;
  }
}

namespace {

struct breaker_state {
  static inline const char* name = "es.circuit_breaker";
  circuit_breaker breaker;
  circuit_breaker_stats stats;
  std::shared_ptr<const error_classifier> classifier;
};

using breaker_actor = caf::stateful_actor<breaker_state>;

bool counts_as_failure(const error_classifier& c, const caf::error& err) {
  auto k = c.classify(err).category;
  return k == error_category::transient || k == error_category::infrastructure;
}

caf::behavior breaker_impl(breaker_actor* self, caf::actor target,
                           circuit_breaker_config cfg,
                           std::shared_ptr<const error_classifier> classifier) {
  self->state.breaker = circuit_breaker{cfg};
  self->state.classifier
    = classifier ? std::move(classifier) : std::make_shared<error_classifier>();
  self->set_default_handler(
    [self, target](caf::scheduled_actor*,
                   caf::message_view& x) -> caf::result<caf::message> {
      auto& st = self->state;
      ++st.stats.calls;
      caf::timespan wait{0};
      if (!st.breaker.allow(self->clock().now(), &wait)) {
        ++st.stats.rejected;
        // Rounded up: a caller that waits as told finds the breaker ready.
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
        return caf::make_error(supervision_errc::circuit_open,
                               "circuit open; try again in "
                                 + std::to_string(ms) + " ms",
                               static_cast<int64_t>(ms));
      }
      auto rp = self->make_response_promise();
      self
        ->request(target, st.breaker.config().call_timeout,
                  x.move_content_to_message())
        .then(
          [self, rp]() mutable {
            auto& st = self->state;
            st.breaker.record_success();
            ++st.stats.successes;
            rp.deliver(caf::unit);
          },
          [self, rp](caf::error& err) mutable {
            auto& st = self->state;
            // Answers of any shape arrive as unexpected responses that
            // carry the answer: those are successes.
            if (err == caf::sec::unexpected_response) {
              st.breaker.record_success();
              ++st.stats.successes;
              rp.deliver(err.context());
              return;
            }
            if (counts_as_failure(*st.classifier, err)) {
              st.breaker.record_failure(self->clock().now());
              ++st.stats.failures;
            } else {
              st.breaker.record_success();
              ++st.stats.successes;
            }
            rp.deliver(std::move(err));
          });
      return rp;
    });
  return {
    [self](breaker_stats_atom) -> circuit_breaker_stats {
      auto result = self->state.stats;
      result.state = self->state.breaker.state(self->clock().now());
      result.consecutive_failures = self->state.breaker.consecutive_failures();
      return result;
    },
  };
}

} // namespace

caf::actor
spawn_circuit_breaker(caf::actor_system& sys, caf::actor target,
                      circuit_breaker_config cfg,
                      std::shared_ptr<const error_classifier> classifier) {
  return sys.spawn(breaker_impl, std::move(target), cfg, std::move(classifier));
}

} // namespace es
