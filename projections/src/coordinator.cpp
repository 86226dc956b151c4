#include "es/projections/coordinator.hpp"

#include "es/projections/errors.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/store/log.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor_cast.hpp>
#include <caf/scoped_actor.hpp>

#include <algorithm>
#include <thread>

namespace es {

projection_coordinator::projection_coordinator(caf::actor_system& sys,
                                               restart_policy restarts)
  : sys_(sys), supervisor_(spawn_supervisor(sys, restarts)) {
  // nop
}

projection_coordinator::~projection_coordinator() {
  stop();
}

void projection_coordinator::stop() {
  std::lock_guard guard{mtx_};
  if (!supervisor_)
    return;
  caf::scoped_actor self{sys_};
  for (const auto& name : names_)
    self->request(supervisor_, caf::infinite, stop_atom_v, name)
      .receive([](bool) {}, [](caf::error&) {});
  self->send_exit(supervisor_, caf::exit_reason::user_shutdown);
  supervisor_ = supervisor_actor{};
}

caf::error projection_coordinator::add(projection_ptr proj,
                                       subscription_config cfg) {
  if (!proj || !cfg.store)
    return caf::make_error(projections_errc::invalid_config,
                           std::string{"a projection and a store are needed"});
  auto name = cfg.checkpoint_name.empty() ? proj->name() : cfg.checkpoint_name;
  if (cfg.partition.count > 1 && cfg.checkpoint_name.empty())
    name += "#" + std::to_string(cfg.partition.index) + "/"
            + std::to_string(cfg.partition.count);
  cfg.checkpoint_name = name;
  // Resolved here rather than by each actor, so that restarts share the
  // store (an in-memory checkpoint survives them) and the coordinator can
  // read a checkpoint while the actor is down.
  if (!cfg.checkpoints) {
    if (auto* tp = dynamic_cast<transactional_projection*>(proj.get()))
      cfg.checkpoints = tp->db().checkpoints();
    else if (auto* cp
             = dynamic_cast<checkpoint_tracking_projection*>(proj.get()))
      cfg.checkpoints = cp->checkpoints();
    if (!cfg.checkpoints)
      cfg.checkpoints = make_memory_checkpoint_store();
  }
  {
    std::lock_guard guard{mtx_};
    for (const auto& n : names_)
      if (n == name)
        return caf::make_error(projections_errc::duplicate_projection,
                               "a projection named " + name + " runs already");
    names_.push_back(name);
    entries_[name] = entry{cfg.checkpoints, cfg.store, proj, cfg};
  }
  auto factory = [proj, cfg](caf::actor_system& sys) {
    return caf::actor_cast<caf::actor>(spawn_projection_actor(sys, proj, cfg));
  };
  auto res = supervise(sys_, supervisor_, name, factory);
  if (!res)
    return std::move(res.error());
  return caf::none;
}

caf::error projection_coordinator::add_partitioned(
  std::function<projection_ptr(uint32_t)> make, uint32_t count,
  subscription_config cfg) {
  for (uint32_t k = 0; k < count; ++k) {
    auto worker = cfg;
    worker.partition = partition_spec{k, count};
    if (auto err = add(make(k), worker))
      return err;
  }
  return caf::none;
}

caf::error projection_coordinator::remove(const std::string& name) {
  std::lock_guard guard{mtx_};
  auto i = std::find(names_.begin(), names_.end(), name);
  if (i == names_.end())
    return caf::make_error(projections_errc::unknown_projection,
                           "no projection named " + name);
  names_.erase(i);
  entries_.erase(name);
  if (!supervisor_)
    return caf::none;
  caf::scoped_actor self{sys_};
  caf::error result;
  self->request(supervisor_, caf::infinite, stop_atom_v, name)
    .receive([](bool) {},
             [&](caf::error& err) {
               result = std::move(err);
             });
  return result;
}

std::vector<std::string> projection_coordinator::names() const {
  std::lock_guard guard{mtx_};
  return names_;
}

caf::expected<projection_actor_handle>
projection_coordinator::current(const std::string& name) {
  {
    std::lock_guard guard{mtx_};
    if (entries_.count(name) == 0)
      return caf::make_error(projections_errc::unknown_projection,
                             "no projection named " + name);
  }
  caf::scoped_actor self{sys_};
  caf::expected<projection_actor_handle> result{caf::error{}};
  self->request(supervisor_, caf::infinite, child_atom_v, name)
    .receive(
      [&](caf::actor& a) {
        // The supervisor is generic and hands out `caf::actor`; every
        // child this coordinator supervises is a projection actor that its
        // own factory spawned (see `add`).
        if (a)
          result = caf::actor_cast<projection_actor_handle>(std::move(a));
        else
          result = caf::make_error(projections_errc::not_running,
                                   name + " is restarting or failed");
      },
      [&](caf::error& err) {
        result = std::move(err);
      });
  return result;
}

caf::expected<projection_actor_handle>
projection_coordinator::actor(const std::string& name) {
  return current(name);
}

caf::expected<projection_status>
projection_coordinator::status(const std::string& name) {
  // A failed or restarting projection still has a status to report.
  auto unavailable = [&](const caf::error& why) {
    projection_status s;
    s.name = name;
    s.detail = describe(why);
    // Its checkpoint and the head still say how far it got.
    entry e;
    {
      std::lock_guard guard{mtx_};
      if (auto i = entries_.find(name); i != entries_.end())
        e = i->second;
    }
    if (e.checkpoints)
      if (auto cp = e.checkpoints->load(name); cp && *cp)
        s.position = (*cp)->position;
    if (e.store)
      if (auto head = e.store->head_position())
        s.head = std::max(*head, s.position);
    s.lag_events = s.head - s.position;
    bool restarting = false;
    for (const auto& c : supervision())
      if (c.name == name) {
        restarting = c.state == child_state::restarting
                     || c.state == child_state::running;
        // The supervisor knows why the actor went down.
        if (!c.last_error.empty())
          s.detail = c.last_error;
      }
    if (restarting) {
      s.state = projection_state::starting;
      s.health.level = health_level::warnings;
      s.health.warnings.push_back("restarting after: " + describe(why));
    } else {
      s.state = projection_state::error;
      s.health.level = health_level::errors;
      s.health.errors.push_back(describe(why));
    }
    return s;
  };
  auto a = current(name);
  if (!a && has_code(a.error(), projections_errc::unknown_projection))
    return std::move(a.error());
  if (!a)
    return unavailable(a.error());
  caf::scoped_actor self{sys_};
  caf::expected<projection_status> result{caf::error{}};
  self->request(*a, std::chrono::seconds(30), status_atom_v)
    .receive(
      [&](projection_status& s) {
        result = std::move(s);
      },
      [&](caf::error& err) {
        result = unavailable(err);
      });
  return result;
}

std::vector<projection_status> projection_coordinator::status() {
  std::vector<projection_status> result;
  for (const auto& name : names())
    if (auto s = status(name))
      result.push_back(std::move(*s));
  return result;
}

namespace {

template <class Atom>
caf::error
ask_bool(caf::actor_system& sys, const projection_actor_handle& a, Atom atom) {
  caf::scoped_actor self{sys};
  caf::error result;
  self->request(a, std::chrono::seconds(30), atom)
    .receive([](bool) {},
             [&](caf::error& err) {
               result = std::move(err);
             });
  return result;
}

} // namespace

caf::error projection_coordinator::pause(const std::string& name) {
  auto a = current(name);
  if (!a)
    return std::move(a.error());
  return ask_bool(sys_, *a, pause_atom_v);
}

caf::error projection_coordinator::resume(const std::string& name) {
  auto a = current(name);
  if (!a)
    return std::move(a.error());
  return ask_bool(sys_, *a, resume_atom_v);
}

caf::error projection_coordinator::wait_until_caught_up(
  const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t target = -1;
  for (;;) {
    auto s = status(name);
    if (!s)
      return std::move(s.error());
    if (s->state == projection_state::error)
      return caf::make_error(projections_errc::projection_stopped,
                             name + " stopped on errors");
    // A restarting projection reports no position yet, and a standby
    // waits for another instance: wait for them.
    if (s->state != projection_state::starting
        && s->state != projection_state::standby) {
      if (target < 0)
        target = s->head;
      if (s->position >= target)
        return caf::none;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return caf::make_error(
        projections_errc::not_caught_up,
        name + " did not catch up in time (at " + std::to_string(s->position)
          + " of " + std::to_string(std::max<int64_t>(target, 0)) + ")");
    // Polling a status: the projection reports progress, nothing signals
    // completion.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

caf::error projection_coordinator::rebuild(
  const std::string& name,
  const std::function<void(const rebuild_progress&)>& progress,
  std::chrono::milliseconds timeout, std::chrono::milliseconds every) {
  entry e;
  {
    std::lock_guard guard{mtx_};
    if (auto i = entries_.find(name); i != entries_.end())
      e = i->second;
  }
  if (auto* tp = dynamic_cast<transactional_projection*>(e.proj.get());
      tp != nullptr && !tp->tables().empty())
    return rebuild_in_shadow(name, e, progress, timeout, every);
  auto a = current(name);
  if (!a)
    return std::move(a.error());
  if (auto err = ask_bool(sys_, *a, caf::reset_atom_v))
    return err;
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + timeout;
  int64_t total = -1;
  for (;;) {
    auto s = status(name);
    if (!s)
      return std::move(s.error());
    if (total < 0)
      total = s->head;
    auto secs
      = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
    rebuild_progress p{std::min(s->position, total), total,
                       secs > 0 ? static_cast<double>(s->position) / secs : 0};
    if (progress)
      progress(p);
    if (s->state == projection_state::error)
      return caf::make_error(projections_errc::projection_stopped,
                             name + " stopped on errors during the rebuild");
    if (s->position >= total)
      return caf::none;
    if (std::chrono::steady_clock::now() >= deadline)
      return caf::make_error(projections_errc::not_caught_up,
                             "the rebuild of " + name + " did not finish");
    std::this_thread::sleep_for(every);
  }
}

namespace {

/// The status of an actor that is not supervised (the shadow).
caf::expected<projection_status> status_of(caf::actor_system& sys,
                                           const projection_actor_handle& a) {
  caf::scoped_actor self{sys};
  caf::expected<projection_status> result{caf::error{}};
  self->request(a, std::chrono::seconds(30), status_atom_v)
    .receive(
      [&](projection_status& s) {
        result = std::move(s);
      },
      [&](caf::error& err) {
        result = std::move(err);
      });
  return result;
}

/// Ends `a` and waits until it is gone (its last transaction done).
void stop_and_wait(caf::actor_system& sys, const projection_actor_handle& a) {
  caf::scoped_actor self{sys};
  self->monitor(a);
  self->send_exit(a, caf::exit_reason::user_shutdown);
  self->receive([](const caf::down_msg&) {},
                caf::after(std::chrono::seconds(60)) >> [] {});
}

/// A name usable in a file or schema name.
std::string tag_of(const std::string& name) {
  std::string result = "rebuild_";
  for (char c : name)
    result += ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9'))
                ? c
                : '_';
  return result.substr(0, 40);
}

} // namespace

caf::error projection_coordinator::rebuild_in_shadow(
  const std::string& name, const entry& e,
  const std::function<void(const rebuild_progress&)>& progress,
  std::chrono::milliseconds timeout, std::chrono::milliseconds every) {
  auto& live = static_cast<transactional_projection&>(*e.proj);
  // One rebuild of this projection at a time, in any process.
  auto rebuilding = e.checkpoints->try_lease(name + "@rebuild");
  if (!rebuilding)
    return caf::error{rebuilding.error().code(), rebuilding.error().category(),
                      caf::make_message("a rebuild of " + name
                                        + " is already running: "
                                        + describe(rebuilding.error()))};
  auto shadow_db = live.db().open_shadow(tag_of(name));
  if (!shadow_db)
    return std::move(shadow_db.error());
  auto discard = [&] {
    if (auto err = (*shadow_db)->discard())
      log(log_level::warning,
          "the shadow of " + name + " was not removed: " + describe(err),
          log_context{"projections"});
  };
  auto shadow = live.with_db(*shadow_db);
  if (!shadow) {
    discard();
    return caf::make_error(projections_errc::shadow_unsupported,
                           name
                             + " names its tables but cannot run on "
                               "another database (with_db)");
  }
  if (auto err = (*shadow_db)->transact([&](sql_transaction& tx) {
        return shadow->create_tables(tx);
      })) {
    discard();
    return err;
  }
  auto cfg = e.cfg;
  cfg.bus = bus_actor{};
  cfg.checkpoints = (*shadow_db)->checkpoints();
  cfg.dead_letters = (*shadow_db)->dead_letters();
  cfg.start = start_from::beginning;
  cfg.owner = ownership::none;
  cfg.poll_interval = std::min(cfg.poll_interval, caf::timespan{every});
  cfg.checkpoint_name = name;
  auto worker = spawn_projection_actor(sys_, shadow, cfg);
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + timeout;
  // Waits until the shadow reached `target`, reporting progress.
  auto catch_up = [&](int64_t target) -> caf::error {
    for (;;) {
      auto s = status_of(sys_, worker);
      if (!s)
        return std::move(s.error());
      auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                                - started)
                    .count();
      if (progress)
        progress(rebuild_progress{
          std::min(s->position, target), target,
          secs > 0 ? static_cast<double>(s->position) / secs : 0});
      if (s->state == projection_state::error)
        return caf::make_error(projections_errc::projection_stopped,
                               "the rebuild of " + name
                                 + " stopped: " + s->detail);
      if (s->position >= target)
        return caf::none;
      if (std::chrono::steady_clock::now() >= deadline)
        return caf::make_error(projections_errc::not_caught_up,
                               "the rebuild of " + name + " did not finish");
      // Polling a status: the projection reports progress, nothing
      // signals completion.
      std::this_thread::sleep_for(every);
    }
  };
  auto fail = [&](caf::error err) {
    stop_and_wait(sys_, worker);
    discard();
    return err;
  };
  auto head = e.store->head_position();
  if (!head)
    return fail(std::move(head.error()));
  if (auto err = catch_up(*head))
    return fail(std::move(err));
  // The live projection stops applying; the shadow takes the last events.
  auto a = current(name);
  if (a)
    if (auto err = ask_bool(sys_, *a, pause_atom_v))
      a = caf::expected<projection_actor_handle>{std::move(err)};
  auto resume = [&] {
    if (a)
      static_cast<void>(ask_bool(sys_, *a, resume_atom_v));
  };
  head = e.store->head_position();
  if (!head) {
    resume();
    return fail(std::move(head.error()));
  }
  if (auto err = catch_up(*head)) {
    resume();
    return fail(std::move(err));
  }
  stop_and_wait(sys_, worker);
  if (auto err = live.db().replace_from(**shadow_db, live.tables(), name)) {
    resume();
    discard();
    return err;
  }
  discard();
  // The live projection goes on from the rebuilt model's checkpoint.
  if (a)
    if (auto err = ask_bool(sys_, *a, reload_atom_v))
      return err;
  return caf::none;
}

std::vector<child_status> projection_coordinator::supervision() {
  caf::scoped_actor self{sys_};
  std::vector<child_status> result;
  self->request(supervisor_, caf::infinite, children_atom_v)
    .receive(
      [&](std::vector<child_status>& xs) {
        result = std::move(xs);
      },
      [](caf::error&) {});
  return result;
}

health_status projection_coordinator::health() {
  health_status h;
  for (const auto& c : supervision())
    if (c.state == child_state::failed)
      h.errors.push_back(c.name + " failed after " + std::to_string(c.restarts)
                         + " restarts: " + c.last_error);
  for (const auto& s : status()) {
    for (const auto& e : s.health.errors)
      h.errors.push_back(s.name + ": " + e);
    for (const auto& w : s.health.warnings)
      h.warnings.push_back(s.name + ": " + w);
    if (s.lag_events > 0 && s.state == projection_state::live)
      h.warnings.push_back(s.name + " lags " + std::to_string(s.lag_events)
                           + " events");
  }
  h.level = !h.errors.empty()     ? health_level::errors
            : !h.warnings.empty() ? health_level::warnings
                                  : health_level::healthy;
  return h;
}

} // namespace es
