#include "es/testing/projection_scenario.hpp"

#include "es/projections/errors.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/testing/event_matching.hpp"

#include <algorithm>
#include <exception>
#include <map>
#include <set>
#include <utility>

namespace es::testing {

struct projection_scenario::actor_runtime {
  explicit actor_runtime(const configure_fn& configure) : ds(configure) {
    // nop
  }

  /// Whatever handle type `spawn_projection_actor` returns.
  using handle_type
    = decltype(spawn_projection_actor(std::declval<caf::actor_system&>(),
                                      projection_ptr{}, subscription_config{}));

  deterministic_system ds;
  event_store_ptr store = make_memory_event_store();
  handle_type actor;
};

namespace {

std::string handler_failure(const recorded_event& ev, const caf::error& err) {
  return "the projection failed on " + describe_event(ev) + ": "
         + describe(err);
}

/// Runs `fn`, turning an exception into an error as the projection actor
/// does.
template <class F>
caf::error guarded(F&& fn) {
  try {
    return fn();
  } catch (const std::exception& ex) {
    return caf::make_error(projections_errc::handler_failed,
                           std::string{"handler threw: "} + ex.what());
  } catch (...) {
    return caf::make_error(projections_errc::handler_failed,
                           std::string{"handler threw"});
  }
}

} // namespace

projection_scenario::projection_scenario(projection_ptr projection)
  : projection_(std::move(projection)), current_{"Test", uuid::random()} {
  // nop
}

projection_scenario projection_scenario::through_actor(
  projection_ptr projection, subscription_config cfg, configure_fn configure) {
  projection_scenario result{std::move(projection)};
  result.actor_ = true;
  result.cfg_ = std::move(cfg);
  result.configure_ = std::move(configure);
  return result;
}

subscription_config projection_scenario::stop_on_error() {
  subscription_config cfg;
  cfg.errors.strategy = error_strategy::stop;
  cfg.owner = ownership::none;
  return cfg;
}

projection_scenario& projection_scenario::in_stream(stream_id stream) {
  current_ = std::move(stream);
  return *this;
}

projection_scenario& projection_scenario::given_events(event_batch events) {
  for (auto& ev : events) {
    ev.aggregate_id = current_.aggregate_id;
    ev.aggregate_type = current_.aggregate_type;
    ev.aggregate_version = 0;
    given_.push_back(std::move(ev));
  }
  return *this;
}

recorded_events projection_scenario::recorded() const {
  recorded_events result;
  std::map<stream_id, int64_t> versions;
  int64_t position = 0;
  for (const auto& ev : given_) {
    recorded_event rec;
    static_cast<event_data&>(rec) = ev;
    rec.aggregate_version = ++versions[ev.stream()];
    rec.global_position = ++position;
    result.push_back(std::move(rec));
  }
  return result;
}

scenario_result projection_scenario::run() {
  return feed();
}

scenario_result
projection_scenario::run_check(const std::function<check_result()>& check) {
  auto result = feed();
  if (!result.ok())
    return result;
  auto verdict = check();
  if (!verdict.ok())
    result.fail(verdict.why());
  return result;
}

scenario_result projection_scenario::run_check_in_transaction(
  const std::function<check_result(sql_transaction&)>& check) {
  auto result = feed();
  if (!result.ok())
    return result;
  auto* tx_proj = dynamic_cast<transactional_projection*>(projection_.get());
  if (tx_proj == nullptr) {
    result.fail("a check that takes a sql_transaction& needs a "
                "transactional projection");
    return result;
  }
  check_result verdict;
  auto err = tx_proj->db().transact([&](sql_transaction& tx) -> caf::error {
    verdict = check(tx);
    return caf::none;
  });
  if (err)
    result.fail("cannot read the read model: " + describe(err));
  else if (!verdict.ok())
    result.fail(verdict.why());
  return result;
}

scenario_result projection_scenario::feed() {
  scenario_result result;
  result.set_context(context());
  if (!setup_error_.empty()) {
    result.fail(setup_error_);
    return result;
  }
  if (!projection_) {
    result.fail("the scenario has no projection");
    return result;
  }
  if (!feed_error_.empty()) {
    result.fail(feed_error_);
    result.set_error(feed_cause_);
    return result;
  }
  if (actor_)
    feed_through_actor(result);
  else
    feed_directly(result);
  if (!result.ok()) {
    feed_error_ = result.failure();
    feed_cause_ = result.error();
  }
  return result;
}

void projection_scenario::feed_directly(scenario_result& result) {
  auto all = recorded();
  recorded_events batch;
  auto types = projection_->subscribed_to();
  for (size_t i = fed_; i < all.size(); ++i)
    if (types.empty()
        || std::find(types.begin(), types.end(), all[i].event_type)
             != types.end())
      batch.push_back(std::move(all[i]));
  fed_ = all.size();
  if (batch.empty())
    return;
  const recorded_event* failed = nullptr;
  caf::error err;
  if (auto* tx_proj
      = dynamic_cast<transactional_projection*>(projection_.get())) {
    err = guarded([&] {
      return tx_proj->db().transact([&](sql_transaction& tx) -> caf::error {
        for (const auto& ev : batch)
          if (auto e = tx_proj->handle(tx, ev)) {
            failed = &ev;
            return e;
          }
        return caf::none;
      });
    });
  } else {
    for (const auto& ev : batch) {
      err = guarded([&] {
        return projection_->handle(ev);
      });
      if (err) {
        failed = &ev;
        break;
      }
    }
  }
  if (!err)
    return;
  result.set_error(err);
  if (failed != nullptr)
    result.fail(handler_failure(*failed, err));
  else
    result.fail("the read model's transaction failed: " + describe(err));
}

void projection_scenario::feed_through_actor(scenario_result& result) {
  if (!runtime_)
    runtime_ = std::make_shared<actor_runtime>(configure_);
  auto& rt = *runtime_;
  auto all = recorded();
  for (size_t i = fed_; i < all.size(); ++i) {
    const event_data& ev = all[i];
    if (auto res = rt.store->append(ev.stream(), expected_version::any(), {ev});
        !res) {
      result.set_error(res.error());
      result.fail("cannot store the given " + describe_payload(ev) + ": "
                  + describe(res.error()));
      return;
    }
  }
  auto head = static_cast<int64_t>(all.size());
  fed_ = all.size();
  if (!rt.actor) {
    auto cfg = cfg_;
    cfg.store = rt.store;
    cfg.bus = decltype(cfg.bus){};
    cfg.detached = false;
    rt.actor = spawn_projection_actor(rt.ds.system(), projection_, cfg);
    rt.ds.stop_at_end(rt.actor);
    rt.ds.run();
  } else {
    // Without a bus the actor looks for new events on its poll timer.
    auto step = std::min(cfg_.poll_interval, cfg_.checkpoint_interval);
    rt.ds.advance_time(cfg_.poll_interval, step);
  }
  auto status = rt.ds.ask<projection_status>(rt.actor, status_atom_v);
  if (!status) {
    result.fail("the projection actor did not answer");
    return;
  }
  if (!*status) {
    result.set_error(status->error());
    result.fail("the projection actor ended: " + describe(status->error()));
    return;
  }
  const auto& st = **status;
  if (st.state == projection_state::error
      || st.state == projection_state::stopped) {
    result.fail("the projection stopped (" + std::string{to_string(st.state)}
                + ") at position " + std::to_string(st.position) + " of "
                + std::to_string(head)
                + (st.detail.empty() ? std::string{} : ": " + st.detail));
    return;
  }
  if (st.position < head)
    result.fail("the projection reached position " + std::to_string(st.position)
                + " of " + std::to_string(head) + " (" + to_string(st.state)
                + ")" + (st.detail.empty() ? std::string{} : ": " + st.detail));
}

std::string projection_scenario::context() const {
  std::set<stream_id> streams;
  for (const auto& ev : given_)
    streams.insert(ev.stream());
  auto name = projection_ ? projection_->name() : std::string{"?"};
  return "given " + list_types(given_) + " in " + std::to_string(streams.size())
         + (streams.size() == 1 ? " stream" : " streams") + ", fed to " + name
         + (actor_ ? " through a projection actor" : " directly");
}

} // namespace es::testing
