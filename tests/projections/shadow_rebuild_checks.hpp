// Shadow rebuilds of a transactional read model, run on any read-model
// database: the model is rebuilt beside the live one and swapped in, and a
// rebuild that fails leaves the live model as it was.
#pragma once

#include <caf/scoped_actor.hpp>

#include "read_model_helpers.hpp"

#include <functional>

namespace es::test {

/// Sums quantities per stream in `sums`; can run on another database.
class summing_read_model : public transactional_projection {
public:
  using transactional_projection::transactional_projection;

  std::string name() const override {
    return "sums";
  }

  caf::error handle(sql_transaction& tx, const recorded_event& ev) override {
    if (ev.global_position == fail_at_)
      return make_store_error(store_errc::malformed_payload,
                              "refusing position "
                                + std::to_string(ev.global_position));
    bool sqlite = tx.dialect() == "sqlite";
    return tx.exec(sqlite ? "INSERT INTO sums (stream, n) VALUES (?1, 1)"
                            " ON CONFLICT (stream) DO UPDATE"
                            " SET n = sums.n + 1"
                          : "INSERT INTO sums (stream, n) VALUES ($1, 1)"
                            " ON CONFLICT (stream) DO UPDATE"
                            " SET n = sums.n + 1",
                   {sql_value{ev.aggregate_id.to_string()}});
  }

  caf::error reset(sql_transaction& tx) override {
    return tx.exec("DELETE FROM sums");
  }

  std::vector<std::string> tables() const override {
    return {"sums"};
  }

  caf::error create_tables(sql_transaction& tx) override {
    return tx.exec("CREATE TABLE IF NOT EXISTS sums (stream TEXT PRIMARY KEY,"
                   " n BIGINT NOT NULL)");
  }

  std::shared_ptr<transactional_projection>
  with_db(read_model_db_ptr db) const override {
    auto copy = std::make_shared<summing_read_model>(std::move(db));
    copy->fail_at_ = fail_at_;
    return copy;
  }

  /// The shadow (and this) refuse the event at `pos` (a poisoned event).
  void fail_at(int64_t pos) {
    fail_at_ = pos;
  }

  /// Rows and their total, read in a transaction of its own.
  std::pair<int64_t, int64_t> rows_and_total() {
    std::pair<int64_t, int64_t> result{-1, -1};
    auto err = db().transact([&](sql_transaction& tx) -> caf::error {
      auto rows = tx.query("SELECT COUNT(*), COALESCE(SUM(n), 0) FROM sums");
      if (!rows)
        return std::move(rows.error());
      result = {sql_int(rows->at(0).at(0)).value_or(-2),
                sql_int(rows->at(0).at(1)).value_or(-2)};
      return caf::none;
    });
    REQUIRE_FALSE(err);
    return result;
  }

  /// Damages the live model the way a bug would.
  void damage() {
    REQUIRE_FALSE(db().transact([](sql_transaction& tx) {
      return tx.exec("UPDATE sums SET n = n + 1000");
    }));
  }

private:
  int64_t fail_at_ = -1;
};

/// Waits (bounded) until `name` has handled the feed up to the head.
inline void wait_caught_up(projection_coordinator& coord,
                           const std::string& name) {
  REQUIRE_FALSE(coord.wait_until_caught_up(name, std::chrono::seconds(30)));
}

/// Runs the shadow-rebuild checks on `db`; `shadow_exists` says whether the
/// shadow database is still there.
inline void check_shadow_rebuilds(event_store_ptr store, read_model_db_ptr db,
                                  const std::function<bool()>& shadow_exists) {
  fill(*store, 12, 5);
  auto model = std::make_shared<summing_read_model>(db);
  REQUIRE_FALSE(db->transact([&](sql_transaction& tx) {
    return model->create_tables(tx);
  }));
  threaded_config cfg;
  caf::actor_system sys{cfg};
  projection_coordinator coord{sys};
  auto c = base_config(store, db);
  c.errors.strategy = error_strategy::stop;
  REQUIRE_FALSE(coord.add(model, c));
  wait_caught_up(coord, "sums");
  CHECK(model->rows_and_total() == std::make_pair(int64_t{12}, int64_t{60}));
  model->damage();
  SECTION("a rebuild builds beside the live model and swaps it in") {
    std::vector<rebuild_progress> seen;
    auto err = coord.rebuild(
      "sums",
      [&](const rebuild_progress& p) {
        seen.push_back(p);
      },
      std::chrono::seconds(60), std::chrono::milliseconds(5));
    INFO(describe(err));
    REQUIRE_FALSE(err);
    CHECK(model->rows_and_total() == std::make_pair(int64_t{12}, int64_t{60}));
    CHECK_FALSE(seen.empty());
    CHECK_FALSE(shadow_exists());
    // The live projection goes on from the swapped-in checkpoint.
    fill(*store, 2, 5);
    wait_caught_up(coord, "sums");
    CHECK(model->rows_and_total() == std::make_pair(int64_t{14}, int64_t{70}));
    auto cp = db->checkpoints()->load("sums");
    REQUIRE(cp);
    REQUIRE(*cp);
    CHECK((*cp)->position == *store->head_position());
  }
  SECTION("a rebuild that fails leaves the live model as it was") {
    // The shadow stops at a poisoned event (strategy stop); the live
    // projection already went past it.
    model->fail_at(7);
    auto err = coord.rebuild("sums", {}, std::chrono::seconds(60),
                             std::chrono::milliseconds(5));
    REQUIRE(err);
    CHECK_THAT(describe(err), Catch::Contains("refusing position 7"));
    CHECK(model->rows_and_total()
          == std::make_pair(int64_t{12}, int64_t{12060}));
    CHECK_FALSE(shadow_exists());
    // And it keeps serving: new events still arrive.
    model->fail_at(-1);
    fill(*store, 1, 5);
    wait_caught_up(coord, "sums");
    CHECK(model->rows_and_total()
          == std::make_pair(int64_t{13}, int64_t{12065}));
  }
  SECTION("one rebuild of a projection at a time") {
    auto held = db->checkpoints()->try_lease("sums@rebuild");
    REQUIRE(held);
    auto err = coord.rebuild("sums", {}, std::chrono::seconds(10),
                             std::chrono::milliseconds(5));
    REQUIRE(err);
    CHECK_THAT(describe(err), Catch::Contains("already running"));
    CHECK(model->rows_and_total()
          == std::make_pair(int64_t{12}, int64_t{12060}));
  }
  coord.stop();
}

} // namespace es::test
