// PostgreSQL faults: killed connections, statement timeouts, a restarted
// server. Errors are retryable and nothing acknowledged is lost.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

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
  // Hold the position lock from another session (in the overlapping feed:
  // the lock es_reserve takes for a moment).
  PGconn* blocker = PQconnectdb(cfg.dsn.c_str());
  require_pg_server(blocker);
  PQclear(PQexec(blocker, "BEGIN"));
  PQclear(PQexec(blocker,
                 cfg.feed == postgres_feed::serialized
                   ? "SELECT position FROM es_position WHERE id = 1 FOR UPDATE"
                   : "SELECT pg_advisory_lock(es_reserve_lock_key())"));
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
  // Everything acknowledged is stored, and the feed is dense (in the
  // overlapping feed: ends at the last row).
  pg_admin admin;
  for (auto& id : acked)
    CHECK(*(*store)->event_exists(id));
  auto head = (*store)->head_position();
  REQUIRE(head);
  auto count
    = admin.value((pg_test_feed() == postgres_feed::serialized
                     ? "SELECT COUNT(*) FROM "
                     : "SELECT COALESCE(MAX(global_position), 0) FROM ")
                  + fx.schemas.back() + ".events");
  CHECK(std::to_string(*head) == count);
  CHECK(static_cast<int64_t>(acked.size()) <= *head);
}

TEST_CASE("the reader pool never opens more than read_connections",
          "[postgres][pool]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.read_connections = 4;
  cfg.read_wait_timeout = std::chrono::seconds(30);
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  std::vector<stream_id> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(new_stream());
    REQUIRE((*store)->append(streams.back(), expected_version::any(),
                             make_batch(streams.back(), 5)));
  }
  constexpr int readers = 64;
  constexpr int reads_each = 25;
  std::atomic<int> started{0};
  std::atomic<int> failures{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < readers; ++t)
    threads.emplace_back([&, t] {
      ++started;
      for (int i = 0; i < reads_each; ++i) {
        auto& s = streams[static_cast<size_t>(t + i) % streams.size()];
        auto page = (*store)->read_stream(s, {});
        auto all = (*store)->read_all({});
        if (!page || page->events.size() != 5 || !all
            || all->events.size() != 40)
          ++failures;
      }
      ++done;
    });
  // Watch the pool and the server while the readers run.
  uint64_t max_in_use = 0;
  uint64_t max_open = 0;
  uint64_t max_waiting = 0;
  int max_sessions = 0;
  auto sessions_sql = "SELECT COUNT(*) FROM pg_stat_activity"
                      " WHERE application_name = '"
                      + cfg.application_name + "'";
  while (done.load() < readers) {
    auto m = (*store)->metrics();
    max_in_use = std::max(max_in_use, m.read_connections_in_use);
    max_open = std::max(max_open, m.read_connections_open);
    max_waiting = std::max(max_waiting, m.read_connections_waiting);
    max_sessions
      = std::max(max_sessions, std::atoi(fx.admin.value(sessions_sql).c_str()));
  }
  for (auto& th : threads)
    th.join();
  INFO("most in use " << max_in_use << ", open " << max_open << ", waiting "
                      << max_waiting << ", sessions " << max_sessions);
  CHECK(failures.load() == 0);
  CHECK(max_in_use <= 4);
  CHECK(max_open <= 4);
  // The readers plus the one writer connection.
  CHECK(max_sessions <= 5);
  auto m = (*store)->metrics();
  CHECK(m.read_connections_in_use == 0);
  CHECK(m.read_connections_waiting == 0);
  CHECK(m.read_waits_timed_out == 0);
  CHECK(m.reads >= static_cast<uint64_t>(readers * reads_each * 2));
  CHECK(m.events_read >= static_cast<uint64_t>(readers * reads_each * 45));
}

TEST_CASE("a reader that finds the pool exhausted fails with pool_exhausted",
          "[postgres][pool]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.read_connections = 1;
  cfg.read_wait_timeout = std::chrono::milliseconds(100);
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  auto s = new_stream();
  REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 3)));
  // A second session holds the events table: the one reader blocks on it.
  pg_admin locker;
  locker.exec("BEGIN");
  locker.exec("LOCK TABLE " + fx.schemas.back()
              + ".events IN ACCESS EXCLUSIVE MODE");
  std::atomic<bool> blocked_read_ok{false};
  std::thread blocked{[&] {
    auto page = (*store)->read_stream(s, {});
    blocked_read_ok = page && page->events.size() == 3;
  }};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*store)->metrics().read_connections_in_use == 0
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  REQUIRE((*store)->metrics().read_connections_in_use == 1);
  auto refused = (*store)->read_all({});
  REQUIRE_FALSE(refused);
  INFO(describe(refused.error()));
  CHECK(has_code(refused.error(), store_errc::pool_exhausted));
  CHECK(is_retryable(refused.error()));
  CHECK((*store)->metrics().read_waits_timed_out == 1);
  locker.exec("ROLLBACK");
  blocked.join();
  CHECK(blocked_read_ok.load());
  // The connection came back: reads work again.
  auto page = (*store)->read_all({});
  REQUIRE(page);
  CHECK(page->events.size() == 3);
}
