// Aggregate actors and regions on CAF's deterministic test_coordinator.
#include "es/actors/errors.hpp"

#include "actor_fixture.hpp"
#include <catch2/catch.hpp>

using namespace es;
using namespace es::test;

TEST_CASE_METHOD(actor_fixture, "one aggregate's commands run one at a time",
                 "[actors]") {
  start_region();
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"ada"}));
  // Send 50 deposits at once: the mailbox serialises them.
  using handle_type = decltype(send(id, deposit{1}));
  std::vector<handle_type> handles;
  for (int i = 1; i <= 50; ++i)
    handles.push_back(send(id, deposit{i}));
  sched.run();
  for (size_t i = 0; i < handles.size(); ++i) {
    auto res = await(handles[i]);
    REQUIRE(res);
    CHECK(res->version == static_cast<int64_t>(i) + 2);
    CHECK(res->events == 1);
    CHECK(res->attempts == 1);
  }
  auto st = load(id);
  CHECK(st.balance == 50 * 51 / 2);
  CHECK(st.deposits == 50);
  CHECK(*store->stream_version({"Account", id}) == 51);
}

TEST_CASE_METHOD(actor_fixture, "commands to many aggregates interleave",
                 "[actors]") {
  start_region();
  std::vector<uuid> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(uuid::random());
  using handle_type = decltype(send(ids[0], deposit{1}));
  std::vector<handle_type> opens;
  for (auto& id : ids)
    opens.push_back(send(id, open_account{"x"}));
  std::vector<handle_type> deposits;
  for (int round = 0; round < 5; ++round)
    for (auto& id : ids)
      deposits.push_back(send(id, deposit{10}));
  sched.run();
  for (auto& h : opens)
    REQUIRE(await(h));
  for (auto& h : deposits)
    REQUIRE(await(h));
  for (auto& id : ids) {
    CHECK(load(id).balance == 50);
    CHECK(*store->stream_version({"Account", id}) == 6);
  }
  auto s = stats();
  CHECK(s.live == 20);
  CHECK(s.spawned == 20);
  CHECK(s.commands_routed == 120);
}

TEST_CASE_METHOD(actor_fixture, "rejected commands change nothing",
                 "[actors]") {
  auto ao = aggregate_opts();
  start_region({}, ao);
  auto id = uuid::random();
  auto res = command(id, deposit{5});
  REQUIRE_FALSE(res);
  CHECK(rejection_reason(res.error()) == "not_open");
  REQUIRE(command(id, open_account{"bo"}));
  REQUIRE(command(id, deposit{5}));
  auto over = command(id, withdraw{100});
  REQUIRE_FALSE(over);
  CHECK(rejection_reason(over.error()) == "insufficient_funds");
  CHECK(*store->head_position() == 2);
  auto same = command(id, noop{});
  REQUIRE(same);
  CHECK(same->events == 0);
  CHECK(same->version == 2);
  // The actor's state was not touched by the rejected command.
  auto ok = command(id, withdraw{5});
  REQUIRE(ok);
  CHECK(ok->version == 3);
  // Every answer is counted and timed, refusals as failures.
  CHECK(ao.metrics->commands == 6);
  CHECK(ao.metrics->commands_failed == 2);
  CHECK(ao.metrics->conflict_retries == 0);
  CHECK(ao.metrics->command_seconds.snapshot().count == 6);
}

TEST_CASE_METHOD(actor_fixture, "idle aggregates are passivated and come back",
                 "[actors]") {
  region_options ro;
  ro.idle_timeout = std::chrono::seconds(10);
  start_region(ro);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"cy"}));
  REQUIRE(command(id, deposit{30}));
  CHECK(stats().live == 1);
  // Let the idle check run past the timeout.
  for (int i = 0; i < 8; ++i) {
    sched.advance_time(std::chrono::seconds(3));
    sched.run();
  }
  auto s = stats();
  CHECK(s.live == 0);
  CHECK(s.passivated == 1);
  // The next command recovers the aggregate from its events.
  auto res = command(id, withdraw{30});
  REQUIRE(res);
  CHECK(res->version == 3);
  CHECK(load(id).balance == 0);
  CHECK(stats().spawned == 2);
}

TEST_CASE_METHOD(actor_fixture, "max_live passivates the least recently used",
                 "[actors]") {
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  ro.max_live = 3;
  start_region(ro);
  std::vector<uuid> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(uuid::random());
    REQUIRE(command(ids.back(), open_account{"n" + std::to_string(i)}));
    REQUIRE(command(ids.back(), deposit{i + 1}));
  }
  auto s = stats();
  CHECK(s.live == 3);
  CHECK(s.passivated == 3);
  // The oldest come back with their state.
  for (int i = 0; i < 6; ++i) {
    auto res = command(ids[static_cast<size_t>(i)], deposit{100});
    REQUIRE(res);
    CHECK(res->version == 3);
  }
  for (int i = 0; i < 6; ++i)
    CHECK(load(ids[static_cast<size_t>(i)]).balance == i + 101);
  CHECK(stats().live <= 3);
}

TEST_CASE_METHOD(actor_fixture,
                 "commands around a passivation keep their order", "[actors]") {
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  start_region(ro);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"di"}));
  auto p = self->request(region, caf::infinite, passivate_atom_v, id);
  // Either only the region's manager runs first, so the passivation is
  // under way when the commands arrive: the region holds them until the
  // old actor is gone and hands them to the new one. Or nothing runs
  // first: the commands go straight into the live actor's mailbox, ahead
  // of the passivation the manager sends it afterwards.
  bool manager_first = GENERATE(true, false);
  INFO("the manager ran first: " << manager_first);
  if (manager_first)
    REQUIRE(sched.try_run_once());
  using handle_type = decltype(send(id, deposit{1}));
  std::vector<handle_type> handles;
  for (int i = 1; i <= 10; ++i)
    handles.push_back(send(id, deposit{i}));
  sched.run();
  p.receive(
    [](bool found) {
      CHECK(found);
    },
    [](caf::error& err) {
      FAIL(describe(err));
    });
  for (size_t i = 0; i < handles.size(); ++i) {
    auto res = await(handles[i]);
    REQUIRE(res);
    CHECK(res->version == static_cast<int64_t>(i) + 2);
  }
  auto s = stats();
  CHECK(s.passivated == 1);
  if (manager_first) {
    CHECK(s.commands_stashed == 10);
    CHECK(s.spawned == 2);
  } else {
    CHECK(s.commands_stashed == 0);
    CHECK(s.spawned == 1);
    CHECK(s.live == 0);
  }
  // One more command: its actor has loaded all eleven events.
  auto res = command(id, deposit{1});
  REQUIRE(res);
  CHECK(res->version == 12);
  CHECK(load(id).balance == 56);
}

TEST_CASE_METHOD(actor_fixture,
                 "a conflict with another writer is retried after reloading",
                 "[actors]") {
  auto ao = aggregate_opts();
  start_region({}, ao);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"ed"}));
  REQUIRE(command(id, deposit{10}));
  // Another process appends behind the actor's back.
  auto foreign = make_event(money_deposited{5});
  REQUIRE(foreign);
  REQUIRE(
    store->append({"Account", id}, expected_version::exact(2), {*foreign}));
  // The command passes on the actor's stale state (balance 10), its append
  // conflicts, the actor reloads (balance 15) and runs it again.
  auto res = command(id, withdraw{10});
  INFO((res ? std::string{"ok"} : describe(res.error())));
  REQUIRE(res);
  CHECK(res->attempts == 2);
  CHECK(ao.metrics->conflict_retries == 1);
  CHECK(res->version == 4);
  CHECK(load(id).balance == 5);
  // The retry runs the business rules against the reloaded state: here they
  // refuse what the stale state allowed.
  REQUIRE(store->append({"Account", id}, expected_version::exact(4),
                        {*make_event(money_withdrawn{5})}));
  auto over = command(id, withdraw{1});
  REQUIRE_FALSE(over);
  CHECK(rejection_reason(over.error()) == "insufficient_funds");
  CHECK(*store->stream_version({"Account", id}) == 5);
}

TEST_CASE_METHOD(actor_fixture,
                 "conflicts beyond the retry limit reach the "
                 "caller",
                 "[actors]") {
  auto ao = aggregate_opts();
  ao.max_conflict_retries = 0;
  start_region({}, ao);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"fa"}));
  REQUIRE(store->append({"Account", id}, expected_version::exact(1),
                        {*make_event(money_deposited{5})}));
  auto res = command(id, deposit{1});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::wrong_expected_version));
  CHECK(ao.metrics->conflict_retries == 0);
  CHECK(ao.metrics->commands_failed == 1);
  auto conflict = get_version_conflict(res.error());
  REQUIRE(conflict);
  CHECK(conflict->actual == 2);
  // The next command starts from the reloaded state... after the actor
  // caught up on its next conflict-free attempt.
  CHECK(*store->stream_version({"Account", id}) == 2);
}

TEST_CASE_METHOD(actor_fixture,
                 "a crashing aggregate answers with an error and restarts",
                 "[actors]") {
  start_region();
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"gu"}));
  REQUIRE(command(id, deposit{7}));
  auto res = command(id, explode{3});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), actors_errc::handler_failed));
  CHECK(describe(res.error()).find("explode 3") != std::string::npos);
  auto s = stats();
  CHECK(s.crashed == 1);
  CHECK(s.live == 0);
  // Nothing of the crashed command was stored; a fresh actor takes over.
  CHECK(*store->stream_version({"Account", id}) == 2);
  auto next = command(id, withdraw{7});
  REQUIRE(next);
  CHECK(next->version == 3);
  CHECK(stats().spawned == 2);
}

TEST_CASE_METHOD(actor_fixture, "a region scoped to a tenant", "[actors]") {
  auto tenant = uuid::random();
  auto ao = aggregate_opts();
  ao.tenant_id = tenant;
  start_region({}, ao);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"hu"}));
  auto ev = store->find_event(
    store->read_stream({"Account", id}, {})->events.front().event_id);
  REQUIRE(*ev);
  CHECK((*ev)->tenant_id == tenant);
  // An aggregate of another tenant cannot be loaded through this region.
  auto other = uuid::random();
  auto foreign = make_event(account_opened{"iv"});
  foreign->tenant_id = uuid::random();
  REQUIRE(store->append({"Account", other}, expected_version::no_stream(),
                        {*foreign}));
  auto res = command(other, deposit{1});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::tenant_mismatch));
  CHECK(*store->stream_version({"Account", other}) == 1);
}

TEST_CASE_METHOD(actor_fixture, "messages without an envelope are refused",
                 "[actors]") {
  start_region();
  auto h = self->request(region, caf::infinite, deposit{1});
  sched.run();
  bool refused = false;
  h.receive([](command_result&) {},
            [&](caf::error& err) {
              refused = has_code(err, actors_errc::invalid_command);
            });
  CHECK(refused);
}

// -- snapshots ----------------------------------------------------------------

TEST_CASE_METHOD(actor_fixture,
                 "snapshots every N events shorten the next recovery",
                 "[actors][snapshots]") {
  auto ao = aggregate_opts();
  ao.snapshots.every_events = 3;
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  start_region(ro, ao);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"ada"}));
  for (int i = 1; i <= 6; ++i)
    REQUIRE(command(id, deposit{i}));
  // Versions 1..7: snapshots when crossing 3 and 6.
  CHECK(ao.metrics->snapshots_written == 2);
  auto snap = snapshots->load({"Account", id});
  REQUIRE(snap);
  REQUIRE(snap->has_value());
  CHECK((*snap)->version == 6);
  CHECK((*snap)->schema_version == 2);
  // A fresh actor starts from the snapshot and replays one event.
  REQUIRE(passivate(id));
  auto replayed_before = ao.metrics->events_replayed.load();
  auto res = command(id, withdraw{21});
  REQUIRE(res);
  CHECK(res->version == 8);
  CHECK(ao.metrics->snapshots_loaded == 1);
  CHECK(ao.metrics->events_replayed - replayed_before == 1);
  CHECK(load(id).balance == 0);
}

TEST_CASE_METHOD(actor_fixture, "unusable snapshots fall back to a full replay",
                 "[actors][snapshots]") {
  auto ao = aggregate_opts();
  start_region({}, ao);
  auto id = uuid::random();
  // Events written directly, and a snapshot that must not be used.
  REQUIRE(store->append(
    {"Account", id}, expected_version::no_stream(),
    {*make_event(account_opened{"bo"}), *make_event(money_deposited{40})}));
  SECTION("another schema version") {
    snapshot s{{"Account", id},
               2,
               1,
               R"({"open":true,"owner":"x",)"
               R"("balance":999,"deposits":1})",
               now_utc()};
    REQUIRE(*snapshots->save(s));
  }
  SECTION("unreadable state") {
    snapshot s{{"Account", id}, 2, 2, R"({"open":"yes"})", now_utc()};
    REQUIRE(*snapshots->save(s));
  }
  auto res = command(id, withdraw{40});
  REQUIRE(res);
  CHECK(res->version == 3);
  CHECK(ao.metrics->snapshot_misses == 1);
  CHECK(ao.metrics->snapshots_loaded == 0);
  CHECK(ao.metrics->events_replayed == 2);
  CHECK(load(id).balance == 0);
}

TEST_CASE_METHOD(actor_fixture, "snapshots on passivation and on demand",
                 "[actors][snapshots]") {
  auto ao = aggregate_opts();
  ao.snapshots.on_passivation = true;
  region_options ro;
  ro.idle_timeout = caf::timespan{0};
  start_region(ro, ao);
  auto id = uuid::random();
  REQUIRE(command(id, open_account{"cy"}));
  REQUIRE(command(id, deposit{5}));
  REQUIRE(passivate(id));
  auto snap = *snapshots->load({"Account", id});
  REQUIRE(snap.has_value());
  CHECK(snap->version == 2);
  REQUIRE(command(id, deposit{6}));
  CHECK(ao.metrics->snapshots_loaded == 1);
  // On demand: the live aggregate writes version 3 now.
  CHECK(snapshot_now(id));
  CHECK((*snapshots->load({"Account", id}))->version == 3);
  CHECK_FALSE(snapshot_now(uuid::random()));
  // A snapshot written late never replaces a newer one.
  snapshot stale{{"Account", id},
                 1,
                 2,
                 R"({"open":true,"owner":"cy",)"
                 R"("balance":0,"deposits":0})",
                 now_utc()};
  CHECK_FALSE(*snapshots->save(stale));
  CHECK((*snapshots->load({"Account", id}))->version == 3);
  CHECK(load(id).balance == 11);
}
