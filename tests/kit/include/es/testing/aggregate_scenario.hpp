// Given events, when a command, then events or an error: aggregate tests.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/aggregate_actor.hpp"
#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/actors/store_actor.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/testing/concurrent_writer_store.hpp"
#include "es/testing/deterministic_system.hpp"
#include "es/testing/event_matching.hpp"
#include "es/testing/scenario_result.hpp"

#include <caf/error.hpp>
#include <caf/type_id.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace es::testing {

/// A given/when/then test of aggregate class `A` (an `es::aggregate` with
/// `aggregate_type`, `commands` and `handle` overloads):
///
///   auto r = aggregate_scenario<order>(registry)
///              .given(order_created{"ada", "EUR"}, item_added{"pen", 2, 150})
///              .when(pay_order{300, "ref-1"})
///              .then(order_paid{300, "ref-1"});
///   REQUIRE(r.ok()); // or any other framework; r.explain() says why not
///
/// Two ways to run, with the same expectations:
/// - directly (the constructor): the given events are loaded into a fresh
///   aggregate object (`load_from_history`) and the command runs against it,
///   as the aggregate actor runs it (rollback on error, a throwing handler
///   becomes `handler_failed`); the events are those it emitted. No actors,
///   no store: microseconds per scenario.
/// - `through_actors`: the given events are appended to a memory store, and
///   the command goes to an aggregate actor in front of a store actor, on
///   CAF's deterministic scheduler (`deterministic_system`). The events are
///   those the store holds afterwards, so the append, its expected version,
///   conflict retries (`meanwhile`) and rollback are part of the test.
///
/// Each `then...` runs the scenario anew and returns a `scenario_result`;
/// the scenario can be reused with other expectations. Not thread-safe.
template <class A>
class aggregate_scenario {
public:
  using state_type = typename A::state_type;

  /// A scenario that runs the aggregate object directly. `registry` must
  /// know every event type used (it decodes the given events for the
  /// aggregate's handlers and the emitted ones for comparison).
  explicit aggregate_scenario(std::shared_ptr<const event_registry> registry)
    : registry_(std::move(registry)) {
    // nop
  }

  /// A scenario that runs the command through an aggregate actor and a
  /// store actor on the deterministic scheduler. `configure` may add the
  /// application's types to the actor system's config.
  static aggregate_scenario
  through_actors(std::shared_ptr<const event_registry> registry,
                 configure_fn configure = {}) {
    aggregate_scenario result{std::move(registry)};
    result.actors_ = true;
    result.configure_ = std::move(configure);
    return result;
  }

  /// The aggregate's id (a random one by default).
  aggregate_scenario& for_id(const uuid& id) {
    id_ = id;
    return *this;
  }

  /// Runs the aggregate for `tenant`: given events carry it, emitted ones
  /// must.
  aggregate_scenario& for_tenant(const uuid& tenant) {
    tenant_ = tenant;
    return *this;
  }

  /// Through actors: how often the aggregate actor runs a command again
  /// after a version conflict (`aggregate_options::max_conflict_retries`).
  aggregate_scenario& max_conflict_retries(uint32_t n) {
    max_conflict_retries_ = n;
    return *this;
  }

  /// Events already in the aggregate's stream, oldest first. May be called
  /// more than once; the events add up.
  template <typed_event... Es>
  aggregate_scenario& given(const Es&... events) {
    (add(given_, events), ...);
    return *this;
  }

  /// Through actors only: events another writer appends to the stream after
  /// the aggregate actor loaded it and before it appends what the command
  /// emitted (see `make_concurrent_writer_store`). The append then fails
  /// with `wrong_expected_version`; the actor loads these events and runs
  /// the command again on the new state (`scenario_result::attempts` is 2).
  /// The expected events are those of the command only.
  template <typed_event... Es>
  aggregate_scenario& meanwhile(const Es&... events) {
    (add(meanwhile_, events), ...);
    return *this;
  }

  /// The command under test. `Cmd` is one of `A::commands`.
  template <class Cmd>
  aggregate_scenario& when(Cmd cmd) {
    if constexpr (caf::has_type_id<Cmd>::value)
      command_name_ = caf::type_name<Cmd>::value;
    else
      command_name_ = "the command";
    direct_ = [cmd](A& agg) {
      return agg.handle(cmd);
    };
    send_ = [cmd](deterministic_system& ds, const caf::actor& dest,
                  const uuid& id) {
      return ds.ask<command_result>(dest, command_envelope::to(id), cmd);
    };
    return *this;
  }

  /// Expects the command to succeed and emit exactly `expected`, in order
  /// (none: it changes nothing).
  template <typed_event... Es>
  scenario_result then(const Es&... expected) {
    return then_events(
      std::vector<expected_event>{expected_event{expected}...});
  }

  /// Expects the command to succeed and emit exactly `expected`.
  scenario_result then_events(const std::vector<expected_event>& expected) {
    auto run = execute();
    auto& result = run.result;
    if (!result.ok())
      return std::move(result);
    if (result.error()) {
      result.fail("expected " + list_types(expected)
                  + " but the command failed: " + describe(result.error()));
      return std::move(result);
    }
    auto diff = compare_events(expected, result.events(), registry_.get());
    if (!diff.empty())
      result.fail(diff);
    return std::move(result);
  }

  /// Expects the command to be rejected with `reason` (see `es::reject`),
  /// writing nothing.
  scenario_result then_error(std::string_view reason) {
    auto run = execute();
    auto& result = run.result;
    if (!expect_failure(result, "rejection '" + std::string{reason} + "'"))
      return std::move(result);
    if (!has_code(result.error(), actors_errc::command_rejected)
        || rejection_reason(result.error()) != reason)
      result.fail("expected rejection '" + std::string{reason} + "', got "
                  + describe(result.error()));
    return std::move(result);
  }

  /// Expects the command to fail with an error of `code`'s category and
  /// code (for example `es::actors_errc::handler_failed` or
  /// `es::store_errc::wrong_expected_version`), writing nothing.
  template <class E>
  requires std::is_enum_v<E> scenario_result then_error(E code) {
    return then_error_like(caf::make_error(code));
  }

  /// Expects the command to fail with an error of the same category and
  /// code as `like`, writing nothing.
  scenario_result then_error_like(const caf::error& like) {
    auto run = execute();
    auto& result = run.result;
    if (!expect_failure(result, describe(like)))
      return std::move(result);
    const auto& err = result.error();
    if (err.category() != like.category() || err.code() != like.code())
      result.fail("expected an error like " + describe(like) + ", got "
                  + describe(err));
    return std::move(result);
  }

  /// Expects the command to succeed and `check(state)` to pass on the state
  /// afterwards (through actors: the state of the aggregate loaded again
  /// from the store). `check` returns `check_result`, bool, `caf::error` or
  /// `std::string` (see `check_result`).
  template <class F>
  scenario_result then_state(F check) {
    auto run = execute();
    auto& result = run.result;
    if (!result.ok())
      return std::move(result);
    if (result.error()) {
      result.fail("the command failed: " + describe(result.error()));
      return std::move(result);
    }
    if (!run.state) {
      result.fail("no state to check");
      return std::move(result);
    }
    auto verdict = to_check_result(check(*run.state));
    if (!verdict.ok())
      result.fail("state check: " + verdict.why());
    return std::move(result);
  }

  /// Runs the scenario and reports what happened without expectations:
  /// `ok()` unless the setup failed (given events that do not apply, no
  /// command, no answer); the events and the error are in the result.
  scenario_result run() {
    return std::move(execute().result);
  }

private:
  struct outcome {
    scenario_result result;
    std::optional<state_type> state;
  };

  template <typed_event E>
  void add(event_batch& to, const E& payload) {
    auto ev = make_event(payload);
    if (!ev) {
      if (setup_error_.empty())
        setup_error_ = "cannot encode a " + std::string{E::event_type} + ": "
                       + describe(ev.error());
      return;
    }
    to.push_back(std::move(*ev));
  }

  stream_id stream() const {
    return {std::string{A::aggregate_type}, id_};
  }

  /// Stamps the stream fields on `events`, with versions from
  /// `first_version` (0: the store assigns them).
  event_batch stamped(event_batch events, int64_t first_version) const {
    for (auto& ev : events) {
      ev.aggregate_id = id_;
      ev.aggregate_type = std::string{A::aggregate_type};
      ev.aggregate_version = first_version;
      if (first_version > 0)
        ++first_version;
      ev.tenant_id = tenant_;
    }
    return events;
  }

  std::string context() const {
    auto text = "given " + list_types(given_);
    if (!meanwhile_.empty())
      text += ", meanwhile " + list_types(meanwhile_);
    text += ", when " + command_name_ + " on " + to_string(stream());
    text += actors_ ? " (through actors)" : " (directly)";
    return text;
  }

  /// Checks that the command failed and wrote nothing.
  static bool expect_failure(scenario_result& result,
                             const std::string& wanted) {
    if (!result.ok())
      return false;
    if (!result.error()) {
      result.fail("expected " + wanted + " but the command succeeded with "
                  + list_types(result.events()));
      return false;
    }
    if (!result.events().empty()) {
      result.fail("the command failed (" + describe(result.error())
                  + ") but wrote " + list_types(result.events()));
      return false;
    }
    return true;
  }

  outcome execute() {
    outcome out;
    out.result.set_context(context());
    if (!setup_error_.empty()) {
      out.result.fail(setup_error_);
      return out;
    }
    if (!direct_) {
      out.result.fail("the scenario has no command: call when(...)");
      return out;
    }
    if (actors_)
      run_actors(out);
    else
      run_direct(out);
    return out;
  }

  void run_direct(outcome& out) {
    if (!meanwhile_.empty()) {
      out.result.fail("meanwhile(...) needs through_actors(): only the "
                      "actor path appends and meets the other writer");
      return;
    }
    A agg{id_, registry_};
    agg.set_tenant(tenant_);
    recorded_events history;
    int64_t position = 0;
    for (auto& ev : stamped(given_, 1)) {
      recorded_event rec;
      static_cast<event_data&>(rec) = std::move(ev);
      rec.global_position = ++position;
      history.push_back(std::move(rec));
    }
    if (auto err = agg.load_from_history(history)) {
      out.result.fail("the given events do not apply: " + describe(err));
      return;
    }
    agg.set_context(
      command_context{uuid::time_ordered(), std::nullopt, "es.testing"});
    agg.begin_change();
    caf::error err;
    try {
      err = direct_(agg);
    } catch (const std::exception& ex) {
      err = caf::make_error(actors_errc::handler_failed,
                            std::string{"command handler threw: "} + ex.what());
    } catch (...) {
      err = caf::make_error(actors_errc::handler_failed,
                            std::string{"command handler threw"});
    }
    out.result.set_attempts(1);
    if (err) {
      agg.rollback();
      out.result.set_error(std::move(err));
    } else {
      out.result.set_events(agg.uncommitted_events());
    }
    out.state = agg.state();
  }

  void run_actors(outcome& out) {
    deterministic_system ds{configure_};
    memory_store_config mc;
    mc.registry = registry_;
    auto memory = make_memory_event_store(std::move(mc));
    auto s = stream();
    if (!given_.empty())
      if (auto res = memory->append(s, expected_version::no_stream(),
                                    stamped(given_, 1));
          !res) {
        out.result.fail("cannot store the given events: "
                        + describe(res.error()));
        return;
      }
    auto store = memory;
    if (!meanwhile_.empty())
      store = make_concurrent_writer_store(memory, s, stamped(meanwhile_, 0));
    store_actor_config sc;
    sc.detached = false;
    sc.readers = 1;
    auto store_handle = spawn_store_actor(ds.system(), store, sc);
    ds.stop_at_end(store_handle);
    aggregate_options ao;
    ao.store = store_handle;
    ao.registry = registry_;
    ao.tenant_id = tenant_;
    ao.max_conflict_retries = max_conflict_retries_;
    auto opts = std::make_shared<const aggregate_options>(std::move(ao));
    auto agg = ds.system().spawn(aggregate_actor<A>, id_, opts);
    ds.stop_at_end(agg);
    auto answer = send_(ds, agg, id_);
    if (!answer) {
      out.result.fail("the aggregate actor did not answer the command");
      return;
    }
    if (*answer) {
      out.result.set_attempts((*answer)->attempts);
    } else {
      out.result.set_attempts(1);
      out.result.set_error(std::move(answer->error()));
    }
    // What the command wrote: the stream after the given events and the
    // other writer's.
    auto before = static_cast<int64_t>(given_.size() + meanwhile_.size());
    event_batch written;
    A reloaded{id_, registry_};
    reloaded.set_tenant(tenant_);
    auto err = for_each_in_stream(*memory, s, {}, [&](recorded_event& ev) {
      if (ev.aggregate_version > before)
        written.push_back(ev);
      return reloaded.apply_stored(ev);
    });
    if (err) {
      out.result.fail("cannot load the aggregate afterwards: " + describe(err));
      return;
    }
    out.result.set_events(std::move(written));
    out.state = reloaded.state();
  }

  std::shared_ptr<const event_registry> registry_;
  uuid id_ = uuid::random();
  std::optional<uuid> tenant_;
  bool actors_ = false;
  configure_fn configure_;
  uint32_t max_conflict_retries_ = 3;
  event_batch given_;
  event_batch meanwhile_;
  std::string setup_error_;
  std::string command_name_;
  std::function<caf::error(A&)> direct_;
  std::function<std::optional<caf::expected<command_result>>(
    deterministic_system&, const caf::actor&, const uuid&)>
    send_;
};

} // namespace es::testing
