// Projections on PostgreSQL: a transactional read model in the store's
// database under injected failures, a declarative projection with its
// checkpoints and dead letters there, and catch-up to live while writers
// append.
#include "es/postgres/postgres.hpp"
#include "es/projections/coordinator.hpp"
#include "es/store/sql.hpp"

#include <caf/actor_system.hpp>

#include "pg_fixture.hpp"
#include "read_model_helpers.hpp"
#include "shadow_rebuild_checks.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

/// The read-model database in the schema of the fixture's last store.
read_model_db_ptr read_model_next_to_store(postgres_fixture& fx) {
  postgres_config cfg;
  cfg.dsn = pg_dsn_for(fx.schemas.back());
  auto db = make_postgres_read_model_db(cfg);
  if (!db)
    FAIL("cannot open the read-model database: " << describe(db.error()));
  return *db;
}

/// A read-model database on the schema of the fixture's last store whose
/// sessions show `application_name` in pg_stat_activity.
read_model_db_ptr read_model_named(postgres_fixture& fx,
                                   const std::string& application_name) {
  postgres_config cfg;
  cfg.dsn = pg_dsn_for(fx.schemas.back());
  cfg.application_name = application_name;
  cfg.migrate = false;
  auto db = make_postgres_read_model_db(cfg);
  if (!db)
    FAIL("cannot open the read-model database: " << describe(db.error()));
  return *db;
}

/// Records the positions it sees, in order.
class recorder : public projection {
public:
  std::string name() const override {
    return "recorder";
  }

  caf::error handle(const recorded_event& ev) override {
    std::lock_guard guard{mtx};
    seen.push_back(ev.global_position);
    return caf::none;
  }

  std::mutex mtx;
  std::vector<int64_t> seen;
};

} // namespace

TEST_CASE("on PostgreSQL, a transactional read model counts every event "
          "exactly once across injected failures and restarts",
          "[postgres][projections]") {
  postgres_fixture fx;
  SECTION("a page per transaction") {
    auto store = fx.open();
    check_exactly_once(store, read_model_next_to_store(fx), 0);
  }
  SECTION("three events per transaction") {
    auto store = fx.open();
    check_exactly_once(store, read_model_next_to_store(fx), 3);
  }
}

TEST_CASE("on PostgreSQL, a projection following the store sees every "
          "event once and in order while writers append",
          "[postgres][projections]") {
  postgres_fixture fx;
  auto store = fx.open();
  fill(*store, 40, 5);
  auto db = read_model_next_to_store(fx);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  projection_coordinator coord{sys};
  auto rec = std::make_shared<recorder>();
  auto c = base_config(store, db);
  REQUIRE_FALSE(coord.add(rec, c));
  // Writers append while the projection catches up and goes live.
  constexpr int writers = 4;
  constexpr int appends = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&] {
      for (int i = 0; i < appends; ++i) {
        auto s = new_stream();
        if (!store->append(s, expected_version::no_stream(),
                           make_batch(s, 1 + i % 3)))
          ++failures;
      }
    });
  for (auto& t : threads)
    t.join();
  REQUIRE(failures == 0);
  auto head = store->head_position();
  REQUIRE(head);
  auto waited
    = coord.wait_until_caught_up("recorder", std::chrono::seconds(60));
  INFO(describe(waited));
  REQUIRE_FALSE(waited);
  std::vector<int64_t> seen;
  {
    std::lock_guard guard{rec->mtx};
    seen = rec->seen;
  }
  REQUIRE(static_cast<int64_t>(seen.size()) == *head);
  for (size_t i = 0; i < seen.size(); ++i)
    REQUIRE(seen[i] == static_cast<int64_t>(i) + 1);
  auto cp = db->checkpoints()->load("recorder");
  REQUIRE(cp);
  REQUIRE(*cp);
  CHECK((*cp)->position == *head);
}

TEST_CASE("on PostgreSQL, two read-model databases on one schema: a batch "
          "whose checkpoint moved under it rolls back",
          "[postgres][projections][cas]") {
  postgres_fixture fx;
  fx.open();
  auto a = read_model_next_to_store(fx);
  auto b = read_model_next_to_store(fx);
  SECTION("no checkpoint yet") {
    check_checkpoint_cas(*a, *b, false);
  }
  SECTION("a checkpoint at 0") {
    check_checkpoint_cas(*a, *b, true);
  }
}

// READ COMMITTED: B's compare-and-set waits for A's uncommitted checkpoint
// write (a row lock, or the unique index for a first checkpoint), then
// compares with what A committed.
TEST_CASE("on PostgreSQL, a checkpoint write waiting for a concurrent one "
          "compares with what that one committed",
          "[postgres][projections][cas]") {
  postgres_fixture fx;
  fx.open();
  auto schema = fx.schemas.back();
  auto a = read_model_named(fx, schema + "_a");
  auto b = read_model_named(fx, schema + "_b");
  bool stored_at_zero = false;
  SECTION("no checkpoint yet") {
    stored_at_zero = false;
  }
  SECTION("a checkpoint at 0") {
    stored_at_zero = true;
  }
  prepare_cas(*a, stored_at_zero);
  caf::error b_result;
  std::jthread b_thread;
  auto a_result = a->transact([&](sql_transaction& tx) -> caf::error {
    for (int64_t pos = 1; pos <= 5; ++pos)
      if (auto err = tx.exec("INSERT INTO cas_rows VALUES ($1, $2)",
                             {sql_value{std::string{"a"}}, sql_value{pos}}))
        return err;
    checkpoint cp{"cas", 5, uuid::time_ordered(), "from a", 5, now_utc()};
    if (auto saved = a->save_checkpoint(tx, cp, 0); !saved)
      return std::move(saved.error());
    // A holds the checkpoint row (or its key) until it commits.
    b_thread = std::jthread{[&] {
      b_result = write_cas_batch(*b, "b", 0, 5);
    }};
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (fx.admin.value("SELECT count(*) FROM pg_stat_activity"
                          " WHERE application_name = '"
                          + schema + "_b' AND wait_event_type = 'Lock'")
           != "1") {
      if (std::chrono::steady_clock::now() > give_up)
        FAIL("B's checkpoint write never waited for A's");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return caf::none;
  });
  REQUIRE_FALSE(a_result);
  b_thread.join();
  INFO("B's batch: " << describe(b_result));
  CHECK(has_code(b_result, store_errc::checkpoint_conflict));
  CHECK(describe(b_result).find("found position 5") != std::string::npos);
  CHECK(cas_rows(*a, "b") == 0);
  CHECK(cas_rows(*a, "a") == 5);
  CHECK(cas_position(*b) == 5);
}

TEST_CASE("on PostgreSQL, a read model is rebuilt in a shadow schema and "
          "swapped in",
          "[postgres][projections][rebuild]") {
  postgres_fixture fx;
  auto store = fx.open();
  auto schema = fx.schemas.back();
  check_shadow_rebuilds(store, read_model_next_to_store(fx), [&] {
    return fx.admin.value("SELECT count(*) FROM pg_namespace WHERE nspname = '"
                          + schema + "_rebuild_sums'")
           != "0";
  });
  // Dropped with the fixture's schemas otherwise.
  std::string msg;
  fx.admin.try_exec("DROP SCHEMA IF EXISTS " + schema + "_rebuild_sums CASCADE",
                    msg);
}

TEST_CASE("on PostgreSQL's overlapping feed, a projection steps over "
          "positions a failed write left unused, without waiting",
          "[postgres][projections]") {
  postgres_fixture fx;
  auto store = fx.open_feed(postgres_feed::overlapping).store;
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::no_stream(), make_batch(s, 3)));
  // A write that reserved positions 4 and 5 and rolled back.
  fx.admin.exec("BEGIN; SET LOCAL search_path = " + fx.schemas.back()
                + "; SELECT es_reserve(2); ROLLBACK");
  REQUIRE(store->append(s, expected_version::exact(3), make_batch(s, 2)));
  REQUIRE(*store->head_position() == 7);
  auto db = read_model_next_to_store(fx);
  threaded_config sys_cfg;
  caf::actor_system sys{sys_cfg};
  projection_coordinator coord{sys};
  auto rec = std::make_shared<recorder>();
  auto c = base_config(store, db);
  // A hole in a damaged log would stop it after a minute.
  c.hole_timeout = std::chrono::seconds(60);
  REQUIRE_FALSE(coord.add(rec, c));
  auto waited
    = coord.wait_until_caught_up("recorder", std::chrono::seconds(20));
  INFO(describe(waited));
  REQUIRE_FALSE(waited);
  std::lock_guard guard{rec->mtx};
  CHECK(rec->seen == std::vector<int64_t>{1, 2, 3, 6, 7});
  auto cp = db->checkpoints()->load("recorder");
  REQUIRE(cp);
  REQUIRE(*cp);
  CHECK((*cp)->position == 7);
}
