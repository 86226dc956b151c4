// PostgreSQL faults: killed connections, statement timeouts, a restarted
// server. Errors are retryable and nothing acknowledged is lost.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

/// Appends `batch`, retrying retryable errors; returns the retryable errors
/// seen on the way.
int append_with_retries(event_store& store, const stream_id& s,
                        event_batch batch, int max_attempts = 200) {
  int retryable = 0;
  for (int i = 0; i < max_attempts; ++i) {
    auto res = store.append(s, expected_version::any(), batch);
    if (res)
      return retryable;
    INFO(describe(res.error()));
    REQUIRE(is_retryable(res.error()));
    ++retryable;
    // Back off a little before the next attempt: this paces retries, it
    // does not wait for an event.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("append did not succeed after " << max_attempts << " attempts");
  return retryable;
}

} // namespace

TEST_CASE("a terminated connection fails once, retryable, then recovers",
          "[postgres][faults]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.reconnect_backoff = std::chrono::milliseconds(1);
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  auto s = new_stream();
  REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 2)));
  REQUIRE((*store)->read_stream(s, {}));
  // Kill every connection of this store (and no other test's).
  auto killed = fx.admin.value(
    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name = '"
    + cfg.application_name + "' AND pid <> pg_backend_pid()");
  CHECK(killed != "0");
  auto res = (*store)->append(s, expected_version::any(), make_batch(s, 1));
  if (!res) {
    INFO(describe(res.error()));
    CHECK(has_code(res.error(), store_errc::connection_failed));
    CHECK(is_retryable(res.error()));
  }
  // The next calls reconnect.
  append_with_retries(**store, s, make_batch(s, 1));
  auto version = (*store)->stream_version(s);
  REQUIRE(version);
  CHECK(*version == (res ? 4 : 3));
  auto page = (*store)->read_stream(s, {});
  REQUIRE(page);
  CHECK(page->events.size() == static_cast<size_t>(*version));
}

TEST_CASE("a statement timeout is a retryable error that writes nothing",
          "[postgres][faults]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  // Set-up and checks go through a store with the default limit, so a
  // loaded machine cannot make them time out; only the blocked append goes
  // through the impatient one.
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  auto impatient_cfg = cfg;
  impatient_cfg.statement_timeout = std::chrono::milliseconds(200);
  impatient_cfg.migrate = false;
  auto impatient = make_postgres_event_store(impatient_cfg);
  REQUIRE(impatient);
  auto s = new_stream();
  REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 1)));
  // Hold the position lock from another session.
  PGconn* blocker = PQconnectdb(cfg.dsn.c_str());
  require_pg_server(blocker);
  PQclear(PQexec(blocker, "BEGIN"));
  PQclear(PQexec(blocker,
                 "SELECT position FROM es_position WHERE id = 1 FOR UPDATE"));
  auto batch = make_batch(s, 1);
  auto res = (*impatient)->append(s, expected_version::exact(1), batch);
  REQUIRE_FALSE(res);
  INFO(describe(res.error()));
  CHECK(has_code(res.error(), store_errc::timeout));
  CHECK(is_retryable(res.error()));
  PQclear(PQexec(blocker, "ROLLBACK"));
  PQfinish(blocker);
  CHECK_FALSE(*(*store)->event_exists(batch.front().event_id));
  // Retrying the same batch now succeeds.
  auto again = (*store)->append(s, expected_version::exact(1), batch);
  REQUIRE(again);
  CHECK(again->first_version == 2);
}

TEST_CASE("a server restart in the middle of a run loses nothing "
          "acknowledged",
          "[postgres][faults][restart]") {
  const char* restart = std::getenv("ES_TEST_PG_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("set ES_TEST_PG_RESTART to a command that restarts the test server "
         "(scripts/test sets it to `scripts/pg restart`)");
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.reconnect_backoff = std::chrono::milliseconds(10);
  cfg.max_reconnect_backoff = std::chrono::milliseconds(200);
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  std::mutex mtx;
  std::vector<uuid> acked;
  std::atomic<int> retryable{0};
  std::atomic<int> appended{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w)
    writers.emplace_back([&] {
      auto s = new_stream();
      while (!stop) {
        auto batch = make_batch(s, 2);
        for (int attempt = 0; attempt < 500; ++attempt) {
          auto res = (*store)->append(s, expected_version::any(), batch);
          if (res) {
            std::lock_guard guard{mtx};
            for (auto& ev : batch)
              acked.push_back(ev.event_id);
            ++appended;
            break;
          }
          if (!is_retryable(res.error()))
            return;
          ++retryable;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    });
  // Let some appends land, restart, let more land.
  while (appended < 20)
    std::this_thread::yield();
  REQUIRE(std::system(restart) == 0);
  auto after = appended.load();
  while (appended < after + 20)
    std::this_thread::yield();
  stop = true;
  for (auto& t : writers)
    t.join();
  CHECK(retryable > 0);
  // Everything acknowledged is stored, and the feed is dense.
  pg_admin admin;
  for (auto& id : acked)
    CHECK(*(*store)->event_exists(id));
  auto head = (*store)->head_position();
  REQUIRE(head);
  auto count
    = admin.value("SELECT COUNT(*) FROM " + fx.schemas.back() + ".events");
  CHECK(std::to_string(*head) == count);
  CHECK(static_cast<int64_t>(acked.size()) <= *head);
}
