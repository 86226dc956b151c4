// Read models that commit with their checkpoint (SQLite and PostgreSQL),
// faults injected by decorators, supervised restarts, and rebuilds, on real
// threads.
#include "es/actors/type_ids.hpp"
#include "es/projections/coordinator.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/sql.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "read_model_helpers.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace es;
using namespace es::test;

TEST_CASE("a transactional read model counts every event exactly once, "
          "across injected commit failures and restarts",
          "[projections][transactional]") {
  temp_dir dir;
  auto inner = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(inner);
  SECTION("a page per transaction") {
    check_exactly_once(make_memory_event_store(), *inner, 0);
  }
  SECTION("three events per transaction") {
    check_exactly_once(make_memory_event_store(), *inner, 3);
  }
}

TEST_CASE("two read-model databases on one SQLite file: a batch whose "
          "checkpoint moved under it rolls back",
          "[projections][transactional][cas]") {
  temp_dir dir;
  auto a = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(a);
  auto b = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(b);
  SECTION("no checkpoint yet") {
    check_checkpoint_cas(**a, **b, false);
  }
  SECTION("a checkpoint at 0") {
    check_checkpoint_cas(**a, **b, true);
  }
}

TEST_CASE("a crashed projection is restarted from its checkpoint and "
          "loses nothing",
          "[projections][supervision]") {
  temp_dir dir;
  auto inner = make_memory_event_store();
  fill(*inner, 10, 5);
  auto store = std::make_shared<failing_store>(inner);
  // The fourth read fails: infrastructure trouble ends the actor.
  store->fail_call_ = 4;
  auto db = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(db);
  auto model = std::make_shared<counting_read_model>(*db);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  restart_policy restarts;
  restarts.backoff.initial_delay = std::chrono::milliseconds(5);
  projection_coordinator coord{sys, restarts};
  REQUIRE_FALSE(coord.add(model, base_config(store)));
  REQUIRE_FALSE(coord.wait_until_caught_up("counts", std::chrono::seconds(30)));
  auto sup = coord.supervision();
  REQUIRE(sup.size() == 1);
  CHECK(sup.front().restarts == 1);
  CHECK(model->total() == 50);
  CHECK(coord.health().level != health_level::errors);
}

TEST_CASE("a rebuild gives the same read model as incremental processing",
          "[projections][rebuild]") {
  temp_dir dir;
  auto store = make_memory_event_store();
  fill(*store, 30, 4);
  auto db = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(db);
  auto model = std::make_shared<counting_read_model>(*db);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  projection_coordinator coord{sys};
  REQUIRE_FALSE(coord.add(model, base_config(store)));
  REQUIRE_FALSE(coord.wait_until_caught_up("counts", std::chrono::seconds(30)));
  fill(*store, 5, 4);
  REQUIRE_FALSE(coord.wait_until_caught_up("counts", std::chrono::seconds(30)));
  auto incremental = model->total();
  CHECK(incremental == 140);
  std::vector<rebuild_progress> seen;
  REQUIRE_FALSE(coord.rebuild(
    "counts",
    [&](const rebuild_progress& p) {
      seen.push_back(p);
    },
    std::chrono::seconds(30), std::chrono::milliseconds(1)));
  CHECK(model->total() == incremental);
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back().done == 140);
  CHECK(seen.back().total == 140);
  // The declarative and level-2 projections rebuild the same way.
  auto s = coord.status("counts");
  REQUIRE(s);
  CHECK(s->position == 140);
}

TEST_CASE("level-2 and level-3 projections run without actors",
          "[projections][levels]") {
  auto store = make_memory_event_store();
  auto registry = make_test_registry();
  fill(*store, 6, 3);
  struct totals : declarative_projection {
    int64_t quantity = 0;
    int notes = 0;
    explicit totals(std::shared_ptr<const event_registry> reg)
      : declarative_projection("totals", std::move(reg)) {
      on<item_added>([this](const item_added& e, const recorded_event&) {
        quantity += e.quantity;
      });
      on<note_written>([this](const note_written&, const recorded_event&) {
        ++notes;
      });
    }
  };
  totals t{registry};
  CHECK(t.subscribed_to()
        == std::vector<std::string>{"ItemAdded", "NoteWritten"});
  auto pos = t.catch_up(*store, 4);
  REQUIRE(pos);
  CHECK(*pos == 18);
  CHECK(t.notes == 6);
  CHECK(t.quantity == 2 * (1 + 2 + 3) * 2);
  // Processing the same events again changes nothing: the checkpoint
  // skips them.
  REQUIRE(t.catch_up(*store));
  CHECK(t.notes == 6);
  // A payload that does not decode goes to the dead letters.
  auto s = new_stream();
  auto bad = make_test_event(s, 0);
  bad.payload = R"({"sku":"x","quantity":"many","price_cents":1})";
  REQUIRE(store->append(s, expected_version::any(), {bad}));
  REQUIRE(t.catch_up(*store));
  CHECK((*t.dead_letters()->stats()).failed == 1);
  CHECK(*t.checkpoint_position() == 19);
  REQUIRE_FALSE(t.reset());
  CHECK(*t.checkpoint_position() == 0);
}
