// Helpers of the threaded projection tests (SQLite and PostgreSQL): a
// counting read model, decorators that inject failures, and a feed filler.
#pragma once

#include "es/projections/coordinator.hpp"
#include "es/projections/projection.hpp"
#include "es/projections/subscription.hpp"
#include "es/projections/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>

namespace es::test {

struct threaded_config : caf::actor_system_config {
  threaded_config() {
    add_projections_module(*this);
    set("scheduler.max-threads", 2);
  }
};

/// Counts events per type and sums quantities in a SQL table.
class counting_read_model : public transactional_projection {
public:
  using transactional_projection::transactional_projection;

  std::string name() const override {
    return "counts";
  }

  caf::error handle(sql_transaction& tx, const recorded_event& ev) override {
    if (fail_at_ == ev.global_position)
      return make_store_error(store_errc::malformed_payload,
                              "cannot count position "
                                + std::to_string(ev.global_position));
    if (auto err = ensure(tx))
      return err;
    auto sqlite = tx.dialect() == "sqlite";
    return tx.exec(sqlite ? "INSERT INTO counts (event_type, n) VALUES (?1, 1)"
                            " ON CONFLICT (event_type) DO UPDATE"
                            " SET n = counts.n + 1"
                          : "INSERT INTO counts (event_type, n) VALUES ($1, 1)"
                            " ON CONFLICT (event_type) DO UPDATE"
                            " SET n = counts.n + 1",
                   {sql_value{ev.event_type}});
  }

  caf::error reset(sql_transaction& tx) override {
    if (auto err = ensure(tx))
      return err;
    return tx.exec("DELETE FROM counts");
  }

  void fail_at(int64_t pos) {
    fail_at_ = pos;
  }

  /// Total counted, read in a transaction of its own.
  int64_t total() {
    int64_t result = -1;
    auto err = db().transact([&](sql_transaction& tx) -> caf::error {
      if (auto e = ensure(tx))
        return e;
      auto rows = tx.query("SELECT COALESCE(SUM(n), 0) FROM counts");
      if (!rows)
        return std::move(rows.error());
      result = sql_int(rows->at(0).at(0)).value_or(-2);
      return caf::none;
    });
    REQUIRE_FALSE(err);
    return result;
  }

private:
  static caf::error ensure(sql_transaction& tx) {
    return tx.exec("CREATE TABLE IF NOT EXISTS counts (event_type TEXT"
                   " PRIMARY KEY, n BIGINT NOT NULL)");
  }

  std::atomic<int64_t> fail_at_{-1};
};

/// A read-model database whose commit fails on chosen calls.
class failing_db : public read_model_db {
public:
  explicit failing_db(read_model_db_ptr inner) : inner_(std::move(inner)) {
    // nop
  }

  std::string dialect() const override {
    return inner_->dialect();
  }

  caf::error
  transact(const std::function<caf::error(sql_transaction&)>& fn) override {
    auto n = ++calls_;
    return inner_->transact([&](sql_transaction& tx) -> caf::error {
      if (auto err = fn(tx))
        return err;
      // The work is done; fail before the commit.
      if (n == fail_call_)
        return make_store_error(store_errc::io_error,
                                "injected commit failure");
      return caf::none;
    });
  }

  caf::expected<checkpoint>
  save_checkpoint(sql_transaction& tx, const checkpoint& cp,
                  std::optional<int64_t> expected_position) override {
    return inner_->save_checkpoint(tx, cp, expected_position);
  }

  caf::expected<int64_t> add_dead_letter(sql_transaction& tx,
                                         const dead_letter& e) override {
    return inner_->add_dead_letter(tx, e);
  }

  caf::expected<bool> mark_processed(sql_transaction& tx,
                                     const std::string& projection,
                                     const uuid& event_id) override {
    return inner_->mark_processed(tx, projection, event_id);
  }

  checkpoint_store_ptr checkpoints() override {
    return inner_->checkpoints();
  }

  dead_letter_store_ptr dead_letters() override {
    return inner_->dead_letters();
  }

  caf::expected<read_model_db_ptr>
  open_shadow(const std::string& tag) override {
    return inner_->open_shadow(tag);
  }

  caf::error replace_from(read_model_db& shadow,
                          const std::vector<std::string>& tables,
                          const std::string& name) override {
    return inner_->replace_from(shadow, tables, name);
  }

  caf::error discard() override {
    return inner_->discard();
  }

  std::atomic<int> fail_call_{-1};
  std::atomic<int> calls_{0};

private:
  read_model_db_ptr inner_;
};

/// An event store that fails one chosen call of `read_all`.
class failing_store : public event_store {
public:
  explicit failing_store(event_store_ptr inner) : inner_(std::move(inner)) {
    // nop
  }
  std::string name() const override {
    return "failing";
  }
  caf::expected<append_result> append(const stream_id& s, expected_version e,
                                      event_batch events) override {
    return inner_->append(s, e, std::move(events));
  }
  caf::expected<stream_slice>
  read_stream(const stream_id& s, const read_stream_options& o) override {
    return inner_->read_stream(s, o);
  }
  caf::expected<all_slice> read_all(const read_all_options& o) override {
    if (++calls_ == fail_call_)
      return make_store_error(store_errc::connection_failed,
                              "injected read failure");
    return inner_->read_all(o);
  }
  caf::expected<int64_t> stream_version(const stream_id& s) override {
    return inner_->stream_version(s);
  }
  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& id) override {
    return inner_->find_event(id);
  }
  caf::expected<int64_t> head_position() override {
    return inner_->head_position();
  }
  store_metrics metrics() const override {
    return inner_->metrics();
  }
  const store_limits& limits() const override {
    return inner_->limits();
  }
  std::atomic<int> fail_call_{-1};
  std::atomic<int> calls_{0};

private:
  event_store_ptr inner_;
};

inline void fill(event_store& store, int streams, int per_stream) {
  for (int i = 0; i < streams; ++i) {
    auto s = new_stream();
    auto batch = make_batch(s, per_stream);
    if (i % 3 == 0)
      for (auto& ev : batch)
        ev.event_type = "NoteWritten", ev.payload = R"({"text":"x"})";
    REQUIRE(store.append(s, expected_version::any(), batch));
  }
}

inline subscription_config base_config(event_store_ptr store) {
  subscription_config c;
  c.store = std::move(store);
  c.page_size = 16;
  c.poll_interval = std::chrono::milliseconds(5);
  c.errors.retry.initial_delay = std::chrono::milliseconds(1);
  c.errors.retry.max_retries = 2;
  return c;
}

/// `base_config` with the checkpoints and dead letters kept in `db`.
inline subscription_config base_config(event_store_ptr store,
                                       const read_model_db_ptr& db) {
  auto c = base_config(std::move(store));
  c.checkpoints = db->checkpoints();
  c.dead_letters = db->dead_letters();
  return c;
}

/// Feeds 100 events (one of which the handler refuses) through a
/// transactional counting read model on `inner` whose third transaction
/// fails before its commit, then resumes with a new actor system: every
/// event counted once or dead-lettered, the checkpoint at the end.
inline void check_exactly_once(event_store_ptr store, read_model_db_ptr inner,
                               size_t batch_size) {
  fill(*store, 20, 5);
  auto db = std::make_shared<failing_db>(inner);
  // The third transaction fails after its work: the batch rolls back as a
  // whole and is retried.
  db->fail_call_ = 3;
  auto model = std::make_shared<counting_read_model>(db);
  model->fail_at(37);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  {
    projection_coordinator coord{sys};
    auto c = base_config(store);
    c.batch_size = batch_size;
    c.errors.strategy = error_strategy::retry_then_dlq;
    REQUIRE_FALSE(coord.add(model, c));
    auto waited
      = coord.wait_until_caught_up("counts", std::chrono::seconds(30));
    INFO(describe(waited));
    REQUIRE_FALSE(waited);
    auto s = coord.status("counts");
    REQUIRE(s);
    CHECK(s->position == 100);
  }
  // 100 events, one (position 37) in the dead-letter table.
  CHECK(model->total() == 99);
  auto letters = db->dead_letters()->list({});
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  CHECK(letters->front().global_position == 37);
  auto cp = db->checkpoints()->load("counts");
  REQUIRE(cp);
  CHECK((*cp)->position == 100);
  // A new projection actor on the same database resumes at 100 and counts
  // only what is new.
  fill(*store, 2, 5);
  threaded_config cfg2;
  caf::actor_system sys2{cfg2};
  projection_coordinator coord2{sys2};
  auto c2 = base_config(store);
  c2.batch_size = batch_size;
  REQUIRE_FALSE(coord2.add(model, c2));
  REQUIRE_FALSE(
    coord2.wait_until_caught_up("counts", std::chrono::seconds(30)));
  CHECK(model->total() == 109);
}

// -- checkpoints written with compare-and-set
// ----------------------------------

/// The read-model rows a writer of `check_checkpoint_cas` left, read in a
/// transaction of `db`'s own.
inline int64_t cas_rows(read_model_db& db, const std::string& writer) {
  int64_t result = -1;
  auto err = db.transact([&](sql_transaction& tx) -> caf::error {
    auto rows = tx.query(tx.dialect() == "sqlite"
                           ? "SELECT COUNT(*) FROM cas_rows WHERE writer = ?1"
                           : "SELECT COUNT(*) FROM cas_rows WHERE writer = $1",
                         {sql_value{writer}});
    if (!rows)
      return std::move(rows.error());
    result = sql_int(rows->at(0).at(0)).value_or(-2);
    return caf::none;
  });
  INFO(describe(err));
  REQUIRE_FALSE(err);
  return result;
}

/// Writes a batch of read-model rows for positions (`from`, `to`] as
/// `writer` and its checkpoint at `to`, expecting the stored checkpoint at
/// `from`, all in one transaction of `db`.
inline caf::error write_cas_batch(read_model_db& db, const std::string& writer,
                                  int64_t from, int64_t to) {
  return db.transact([&](sql_transaction& tx) -> caf::error {
    auto sqlite = tx.dialect() == "sqlite";
    for (auto pos = from + 1; pos <= to; ++pos)
      if (auto err = tx.exec(sqlite ? "INSERT INTO cas_rows VALUES (?1, ?2)"
                                    : "INSERT INTO cas_rows VALUES ($1, $2)",
                             {sql_value{writer}, sql_value{pos}}))
        return err;
    checkpoint cp{"cas", to,       uuid::time_ordered(), "from " + writer,
                  to,    now_utc()};
    auto saved = db.save_checkpoint(tx, cp, from);
    return saved ? caf::error{} : std::move(saved.error());
  });
}

/// Creates the rows table, and with `stored_at_zero` a checkpoint at 0 (else
/// there is none).
inline void prepare_cas(read_model_db& db, bool stored_at_zero) {
  auto err = db.transact([](sql_transaction& tx) {
    return tx.exec("CREATE TABLE IF NOT EXISTS cas_rows (writer TEXT NOT NULL,"
                   " position BIGINT NOT NULL)");
  });
  REQUIRE_FALSE(err);
  if (stored_at_zero)
    REQUIRE(db.checkpoints()->save(checkpoint{"cas", 0, {}, "", 0, now_utc()}));
}

/// The position `db` sees for the checkpoint of `check_checkpoint_cas`.
inline int64_t cas_position(read_model_db& db) {
  auto cp = db.checkpoints()->load("cas");
  REQUIRE(cp);
  return *cp ? (*cp)->position : 0;
}

/// Two read-model databases `a` and `b` on one database, as two instances
/// of a projection would have: both read checkpoint 0, A commits positions
/// 1-5 with its checkpoint, B's batch over the same positions fails with
/// `checkpoint_conflict` and leaves none of its writes; B, knowing the new
/// position, then goes on from there.
inline void check_checkpoint_cas(read_model_db& a, read_model_db& b,
                                 bool stored_at_zero) {
  prepare_cas(a, stored_at_zero);
  auto a_pos = cas_position(a);
  auto b_pos = cas_position(b);
  REQUIRE(a_pos == 0);
  REQUIRE(b_pos == 0);
  REQUIRE_FALSE(write_cas_batch(a, "a", a_pos, 5));
  auto err = write_cas_batch(b, "b", b_pos, 5);
  INFO("B's batch: " << describe(err));
  CHECK(has_code(err, store_errc::checkpoint_conflict));
  CHECK(describe(err).find("expected position 0") != std::string::npos);
  CHECK(describe(err).find("found position 5") != std::string::npos);
  CHECK(cas_rows(a, "b") == 0);
  CHECK(cas_rows(b, "b") == 0);
  CHECK(cas_rows(b, "a") == 5);
  auto stored = b.checkpoints()->load("cas");
  REQUIRE(stored);
  REQUIRE(stored->has_value());
  CHECK((*stored)->position == 5);
  CHECK((*stored)->event_type == "from a");
  // Now A is the one behind.
  REQUIRE_FALSE(write_cas_batch(b, "b", cas_position(b), 8));
  CHECK(
    has_code(write_cas_batch(a, "a", 5, 8), store_errc::checkpoint_conflict));
  CHECK(cas_rows(a, "a") == 5);
  CHECK(cas_rows(a, "b") == 3);
  CHECK(cas_position(a) == 8);
}

} // namespace es::test
