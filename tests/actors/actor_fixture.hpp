// A deterministic actor system (CAF's test_coordinator) with a memory store,
// its store actor and a region of accounts.
#pragma once

#include "es/actors/aggregate_region.hpp"
#include "es/actors/store_actor.hpp"
#include "es/store/memory_event_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include "account.hpp"
#include <catch2/catch.hpp>

namespace es::test {

struct test_config : caf::actor_system_config {
  test_config() {
    add_actors_module(*this);
    add_message_types<caf::id_block::es_test>();
    set("scheduler.policy", caf::atom("testing"));
    set("logger.verbosity", caf::atom("quiet"));
  }
};

struct actor_fixture {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched
    = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  caf::scoped_actor self{sys};
  std::shared_ptr<event_registry> registry = make_account_registry();
  event_store_ptr store = make_memory_event_store();
  snapshot_store_ptr snapshots = make_memory_snapshot_store();
  store_actor store_handle;
  caf::actor region;

  actor_fixture() {
    store_actor_config sc;
    sc.detached = false;
    sc.readers = 1;
    sc.snapshots = snapshots;
    store_handle = spawn_store_actor(sys, store, sc);
  }

  ~actor_fixture() {
    if (region)
      self->send_exit(region, caf::exit_reason::user_shutdown);
    self->send_exit(caf::actor_cast<caf::actor>(store_handle),
                    caf::exit_reason::user_shutdown);
    sched.run();
  }

  aggregate_options aggregate_opts() {
    aggregate_options opts;
    opts.store = store_handle;
    opts.registry = registry;
    return opts;
  }

  void start_region(region_options ro = {},
                    std::optional<aggregate_options> ao = std::nullopt) {
    region = spawn_region<account>(sys, ao ? *ao : aggregate_opts(), ro);
    sched.run();
  }

  /// Sends a command without running the scheduler; collect the answer
  /// with `await`.
  template <class Cmd>
  auto send(const uuid& id, Cmd cmd) {
    return self->request(region, caf::infinite, command_envelope::to(id),
                         std::move(cmd));
  }

  /// Collects the answer of a request sent with `send` after the scheduler
  /// ran.
  template <class Handle>
  caf::expected<command_result> await(Handle& h) {
    caf::expected<command_result> result{caf::error{}};
    h.receive(
      [&](command_result& r) {
        result = r;
      },
      [&](caf::error& err) {
        result = err;
      });
    return result;
  }

  /// Sends a command, runs everything, returns the answer.
  template <class Cmd>
  caf::expected<command_result> command(const uuid& id, Cmd cmd) {
    auto h = send(id, std::move(cmd));
    sched.run();
    return await(h);
  }

  /// Passivates one aggregate and runs until it is gone.
  bool passivate(const uuid& id) {
    auto h = self->request(region, caf::infinite, passivate_atom_v, id);
    sched.run();
    bool result = false;
    h.receive(
      [&](bool found) {
        result = found;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
    return result;
  }

  /// Asks a live aggregate for a snapshot.
  bool snapshot_now(const uuid& id) {
    auto h = self->request(region, caf::infinite, snapshot_atom_v, id);
    sched.run();
    bool result = false;
    h.receive(
      [&](bool stored) {
        result = stored;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
    return result;
  }

  region_stats stats() {
    auto h = self->request(region, caf::infinite, region_stats_atom_v);
    sched.run();
    region_stats result;
    h.receive(
      [&](region_stats& s) {
        result = s;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
    return result;
  }

  /// Loads the account directly from the store (not through actors).
  account_state load(const uuid& id) {
    account acc{id, registry};
    auto err
      = for_each_in_stream(*store, acc.stream(), {}, [&](recorded_event& ev) {
          return acc.apply_stored(ev);
        });
    REQUIRE_FALSE(err);
    return acc.state();
  }
};

} // namespace es::test
