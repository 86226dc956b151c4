// What only the SQLite adapter has: files, schema, durability settings.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

int64_t raw_int(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
          == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  int64_t result = -1;
  if (sqlite3_step(st) == SQLITE_ROW)
    result = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return result;
}

void raw_exec(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* msg = nullptr;
  auto rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  INFO((msg ? msg : ""));
  sqlite3_free(msg);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

} // namespace

TEST_CASE("events survive closing and reopening the file", "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  auto s = new_stream();
  auto batch = make_batch(s, 10);
  {
    auto store = make_sqlite_event_store(cfg);
    REQUIRE(store);
    REQUIRE((*store)->append(s, expected_version::no_stream(), batch));
  }
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  CHECK(*(*store)->stream_version(s) == 10);
  auto page = (*store)->read_stream(s, {});
  REQUIRE(page);
  REQUIRE(page->events.size() == 10);
  CHECK(page->events[9].event_id == batch[9].event_id);
  CHECK(raw_int(cfg.path, "SELECT MAX(version) FROM schema_migrations")
        == sqlite_schema_version());
}

TEST_CASE("the schema has the five tables of the design", "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  REQUIRE(make_sqlite_event_store(cfg));
  for (const char* table :
       {"events", "event_outbox", "projection_checkpoints", "dead_letter_queue",
        "snapshots", "schema_migrations"}) {
    INFO(table);
    auto sql = std::string{"SELECT COUNT(*) FROM sqlite_master WHERE "
                           "type = 'table' AND name = '"}
               + table + "'";
    CHECK(raw_int(cfg.path, sql.c_str()) == 1);
  }
}

TEST_CASE("migrations run once and refuse newer schemas", "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  REQUIRE(make_sqlite_event_store(cfg));
  REQUIRE(make_sqlite_event_store(cfg));
  CHECK(raw_int(cfg.path, "SELECT COUNT(*) FROM schema_migrations")
        == sqlite_schema_version());
  raw_exec(cfg.path, "INSERT INTO schema_migrations VALUES (999, 'future', 0)");
  auto res = make_sqlite_event_store(cfg);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::schema_too_new));
}

TEST_CASE("two stores opening one new file concurrently", "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  std::vector<std::thread> threads;
  std::mutex mtx;
  std::vector<std::string> errors;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      auto res = make_sqlite_event_store(cfg);
      if (!res) {
        std::lock_guard guard{mtx};
        errors.push_back(describe(res.error()));
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(errors == std::vector<std::string>{});
  CHECK(raw_int(cfg.path, "SELECT COUNT(*) FROM schema_migrations")
        == sqlite_schema_version());
}

TEST_CASE("files that are not event stores are refused", "[sqlite]") {
  temp_dir dir;
  SECTION("garbage") {
    auto path = dir.file("garbage.db");
    std::ofstream(path) << std::string(8192, 'x');
    sqlite_config cfg;
    cfg.path = path;
    auto res = make_sqlite_event_store(cfg);
    REQUIRE_FALSE(res);
    INFO(describe(res.error()));
    CHECK(has_code(res.error(), store_errc::corrupt_database));
  }
  SECTION("a directory that does not exist") {
    sqlite_config cfg;
    cfg.path = dir.file("missing/dir/events.db");
    auto res = make_sqlite_event_store(cfg);
    REQUIRE_FALSE(res);
    INFO(describe(res.error()));
    CHECK(has_code(res.error(), store_errc::connection_failed));
  }
  SECTION("an empty path") {
    auto res = make_sqlite_event_store(sqlite_config{});
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::invalid_argument));
  }
}

TEST_CASE("every synchronous mode stores the same events", "[sqlite]") {
  temp_dir dir;
  for (auto mode : {sqlite_sync::full, sqlite_sync::normal, sqlite_sync::off}) {
    sqlite_config cfg;
    cfg.path
      = dir.file("events-" + std::to_string(static_cast<int>(mode)) + ".db");
    cfg.synchronous = mode;
    auto store = make_sqlite_event_store(cfg);
    REQUIRE(store);
    auto s = new_stream();
    REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 3)));
    CHECK(*(*store)->head_position() == 3);
  }
}

TEST_CASE("a writer locked out by another process gets storage_busy",
          "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  cfg.busy_timeout = std::chrono::milliseconds{50};
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(cfg.path.c_str(), &other) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
          == SQLITE_OK);
  auto s = new_stream();
  auto res = (*store)->append(s, expected_version::any(), make_batch(s, 1));
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::storage_busy));
  CHECK(is_retryable(res.error()));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  // Retrying succeeds and nothing of the failed attempt remains.
  auto again
    = (*store)->append(s, expected_version::no_stream(), make_batch(s, 1));
  REQUIRE(again);
  CHECK(again->first_position == 1);
}

TEST_CASE("group commit writes concurrent appends in shared transactions",
          "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  cfg.synchronous = sqlite_sync::full;
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  constexpr int threads = 16;
  constexpr int per_thread = 25;
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      auto s = new_stream();
      for (int i = 0; i < per_thread; ++i)
        if (!(*store)->append(s, expected_version::exact(i), make_batch(s, 1)))
          ++failures;
    });
  for (auto& t : ts)
    t.join();
  CHECK(failures == 0);
  CHECK(*(*store)->head_position() == threads * per_thread);
  auto m = (*store)->metrics();
  CHECK(m.append_requests == threads * per_thread);
  CHECK(m.events_appended == threads * per_thread);
  // With fsync on every commit, writers queue behind the leader and share
  // its next transaction.
  INFO("transactions: " << m.transactions);
  CHECK(m.transactions < m.append_requests);
  CHECK(m.transactions >= m.append_requests / cfg.max_group_size);
}

// Found by tests/fuzz/fuzz_stored_row: a row at the largest version (the
// schema's CHECK allows it) overflowed the page's next version.
TEST_CASE("a stream at the largest version reads without overflow",
          "[sqlite]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  auto s = new_stream();
  {
    auto store = make_sqlite_event_store(cfg);
    REQUIRE(store);
    REQUIRE(
      (*store)->append(s, expected_version::no_stream(), make_batch(s, 1)));
  }
  raw_exec(cfg.path,
           "UPDATE events SET aggregate_version = 9223372036854775807");
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  constexpr auto largest = std::numeric_limits<int64_t>::max();
  CHECK(*(*store)->stream_version(s) == largest);
  auto page = (*store)->read_stream(s, {});
  REQUIRE(page);
  REQUIRE(page->events.size() == 1);
  CHECK(page->events[0].aggregate_version == largest);
  CHECK(page->end_of_stream);
  CHECK(page->next_version == largest);
  read_stream_options backwards;
  backwards.direction = read_direction::backwards;
  page = (*store)->read_stream(s, backwards);
  REQUIRE(page);
  REQUIRE(page->events.size() == 1);
  CHECK(page->next_version == largest - 1);
  // A real number beyond the integers reads as the largest version but
  // matches no integer bound: an empty page that ends the stream.
  raw_exec(cfg.path, "UPDATE events SET aggregate_version = 1e19");
  CHECK(*(*store)->stream_version(s) == largest);
  page = (*store)->read_stream(s, backwards);
  REQUIRE(page);
  CHECK(page->events.empty());
  CHECK(page->end_of_stream);
  CHECK(page->next_version == largest);
}

TEST_CASE("the health check names missing tables and a stale schema",
          "[sqlite][health]") {
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("health.db");
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  REQUIRE((*store)->check_health().healthy());
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(cfg.path.c_str(), &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "DROP TABLE snapshots; DELETE FROM schema_migrations"
                       " WHERE version = (SELECT MAX(version) FROM"
                       " schema_migrations)",
                       nullptr, nullptr, nullptr)
          == SQLITE_OK);
    sqlite3_close(db);
  }
  auto h = (*store)->check_health();
  CHECK(h.reachable);
  CHECK_FALSE(h.healthy());
  REQUIRE(h.missing_tables == std::vector<std::string>{"snapshots"});
  CHECK(h.problem.find("tables missing") != std::string::npos);
}
