// Given events, then this read-model state: projection tests.
#pragma once

#include "es/projections/projection.hpp"
#include "es/projections/subscription.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/sql.hpp"
#include "es/testing/deterministic_system.hpp"
#include "es/testing/scenario_result.hpp"

#include <caf/error.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace es::testing {

/// A given/then test of a projection:
///
///   auto r = projection_scenario(view)
///              .in_stream<order>(id)
///              .given(order_created{"ada", "EUR"}, item_added{"pen", 2, 150})
///              .then([&] { return expect_eq("total", total_of(*view, id),
///                                           300); });
///
/// Given events become recorded events of the current stream (`in_stream`;
/// a stream of type "Test" with a random id until one is named), with
/// versions counted per stream and global positions from 1 in the order
/// they were given. Two ways to feed them:
/// - directly (the constructor): a `transactional_projection` handles them
///   all in one transaction of its read-model database (no checkpoint is
///   written); any other projection through `handle`. Events whose type the
///   projection does not subscribe to are left out, as its actor would.
/// - `through_actor`: the events are appended to a memory store and a
///   projection actor (`spawn_projection_actor`) catches up from it on CAF's
///   deterministic scheduler, with its checkpoint, error policy and batches.
///
/// `then(check)` feeds the events given so far (those not fed by an earlier
/// `then`), then runs `check`: a callable taking no
/// argument, or (for transactional projections) a `sql_transaction&` of the
/// read model's database, returning `check_result`, bool, `caf::error` or
/// `std::string` (see `check_result`). A handler error fails the scenario
/// before the check, naming the event. The projection object is the
/// caller's: it keeps what the scenario fed it.
class projection_scenario {
public:
  /// A scenario that feeds `projection` directly.
  explicit projection_scenario(projection_ptr projection);

  /// A scenario that feeds `projection` through a projection actor. The
  /// scenario sets the store (a memory store holding the given events), no
  /// bus and `detached = false`; the rest of `cfg` applies as given. The
  /// default stops at the first handler error (`error_strategy::stop`) and
  /// takes no lease (`ownership::none`).
  static projection_scenario through_actor(projection_ptr projection,
                                           subscription_config cfg
                                           = stop_on_error(),
                                           configure_fn configure = {});

  /// The subscription `through_actor` uses by default.
  static subscription_config stop_on_error();

  /// Later given events belong to `stream`.
  projection_scenario& in_stream(stream_id stream);

  /// Later given events belong to the stream of aggregate class `A` with
  /// id `id`.
  template <class A>
  projection_scenario& in_stream(const uuid& id) {
    return in_stream(stream_id{std::string{A::aggregate_type}, id});
  }

  /// Events of the current stream, oldest first. May be called more than
  /// once, for one stream or several.
  template <typed_event... Es>
  projection_scenario& given(const Es&... events) {
    (add(events), ...);
    return *this;
  }

  /// Events as stored (type, version and JSON payload as given); their
  /// stream fields are replaced by the current stream's.
  projection_scenario& given_events(event_batch events);

  /// Feeds the events given since the last `then` or `run`, then runs
  /// `check` over the read model. Through an actor, later events reach
  /// the same actor, which finds them in the store when it next polls
  /// (the scenario advances the deterministic clock by `poll_interval`).
  template <class F>
  scenario_result then(F check) {
    if constexpr (std::is_invocable_v<F&, sql_transaction&>) {
      return run_check_in_transaction(
        [&check](sql_transaction& tx) -> check_result {
          return to_check_result(check(tx));
        });
    } else {
      static_assert(std::is_invocable_v<F&>,
                    "a check takes no argument or a sql_transaction&");
      return run_check([&check]() -> check_result {
        return to_check_result(check());
      });
    }
  }

  /// Feeds the events given since the last `then` or `run` and reports
  /// whether every one was handled.
  scenario_result run();

  /// The given events as recorded events (positions and versions as fed).
  recorded_events recorded() const;

private:
  template <typed_event E>
  void add(const E& payload) {
    auto ev = make_event(payload);
    if (!ev) {
      if (setup_error_.empty())
        setup_error_ = "cannot encode a " + std::string{E::event_type} + ": "
                       + describe(ev.error());
      return;
    }
    given_events({std::move(*ev)});
  }

  scenario_result run_check(const std::function<check_result()>& check);

  scenario_result run_check_in_transaction(
    const std::function<check_result(sql_transaction&)>& check);

  /// Feeds the events once; the result carries any failure.
  scenario_result feed();

  void feed_directly(scenario_result& result);

  void feed_through_actor(scenario_result& result);

  std::string context() const;

  /// The actor system, store and actor of `through_actor`, kept across
  /// `then` calls so later events reach the same actor.
  struct actor_runtime;

  projection_ptr projection_;
  bool actor_ = false;
  subscription_config cfg_;
  configure_fn configure_;
  stream_id current_;
  /// Given events with their stream fields set, in order.
  event_batch given_;
  /// How many of them the projection has been fed.
  size_t fed_ = 0;
  std::string setup_error_;
  /// The first failure while feeding; it sticks.
  std::string feed_error_;
  caf::error feed_cause_;
  std::shared_ptr<actor_runtime> runtime_;
};

} // namespace es::testing
