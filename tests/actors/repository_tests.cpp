// The repository facade and the store actor with a bus, on real threads.
#include "es/actors/aggregate_region.hpp"
#include "es/actors/blocking.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/memory_event_store.hpp"

#include "account.hpp"
#include "actor_store_fixtures.hpp"
#include "temp_dir.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

struct repo_fixture {
  std::shared_ptr<event_registry> registry = make_account_registry();
  event_store_ptr store = make_memory_event_store();

  aggregate_repository<account> repo(std::optional<uuid> tenant = {},
                                     event_bus_ptr bus = nullptr) {
    repository_options opts;
    opts.registry = registry;
    opts.tenant_id = tenant;
    opts.bus = std::move(bus);
    return aggregate_repository<account>{store, opts};
  }
};

} // namespace

TEST_CASE_METHOD(repo_fixture, "the repository creates, saves and loads",
                 "[repository]") {
  auto r = repo();
  auto id = uuid::random();
  CHECK_FALSE(*r.exists(id));
  CHECK(*r.get_version(id) == 0);
  auto missing = r.load(id);
  REQUIRE_FALSE(missing);
  CHECK(has_code(missing.error(), actors_errc::aggregate_not_found));
  auto acc = r.create_new(id);
  REQUIRE_FALSE(acc->handle(open_account{"ada"}));
  REQUIRE_FALSE(acc->handle(deposit{70}));
  auto saved = r.save(*acc);
  REQUIRE(saved);
  CHECK(saved->last_version == 2);
  CHECK_FALSE(acc->has_uncommitted());
  CHECK(acc->committed_version() == 2);
  CHECK(*r.exists(id));
  CHECK(*r.get_version(id) == 2);
  auto loaded = r.load(id);
  REQUIRE(loaded);
  CHECK((*loaded)->state().balance == 70);
  CHECK((*loaded)->version() == 2);
  // Saving without changes writes nothing.
  auto again = r.save(**loaded);
  REQUIRE(again);
  CHECK(again->last_version == 2);
  CHECK(*store->head_position() == 2);
  auto fresh = r.load_or_create(uuid::random());
  REQUIRE(fresh);
  CHECK((*fresh)->version() == 0);
}

TEST_CASE_METHOD(repo_fixture,
                 "a deleted aggregate stays deleted until "
                 "written again, then starts over",
                 "[repository][deletion]") {
  auto r = repo();
  auto id = uuid::random();
  auto acc = r.create_new(id);
  REQUIRE_FALSE(acc->handle(open_account{"ada"}));
  REQUIRE_FALSE(acc->handle(deposit{70}));
  REQUIRE(r.save(*acc));
  REQUIRE(delete_stream(*store, acc->stream(), deletion_mode::soft,
                        expected_version::exact(2)));
  auto gone = r.load(id);
  REQUIRE_FALSE(gone);
  CHECK(has_code(gone.error(), store_errc::stream_deleted));
  auto stale = r.load_or_create(id);
  REQUIRE_FALSE(stale);
  CHECK(has_code(stale.error(), store_errc::stream_deleted));
  // The old aggregate object cannot save over the deletion.
  REQUIRE_FALSE(acc->handle(deposit{1}));
  auto refused = r.save(*acc);
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::stream_deleted));
  // Written again through the store: the aggregate loads from the deletion
  // with an empty state, at the versions that continue after it.
  event_batch fresh{*make_event(account_opened{"bea"}),
                    *make_event(money_deposited{5})};
  REQUIRE(store->append(acc->stream(), expected_version::no_stream(), fresh));
  auto again = r.load(id);
  REQUIRE(again);
  CHECK((*again)->version() == 5);
  CHECK((*again)->state().owner == "bea");
  CHECK((*again)->state().balance == 5);
  REQUIRE_FALSE((*again)->handle(deposit{10}));
  REQUIRE(r.save(**again));
  CHECK((*r.load(id))->state().balance == 15);
}

TEST_CASE_METHOD(repo_fixture,
                 "a truncated aggregate loads from its snapshot "
                 "version only",
                 "[repository][deletion]") {
  auto r = repo();
  auto id = uuid::random();
  auto acc = r.create_new(id);
  REQUIRE_FALSE(acc->handle(open_account{"cy"}));
  for (int i = 0; i < 4; ++i)
    REQUIRE_FALSE(acc->handle(deposit{10}));
  REQUIRE(r.save(*acc));
  REQUIRE(truncate_stream(*store, acc->stream(), 3));
  // Without the snapshot the history has a gap, and loading says so.
  auto loaded = r.load(id);
  REQUIRE_FALSE(loaded);
  CHECK(has_code(loaded.error(), actors_errc::version_gap));
  // From a state as of version 2, the rest (and the control event) apply.
  auto restored = r.create_new(id);
  account_state state;
  state.open = true;
  state.owner = "cy";
  state.balance = 10;
  restored->restore(state, 2);
  auto rest = store->read_stream(acc->stream(), {});
  REQUIRE(rest);
  CHECK(rest->first_version == 3);
  REQUIRE_FALSE(restored->load_from_history(rest->events));
  CHECK(restored->version() == 6);
  CHECK(restored->state().balance == 40);
}

TEST_CASE_METHOD(repo_fixture, "concurrent saves conflict", "[repository]") {
  auto r = repo();
  auto id = uuid::random();
  auto acc = r.create_new(id);
  REQUIRE_FALSE(acc->handle(open_account{"bo"}));
  REQUIRE(r.save(*acc));
  auto a = std::move(*r.load(id));
  auto b = std::move(*r.load(id));
  REQUIRE_FALSE(a->handle(deposit{1}));
  REQUIRE_FALSE(b->handle(deposit{2}));
  REQUIRE(r.save(*a));
  auto res = r.save(*b);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::wrong_expected_version));
  CHECK(b->has_uncommitted());
  CHECK((*r.load(id))->state().balance == 1);
}

TEST_CASE_METHOD(repo_fixture, "a tenant-scoped repository", "[repository]") {
  auto tenant = uuid::random();
  auto mine = repo(tenant);
  auto id = uuid::random();
  auto acc = mine.create_new(id);
  CHECK(acc->tenant_id() == tenant);
  REQUIRE_FALSE(acc->handle(open_account{"cy"}));
  REQUIRE(mine.save(*acc));
  CHECK((*store->read_stream({"Account", id}, {})).events[0].tenant_id
        == tenant);
  auto theirs = repo(uuid::random());
  auto res = theirs.load(id);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::tenant_mismatch));
  // Saving an aggregate of another tenant is refused before any write.
  auto loaded = std::move(*mine.load(id));
  REQUIRE_FALSE(loaded->handle(deposit{3}));
  auto refused = theirs.save(*loaded);
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::tenant_mismatch));
  CHECK(*store->head_position() == 1);
}

TEST_CASE("the repository publishes saved events", "[repository]") {
  threaded_config cfg;
  caf::actor_system sys{cfg};
  auto bus = make_in_process_bus(sys);
  std::mutex mtx;
  std::vector<int64_t> seen;
  bus->subscribe_to_all_events([&](const recorded_event& ev) {
    std::lock_guard guard{mtx};
    seen.push_back(ev.global_position);
    return caf::error{};
  });
  repo_fixture fx;
  auto r = fx.repo({}, bus);
  auto acc = r.create_new(uuid::random());
  REQUIRE_FALSE(acc->handle(open_account{"di"}));
  REQUIRE_FALSE(acc->handle(deposit{5}));
  REQUIRE(r.save(*acc));
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  std::lock_guard guard{mtx};
  CHECK(seen == std::vector<int64_t>{1, 2});
}

TEST_CASE("the store actor group-commits concurrent appends and publishes "
          "in commit order",
          "[store-actor]") {
  temp_dir dir;
  sqlite_config sc;
  sc.path = dir.file("events.db");
  auto store = make_sqlite_event_store(sc);
  REQUIRE(store);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  auto bus = make_in_process_bus(sys);
  std::mutex mtx;
  std::vector<recorded_event> seen;
  bus->subscribe_to_all_events([&](const recorded_event& ev) {
    std::lock_guard guard{mtx};
    seen.push_back(ev);
    return caf::error{};
  });
  store_actor_config sac;
  sac.bus = bus->handle();
  auto handle = spawn_store_actor(sys, *store, sac);
  auto facade = make_actor_event_store(sys, handle);
  // 16 threads append at once through the actor.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      stream_id s{"Account", uuid::random()};
      for (int i = 0; i < 10; ++i) {
        auto ev = make_event(money_deposited{i});
        if (!facade->append(s, expected_version::exact(i), {*ev}))
          ++failures;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  auto m = (*store)->metrics();
  CHECK(m.append_requests == 160);
  INFO("transactions: " << m.transactions);
  CHECK(m.transactions < 160);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  {
    std::lock_guard guard{mtx};
    REQUIRE(seen.size() == 160);
    for (size_t i = 0; i < seen.size(); ++i) {
      CHECK(seen[i].global_position == static_cast<int64_t>(i) + 1);
      auto stored = (*store)->find_event(seen[i].event_id);
      REQUIRE(*stored);
      CHECK(**stored == seen[i]);
    }
  }
  // A failed append publishes nothing.
  auto bad
    = facade->append({"Account", uuid::random()}, expected_version::exact(7),
                     {*make_event(money_deposited{1})});
  CHECK_FALSE(bad);
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(10)));
  std::lock_guard guard{mtx};
  CHECK(seen.size() == 160);
  caf::scoped_actor self{sys};
  self->send_exit(handle, caf::exit_reason::user_shutdown);
}

TEST_CASE("blocking commands through a region on real threads",
          "[store-actor]") {
  threaded_config cfg;
  cfg.add_message_types<caf::id_block::es_test>();
  caf::actor_system sys{cfg};
  auto store = make_memory_event_store();
  auto handle = spawn_store_actor(sys, store);
  aggregate_options ao;
  ao.store = handle;
  ao.registry = make_account_registry();
  auto region = spawn_region<account>(sys, ao);
  auto id = uuid::random();
  auto env = command_envelope::to(id);
  env.actor_id = "tester";
  auto opened = send_command(sys, region, env, open_account{"ed"});
  REQUIRE(opened);
  CHECK(opened->version == 1);
  auto rejected
    = send_command(sys, region, command_envelope::to(id), withdraw{5});
  REQUIRE_FALSE(rejected);
  CHECK(rejection_reason(rejected.error()) == "insufficient_funds");
  auto ev = store->read_stream({"Account", id}, {})->events.at(0);
  CHECK(ev.actor_id == "tester");
  CHECK(ev.causation_id == env.command_id);
  caf::scoped_actor self{sys};
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(handle, caf::exit_reason::user_shutdown);
}
