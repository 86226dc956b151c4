// Faults of the read side: holes in the global feed, events of unknown
// types, two instances of one projection, failing infrastructure, and what
// the coordinator reports about a projection that is down. Projection
// actors run on CAF's deterministic scheduler (the coordinator, which
// blocks, on a threaded one).
#include "es/projections/coordinator.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/sql.hpp"

#include "projection_fixture.hpp"
#include "read_model_helpers.hpp"
#include "read_side_fault_helpers.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// The deterministic fixture with a store that can hide positions.
struct faults_fixture : projection_fixture {
  std::shared_ptr<holey_store> holes = std::make_shared<holey_store>(store);
  checkpoint_store_ptr checkpoints = make_memory_checkpoint_store();
  dead_letter_store_ptr dead_letters = make_memory_dead_letter_store();

  /// Reads the holey store, follows it without a bus, waits 100 ms for a
  /// hole in 10 re-reads.
  subscription_config hole_config() {
    auto c = config(false);
    c.store = holes;
    c.detached = false;
    c.checkpoints = checkpoints;
    c.dead_letters = dead_letters;
    c.poll_interval = 50ms;
    c.hole_timeout = 100ms;
    c.hole_retry_interval = 10ms;
    return c;
  }

  /// Spawns without the fixture's unbounded run: a spinning actor fails the
  /// test instead of hanging it.
  projection_actor_handle start(projection_ptr p, subscription_config c) {
    auto a = spawn_projection_actor(sys, std::move(p), std::move(c));
    REQUIRE(a);
    spawned.push_back(a);
    run_bounded(sched);
    return a;
  }

  int64_t checkpoint_of(const std::string& name) {
    auto cp = checkpoints->load(name);
    REQUIRE(cp);
    return *cp ? (*cp)->position : 0;
  }
};

/// The most re-reads a hole of `hole_config` may cost: one per retry
/// interval of the timeout, plus the first read and a few of slack.
constexpr int max_hole_reads = 100 / 10 + 3;

} // namespace

// -- holes --------------------------------------------------------------------

TEST_CASE_METHOD(faults_fixture,
                 "a hole that does not fill stops the projection there, "
                 "after a bounded number of re-reads",
                 "[projections][holes]") {
  append_direct(6);
  holes->hide(3);
  auto proj = std::make_shared<recording_projection>("holes");
  auto a = start(proj, hole_config());
  CHECK(proj->seen() == range(1, 2));
  auto s = status(a);
  CHECK(s.state != projection_state::error);
  CHECK(contains(s.detail, "waiting for position 3"));
  advance_bounded(sched, 200ms);
  s = status(a);
  INFO(s.detail);
  CHECK(s.state == projection_state::error);
  CHECK(s.health.level == health_level::errors);
  CHECK(contains(s.detail, "position 3 is missing"));
  CHECK(s.position == 2);
  CHECK(s.holes_skipped == 0);
  CHECK(proj->seen() == range(1, 2));
  // It waited (re-read) for the whole timeout, and no more.
  auto reads = holes->reads();
  CHECK(reads >= 100 / 10);
  CHECK(reads <= max_hole_reads);
  // Stopped means stopped: no more reads, nothing handled, and the
  // checkpoint stays before the hole.
  advance_bounded(sched, 2s, 50ms);
  CHECK(holes->reads() == reads);
  CHECK(proj->seen() == range(1, 2));
  CHECK(checkpoint_of("holes") == 2);
}

TEST_CASE_METHOD(faults_fixture,
                 "a transactional read model stops at a hole without "
                 "spinning",
                 "[projections][holes][transactional]") {
  temp_dir dir;
  auto db = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(db);
  append_direct(8);
  holes->hide(4);
  auto model = std::make_shared<counting_read_model>(*db);
  auto c = hole_config();
  // Its checkpoints live in its database.
  c.checkpoints = nullptr;
  c.dead_letters = nullptr;
  auto a = start(model, c);
  advance_bounded(sched, 200ms);
  auto s = status(a);
  INFO(s.detail);
  CHECK(s.state == projection_state::error);
  CHECK(contains(s.detail, "position 4 is missing"));
  CHECK(s.position == 3);
  auto reads = holes->reads();
  CHECK(reads <= max_hole_reads);
  advance_bounded(sched, 1s, 50ms);
  CHECK(holes->reads() == reads);
  CHECK(model->total() == 3);
  auto cp = (*db)->checkpoints()->load("counts");
  REQUIRE(cp);
  REQUIRE(cp->has_value());
  CHECK((*cp)->position == 3);
}

TEST_CASE_METHOD(faults_fixture,
                 "under hole_policy::skip a hole is stepped over and counted",
                 "[projections][holes]") {
  // The warnings carry the projection's context for structured sinks.
  struct record {
    log_level level;
    std::string text;
    std::string module;
    std::string projection;
    std::optional<int64_t> position;
  };
  auto records = std::make_shared<std::vector<record>>();
  auto records_mtx = std::make_shared<std::mutex>();
  set_log_record_sink([records, records_mtx](log_level level,
                                             std::string_view text,
                                             const log_context& ctx) {
    std::lock_guard guard{*records_mtx};
    records->push_back({level, std::string{text}, std::string{ctx.module},
                        std::string{ctx.projection}, ctx.position});
  });
  append_direct(6);
  holes->hide(3);
  auto proj = std::make_shared<recording_projection>("holes");
  auto c = hole_config();
  c.on_hole = hole_policy::skip;
  auto a = start(proj, c);
  CHECK(proj->seen() == range(1, 2));
  advance_bounded(sched, 200ms);
  set_log_format(log_format::text);
  {
    std::lock_guard guard{*records_mtx};
    auto skipped
      = std::find_if(records->begin(), records->end(), [](const record& r) {
          return contains(r.text, "skipped position 3");
        });
    REQUIRE(skipped != records->end());
    CHECK(skipped->level == log_level::warning);
    CHECK(skipped->module == "projections");
    CHECK(skipped->projection == "holes");
    REQUIRE(skipped->position);
    CHECK(*skipped->position == 2);
  }
  CHECK(proj->seen() == std::vector<int64_t>{1, 2, 4, 5, 6});
  auto s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.holes_skipped == 1);
  CHECK(s.position == 6);
  CHECK(contains(s.detail, "skipped position 3"));
  CHECK(checkpoint_of("holes") == 6);
}

TEST_CASE_METHOD(faults_fixture,
                 "a hole that fills before the timeout costs nothing",
                 "[projections][holes]") {
  append_direct(6);
  holes->hide(3);
  auto proj = std::make_shared<recording_projection>("holes");
  auto c = hole_config();
  c.on_hole = hole_policy::skip;
  auto a = start(proj, c);
  advance_bounded(sched, 30ms);
  CHECK(proj->seen() == range(1, 2));
  // The late event arrives (a slow writer committed it).
  holes->reveal(3);
  advance_bounded(sched, 30ms);
  CHECK(proj->seen() == range(1, 6));
  auto s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.holes_skipped == 0);
  CHECK(s.errors.total == 0);
  CHECK(s.detail.empty());
  // Long after the timeout nothing else happens.
  advance_bounded(sched, 500ms, 50ms);
  CHECK(proj->seen() == range(1, 6));
  CHECK(status(a).holes_skipped == 0);
}

TEST_CASE_METHOD(faults_fixture,
                 "a hole at the head of the feed counts as a hole",
                 "[projections][holes]") {
  append_direct(5);
  // The page ends at 5 (next_position) but its last event is 4.
  holes->hide(5);
  auto proj = std::make_shared<recording_projection>("head");
  SECTION("stop") {
    auto a = start(proj, hole_config());
    CHECK(proj->seen() == range(1, 4));
    advance_bounded(sched, 200ms);
    auto s = status(a);
    INFO(s.detail);
    CHECK(s.state == projection_state::error);
    CHECK(contains(s.detail, "position 5 is missing"));
    CHECK(s.position == 4);
    CHECK(holes->reads() <= max_hole_reads);
    // Later events are not handled either.
    append_direct(2);
    advance_bounded(sched, 300ms, 50ms);
    CHECK(proj->seen() == range(1, 4));
    CHECK(checkpoint_of("head") == 4);
  }
  SECTION("skip") {
    auto c = hole_config();
    c.on_hole = hole_policy::skip;
    auto a = start(proj, c);
    advance_bounded(sched, 200ms);
    auto s = status(a);
    CHECK(s.holes_skipped == 1);
    CHECK(s.position == 5);
    append_direct(2);
    advance_bounded(sched, 300ms, 50ms);
    CHECK(proj->seen() == std::vector<int64_t>{1, 2, 3, 4, 6, 7});
    CHECK(status(a).holes_skipped == 1);
  }
}

// -- unknown event types ------------------------------------------------------

TEST_CASE_METHOD(faults_fixture,
                 "an unknown type in a followed stream is dead-lettered and "
                 "named; elsewhere it is skipped",
                 "[projections][registry]") {
  auto order = new_stream("Order");
  auto invoice = new_stream("Invoice");
  auto proj = std::make_shared<item_view>(make_test_registry());
  auto c = hole_config();
  SECTION("streams followed from the events handled") {
    // Handled: Order is followed from now on.
    append_one(*store, order, "ItemAdded");
    // Unknown to the registry, in a followed stream.
    auto unknown = append_one(*store, order, "ItemRemoved");
    // Unknown, but of an aggregate type it never handled.
    append_one(*store, invoice, "ItemRemoved");
    // Registered, but not what it subscribes to.
    append_one(*store, order, "NoteWritten");
    append_one(*store, new_stream("Order"), "ItemAdded");
    auto a = start(proj, c);
    advance_bounded(sched, 100ms);
    CHECK(proj->seen() == std::vector<int64_t>{1, 5});
    auto s = status(a);
    CHECK(s.position == 5);
    CHECK(s.unknown_events == 1);
    CHECK(s.errors.sent_to_dlq == 1);
    auto letters = dead_letters->list({});
    REQUIRE(letters);
    REQUIRE(letters->size() == 1);
    const auto& dl = letters->front();
    CHECK(dl.global_position == unknown);
    CHECK(dl.event_type == "ItemRemoved");
    auto ev = decode_recorded_event(dl.event_data);
    REQUIRE(ev);
    INFO(dl.error_message);
    CHECK(contains(dl.error_message, "unknown_event_type"));
    CHECK(contains(dl.error_message, describe_event(*ev)));
    CHECK(checkpoint_of("items") == 5);
  }
  SECTION("streams followed as the filter names them") {
    c.filter.aggregate_types = {"Order"};
    // Before anything was handled: still followed, by the filter.
    auto unknown = append_one(*store, order, "ItemRemoved");
    append_one(*store, invoice, "ItemRemoved");
    append_one(*store, order, "ItemAdded");
    auto a = start(proj, c);
    advance_bounded(sched, 100ms);
    CHECK(proj->seen() == std::vector<int64_t>{3});
    auto s = status(a);
    CHECK(s.unknown_events == 1);
    auto letters = dead_letters->list({});
    REQUIRE(letters);
    REQUIRE(letters->size() == 1);
    CHECK(letters->front().global_position == unknown);
    CHECK(contains(letters->front().error_message,
                   "at position " + std::to_string(unknown)));
  }
}

TEST_CASE_METHOD(faults_fixture,
                 "an unknown type stops a projection under the stop strategy",
                 "[projections][registry]") {
  auto order = new_stream("Order");
  append_one(*store, order, "ItemAdded");
  append_one(*store, order, "ItemRemoved");
  append_one(*store, order, "ItemAdded");
  auto proj = std::make_shared<item_view>(make_test_registry());
  auto c = hole_config();
  c.errors.strategy = error_strategy::stop;
  auto a = start(proj, c);
  auto s = status(a);
  INFO(s.detail);
  CHECK(s.state == projection_state::error);
  CHECK(s.position == 1);
  CHECK(s.unknown_events == 1);
  CHECK(contains(s.detail, "ItemRemoved"));
  CHECK(proj->seen() == std::vector<int64_t>{1});
  CHECK((*dead_letters->stats()).total == 0);
}

// -- ownership ----------------------------------------------------------------

TEST_CASE_METHOD(faults_fixture,
                 "a second instance waits as a standby and takes over from "
                 "the checkpoint",
                 "[projections][ownership]") {
  append_direct(5);
  auto c = config();
  c.detached = false;
  c.checkpoints = checkpoints;
  c.lease_retry_interval = 50ms;
  auto first = std::make_shared<recording_projection>("owned");
  auto second = std::make_shared<recording_projection>("owned");
  auto a = start(first, c);
  auto b = start(second, c);
  CHECK(first->seen() == range(1, 5));
  CHECK(second->seen().empty());
  auto s = status(b);
  CHECK(s.state == projection_state::standby);
  CHECK(contains(s.detail, "standby"));
  // A standby reports how far the holder got, and the lag from there.
  CHECK(s.position == 5);
  CHECK(s.head == 5);
  CHECK(s.lag_events == 0);
  CHECK(status(a).state == projection_state::live);
  // Live events go to the holder only, however long the standby waits.
  append_published(3);
  run_bounded(sched);
  advance_bounded(sched, 200ms, 10ms);
  CHECK(first->seen() == range(1, 8));
  CHECK(second->seen().empty());
  CHECK(status(b).state == projection_state::standby);
  // The holder ends; events arrive meanwhile; the standby takes over
  // after its retry interval, from the holder's checkpoint.
  self->send_exit(a, caf::exit_reason::kill);
  run_bounded(sched);
  append_direct(2);
  advance_bounded(sched, 60ms);
  CHECK(second->seen() == range(9, 10));
  s = status(b);
  CHECK(s.state == projection_state::live);
  CHECK(s.position == 10);
  CHECK(s.detail.empty());
  append_published(1);
  run_bounded(sched);
  CHECK(second->seen() == range(9, 11));
  CHECK(first->seen() == range(1, 8));
  CHECK(checkpoint_of("owned") == 11);
}

TEST_CASE_METHOD(faults_fixture,
                 "ownership::exclusive ends a second instance with "
                 "lease_held",
                 "[projections][ownership]") {
  append_direct(3);
  auto c = config();
  c.detached = false;
  c.checkpoints = checkpoints;
  auto first = std::make_shared<recording_projection>("owned");
  auto second = std::make_shared<recording_projection>("owned");
  auto a = start(first, c);
  c.owner = ownership::exclusive;
  auto b = spawn_projection_actor(sys, second, c);
  spawned.push_back(b);
  std::optional<caf::error> reason;
  b->attach_functor([&](const caf::error& why) {
    reason = why;
  });
  run_bounded(sched);
  REQUIRE(reason);
  INFO(describe(*reason));
  CHECK(has_code(*reason, store_errc::lease_held));
  CHECK(second->seen().empty());
  CHECK(first->seen() == range(1, 3));
  CHECK(status(a).state == projection_state::live);
}

TEST_CASE_METHOD(faults_fixture,
                 "without a lease, a checkpoint moved by another instance "
                 "makes this one stop applying",
                 "[projections][ownership]") {
  append_direct(5);
  auto c = config();
  c.detached = false;
  c.checkpoints = checkpoints;
  c.owner = ownership::none;
  c.lease_retry_interval = 50ms;
  auto proj = std::make_shared<recording_projection>("shared");
  auto a = start(proj, c);
  CHECK(proj->seen() == range(1, 5));
  REQUIRE(checkpoint_of("shared") == 5);
  // Another instance (elsewhere) got to 8 between two batches.
  REQUIRE(checkpoints->save(
    checkpoint{"shared", 8, uuid::time_ordered(), "ItemAdded", 8, now_utc()}));
  append_published(3);
  run_bounded(sched);
  auto s = status(a);
  INFO(s.detail);
  CHECK(s.state == projection_state::standby);
  CHECK(contains(s.detail, "checkpoint_conflict"));
  // Its write did not replace the other instance's checkpoint.
  CHECK(checkpoint_of("shared") == 8);
  // Live events are not applied while it stands by.
  append_published(1);
  run_bounded(sched);
  CHECK(proj->seen() == range(1, 8));
  // After the interval it starts over from the stored checkpoint.
  advance_bounded(sched, 60ms);
  s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.position == 9);
  CHECK(proj->seen().back() == 9);
  CHECK(checkpoint_of("shared") == 9);
}

// -- infrastructure failures --------------------------------------------------

TEST_CASE_METHOD(faults_fixture,
                 "an infrastructure failure of a handler stops the projection "
                 "without dead letters",
                 "[projections][errors]") {
  append_direct(5);
  auto proj = std::make_shared<failing_projection>("infra");
  auto c = hole_config();
  int expected_calls = 0;
  SECTION("io_error (not retryable)") {
    proj->fail_with(3, store_errc::io_error);
    expected_calls = 1;
  }
  SECTION("connection_failed (retryable: retried first)") {
    proj->fail_with(3, store_errc::connection_failed);
    expected_calls = 1 + static_cast<int>(c.errors.retry.max_retries);
  }
  auto a = start(proj, c);
  advance_bounded(sched, 300ms);
  auto s = status(a);
  INFO(s.detail);
  CHECK(s.state == projection_state::error);
  CHECK(s.position == 2);
  CHECK(contains(s.detail, "infrastructure"));
  CHECK(contains(s.detail, "injected failure at position 3"));
  // Recorded once (for alerts), never dead-lettered, and not counted as
  // skipped: the projection stopped at it.
  CHECK(s.errors.total == 1);
  CHECK(s.errors.sent_to_dlq == 0);
  CHECK(s.errors.skipped == 0);
  CHECK((*dead_letters->stats()).total == 0);
  CHECK(proj->seen() == range(1, 2));
  CHECK(proj->calls(3) == expected_calls);
  // It stays stopped; the checkpoint never passes the event.
  advance_bounded(sched, 1s, 50ms);
  CHECK(proj->calls(3) == expected_calls);
  CHECK(proj->calls(4) == 0);
  CHECK(checkpoint_of("infra") <= 2);
}

TEST_CASE_METHOD(faults_fixture,
                 "an infrastructure failure of a transactional read model "
                 "ends its actor and rolls the batch back",
                 "[projections][errors][transactional]") {
  temp_dir dir;
  auto db = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(db);
  append_direct(5);
  auto model = std::make_shared<disk_failing_read_model>(*db);
  model->fail_at = 3;
  auto c = hole_config();
  c.checkpoints = nullptr;
  c.dead_letters = nullptr;
  auto a = spawn_projection_actor(sys, model, c);
  spawned.push_back(a);
  std::optional<caf::error> reason;
  a->attach_functor([&](const caf::error& why) {
    reason = why;
  });
  run_bounded(sched);
  advance_bounded(sched, 300ms);
  // The actor ends with the cause, for a supervisor; nothing of the batch
  // took effect and no dead letter was written.
  REQUIRE(reason);
  INFO(describe(*reason));
  CHECK(has_code(*reason, store_errc::io_error));
  CHECK(contains(describe(*reason), "at position 3"));
  CHECK(model->total() == 0);
  auto letters = (*db)->dead_letters()->list({});
  REQUIRE(letters);
  CHECK(letters->empty());
  auto cp = (*db)->checkpoints()->load("counts");
  REQUIRE(cp);
  CHECK((!cp->has_value() || (*cp)->position < 3));
}

TEST_CASE_METHOD(faults_fixture,
                 "a transient failure still goes through retries to the "
                 "dead letters",
                 "[projections][errors]") {
  append_direct(4);
  auto proj = std::make_shared<failing_projection>("transient");
  proj->fail_with(2, store_errc::storage_busy);
  auto a = start(proj, hole_config());
  advance_bounded(sched, 300ms);
  CHECK(proj->seen() == std::vector<int64_t>{1, 3, 4});
  auto s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.errors.sent_to_dlq == 1);
  CHECK((*dead_letters->stats()).failed == 1);
}

// -- the coordinator's view of a projection that is down ----------------------

TEST_CASE("the coordinator reports a failed projection with its checkpoint, "
          "the head and the cause",
          "[projections][coordinator]") {
  auto inner = make_memory_event_store();
  fill(*inner, 2, 5);
  auto store = std::make_shared<holey_store>(inner);
  // The first page (positions 1-4) is read; every later read fails.
  store->fail_from = 2;
  auto checkpoints = make_memory_checkpoint_store();
  threaded_config cfg;
  caf::actor_system sys{cfg};
  restart_policy restarts;
  restarts.max_restarts = 1;
  restarts.backoff.initial_delay = 5ms;
  projection_coordinator coord{sys, restarts};
  auto proj = std::make_shared<recording_projection>("downed");
  auto c = base_config(store);
  c.page_size = 4;
  c.checkpoints = checkpoints;
  REQUIRE_FALSE(coord.add(proj, c));
  // Polled: the supervisor reports, nothing signals the failure.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  std::vector<child_status> sup;
  for (;;) {
    sup = coord.supervision();
    if (sup.size() == 1 && sup.front().state == child_state::failed)
      break;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);
  }
  CHECK(proj->seen() == std::vector<int64_t>{1, 2, 3, 4});
  auto s = coord.status("downed");
  REQUIRE(s);
  INFO(s->detail);
  CHECK(s->state == projection_state::error);
  CHECK(s->position == 4);
  CHECK(s->head == 10);
  CHECK(s->lag_events == 6);
  CHECK(s->health.level == health_level::errors);
  CHECK_FALSE(s->detail.empty());
  // The supervisor knows the cause ...
  CHECK(contains(sup.front().last_error, "injected read failure"));
  // ... but the status names only the missing actor ("not_found: downed is
  // restarting or failed"): reported, not yet fixed (coordinator.cpp).
  CHECK(contains(s->detail, "injected read failure"));
  CHECK(coord.health().level == health_level::errors);
}
