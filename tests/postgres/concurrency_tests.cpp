// PostgreSQL under concurrency: writers in two processes, a reader tailing
// the feed, transactions rolled back on purpose, and an independent check of
// what was delivered against what was acknowledged.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "pg_fixture.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

constexpr int processes = 2;
constexpr int writers_per_process = 8;
constexpr int appends_per_writer = 40;
constexpr int shared_streams = 12;

/// The streams all writers contend on, the same in every process.
stream_id shared_stream(int i) {
  uuid::bytes_type b{};
  b[0] = 0x5e;
  b[15] = static_cast<uint8_t>(i + 1);
  return {"Order", uuid{b}};
}

/// Runs `sql` on `c`; FAILs on error. Returns the first value, if any.
std::string exec_on(PGconn* c, const std::string& sql) {
  PGresult* res = PQexec(c, sql.c_str());
  auto ok = PQresultStatus(res) == PGRES_COMMAND_OK
            || PQresultStatus(res) == PGRES_TUPLES_OK;
  std::string msg = PQresultErrorMessage(res);
  std::string value;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
    value = PQgetvalue(res, 0, 0);
  PQclear(res);
  if (!ok)
    FAIL("SQL failed: " << sql << ": " << msg);
  return value;
}

/// Inserts two events the way an append of the feed does, then rolls the
/// transaction back. Returns the ids it inserted.
std::vector<uuid> rolled_back_append(PGconn* conn, postgres_feed feed) {
  std::vector<uuid> ids{uuid::random(), uuid::random()};
  auto stream = uuid::random();
  if (feed == postgres_feed::overlapping) {
    std::string sql
      = "BEGIN; WITH r AS (SELECT es_reserve(2) AS base)"
        " INSERT INTO events (global_position, event_id, event_type,"
        " event_version, aggregate_type, aggregate_id, aggregate_version,"
        " occurred_at, payload) SELECT r.base + v.n, v.id, 'Sabotage', 1,"
        " 'Doomed', '"
        + stream.to_string() + "', v.n, now(), '{}' FROM r, (VALUES (1, '"
        + ids[0].to_string() + "'::uuid), (2, '" + ids[1].to_string()
        + "'::uuid)) AS v(n, id); ROLLBACK";
    PQclear(PQexec(conn, sql.c_str()));
    return ids;
  }
  std::string sql
    = "BEGIN; SELECT position FROM es_position WHERE id = 1 FOR UPDATE;"
      " INSERT INTO events (global_position, event_id, event_type,"
      " event_version, aggregate_type, aggregate_id, aggregate_version,"
      " occurred_at, payload) SELECT position + 1, '"
      + ids[0].to_string() + "', 'Sabotage', 1, 'Doomed', '"
      + stream.to_string()
      + "', 1, now(), '{}' FROM es_position WHERE id = 1;"
        " INSERT INTO events (global_position, event_id, event_type,"
        " event_version, aggregate_type, aggregate_id, aggregate_version,"
        " occurred_at, payload) SELECT position + 2, '"
      + ids[1].to_string() + "', 'Sabotage', 1, 'Doomed', '"
      + stream.to_string()
      + "', 2, now(), '{}' FROM es_position WHERE id = 1;"
        " UPDATE es_position SET position = position + 2 WHERE id = 1;"
        " ROLLBACK";
  PGresult* res = PQexec(conn, sql.c_str());
  PQclear(res);
  return ids;
}

/// Runs in a child process: writers append, a saboteur rolls back.
int writer_process(const postgres_config& cfg, int index,
                   const std::string& acked_file,
                   const std::string& rolled_back_file) {
  auto store = make_postgres_event_store(cfg);
  if (!store)
    return 10;
  std::mutex mtx;
  std::vector<uuid> acked;
  std::vector<uuid> doomed;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers_per_process; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(index * 100 + w));
      for (int i = 0; i < appends_per_writer; ++i) {
        auto s = shared_stream(static_cast<int>(rng() % shared_streams));
        auto batch = make_batch(s, static_cast<int>(rng() % 4) + 1, i);
        bool done = false;
        for (int attempt = 0; attempt < 50 && !done; ++attempt) {
          auto v = (*store)->stream_version(s);
          if (!v)
            continue;
          auto expected = rng() % 10 == 0 ? expected_version::any()
                                          : expected_version::exact(*v);
          auto res = (*store)->append(s, expected, batch);
          if (res) {
            done = true;
          } else if (!has_code(res.error(), store_errc::wrong_expected_version)
                     && !is_retryable(res.error())) {
            break;
          }
        }
        if (!done) {
          ++failures;
          continue;
        }
        std::lock_guard guard{mtx};
        for (auto& ev : batch)
          acked.push_back(ev.event_id);
      }
    });
  threads.emplace_back([&] {
    PGconn* conn = PQconnectdb(cfg.dsn.c_str());
    for (int i = 0; i < 10; ++i) {
      auto ids = rolled_back_append(conn, cfg.feed);
      std::lock_guard guard{mtx};
      doomed.insert(doomed.end(), ids.begin(), ids.end());
    }
    PQfinish(conn);
  });
  for (auto& t : threads)
    t.join();
  std::ofstream a{acked_file};
  for (auto& id : acked)
    a << id.to_string() << '\n';
  std::ofstream d{rolled_back_file};
  for (auto& id : doomed)
    d << id.to_string() << '\n';
  return failures == 0 ? 0 : 11;
}

std::vector<uuid> read_ids(const std::string& file) {
  std::vector<uuid> result;
  std::ifstream in{file};
  std::string line;
  while (std::getline(in, line))
    if (auto id = uuid::parse(line))
      result.push_back(*id);
  return result;
}

} // namespace

/// Two writer processes, a saboteur each, a reader tailing the feed; then
/// the independent check. In the serialized feed positions must be dense;
/// in the overlapping feed rolled-back appends leave holes, and the check
/// is that positions only grow.
void concurrent_writers(postgres_feed feed) {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.feed = feed;
  auto reader_store = make_postgres_event_store(cfg);
  REQUIRE(reader_store);
  temp_dir dir;
  // Fork before any thread of this process exists.
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    auto pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
      _exit(writer_process(cfg, p, dir.file("acked-" + std::to_string(p)),
                           dir.file("doomed-" + std::to_string(p))));
    children.push_back(pid);
  }
  // The reader tails the feed the whole time.
  std::atomic<bool> writers_done{false};
  std::vector<recorded_event> delivered;
  caf::error reader_error;
  std::thread reader([&] {
    read_all_options opts;
    opts.max_count = 97;
    for (;;) {
      // Read whether the writers had ended before the page is read: a page
      // read while the last commits were still in flight may be empty.
      bool ended_before = writers_done.load();
      auto page = (*reader_store)->read_all(opts);
      if (!page) {
        reader_error = page.error();
        return;
      }
      for (auto& ev : page->events)
        delivered.push_back(std::move(ev));
      opts.after_position = page->next_position;
      // Stop only on an empty page read entirely after the writers ended.
      if (page->end_of_feed && ended_before && page->events.empty())
        return;
    }
  });
  int failed_children = 0;
  for (auto pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      ++failed_children;
  }
  writers_done = true;
  reader.join();
  REQUIRE_FALSE(reader_error);
  CHECK(failed_children == 0);
  std::vector<uuid> acked;
  std::vector<uuid> doomed;
  for (int p = 0; p < processes; ++p) {
    auto a = read_ids(dir.file("acked-" + std::to_string(p)));
    auto d = read_ids(dir.file("doomed-" + std::to_string(p)));
    acked.insert(acked.end(), a.begin(), a.end());
    doomed.insert(doomed.end(), d.begin(), d.end());
  }
  INFO("acknowledged " << acked.size() << ", delivered " << delivered.size()
                       << ", rolled back " << doomed.size());
  REQUIRE(acked.size() >= static_cast<size_t>(processes * writers_per_process
                                              * appends_per_writer));
  CHECK(doomed.size() == processes * 20);
  // The independent checker.
  auto head = (*reader_store)->head_position();
  REQUIRE(head);
  bool dense = feed == postgres_feed::serialized;
  if (dense)
    CHECK(static_cast<int64_t>(delivered.size()) == *head);
  else
    CHECK((delivered.empty() ? 0 : delivered.back().global_position) == *head);
  std::set<uuid> seen;
  std::map<stream_id, int64_t> versions;
  int64_t last_position = 0;
  for (size_t i = 0; i < delivered.size(); ++i) {
    const auto& ev = delivered[i];
    // Every position once, in order; no gaps in the serialized feed.
    if (dense)
      CHECK(ev.global_position == static_cast<int64_t>(i) + 1);
    else
      CHECK(ev.global_position > last_position);
    last_position = ev.global_position;
    // No event id twice.
    CHECK(seen.insert(ev.event_id).second);
    // Versions per aggregate contiguous from 1.
    auto& v = versions[ev.stream()];
    CHECK(ev.aggregate_version == v + 1);
    v = ev.aggregate_version;
  }
  // Every acknowledged event was delivered (exactly once, by the above).
  size_t missing = 0;
  for (auto& id : acked)
    missing += seen.count(id) == 0 ? 1 : 0;
  CHECK(missing == 0);
  CHECK(seen.size() == acked.size());
  // Nothing rolled back was delivered.
  size_t leaked = 0;
  for (auto& id : doomed)
    leaked += seen.count(id);
  CHECK(leaked == 0);
}

TEST_CASE("concurrent writers in two processes against a tailing reader",
          "[postgres][concurrency]") {
  SECTION("serialized feed") {
    concurrent_writers(postgres_feed::serialized);
  }
  SECTION("overlapping feed") {
    concurrent_writers(postgres_feed::overlapping);
  }
}

TEST_CASE("an open transaction holding positions delays younger appends, "
          "and the feed skips nothing",
          "[postgres][concurrency]") {
  postgres_fixture fx;
  auto [store, cfg] = fx.open_feed(postgres_feed::serialized);
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::no_stream(), make_batch(s, 1)));
  // An older transaction takes the lock and the next position (2).
  pg_admin older_admin;
  PGconn* older = PQconnectdb(cfg.dsn.c_str());
  require_pg_server(older);
  auto older_id_1 = uuid::random();
  auto older_id_2 = uuid::random();
  auto older_stream = uuid::random();
  auto insert = [&](const uuid& id, int pos, int version) {
    exec_on(older, "INSERT INTO events (global_position, event_id, event_type,"
                   " event_version, aggregate_type, aggregate_id,"
                   " aggregate_version, occurred_at, payload) VALUES ("
                     + std::to_string(pos) + ", '" + id.to_string()
                     + "', 'ItemAdded', 1, 'Order', '"
                     + older_stream.to_string() + "', "
                     + std::to_string(version) + ", now(), '{}')");
  };
  exec_on(older, "BEGIN");
  exec_on(older, "SELECT position FROM es_position WHERE id = 1 FOR UPDATE");
  insert(older_id_1, 2, 1);
  // A younger append now has to wait for the lock.
  std::atomic<bool> younger_done{false};
  caf::expected<append_result> younger_result{caf::error{}};
  auto younger = make_batch(s, 1);
  std::thread t([&] {
    younger_result = store->append(s, expected_version::exact(1), younger);
    younger_done = true;
  });
  // Wait until the younger append blocks on the lock (a condition with a
  // time limit, not a sleep).
  bool waiting = false;
  for (int i = 0; i < 200 && !waiting; ++i)
    waiting = older_admin.value(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type"
                " = 'Lock' AND application_name = '"
                + cfg.application_name + "'")
              != "0";
  REQUIRE(waiting);
  CHECK_FALSE(younger_done);
  // The feed shows nothing beyond position 1 while the older one is open.
  auto page = store->read_all({});
  REQUIRE(page);
  CHECK(page->events.size() == 1);
  CHECK(page->next_position == 1);
  // The older transaction takes a higher position too, then commits.
  insert(older_id_2, 3, 2);
  exec_on(older, "UPDATE es_position SET position = 3 WHERE id = 1");
  exec_on(older, "COMMIT");
  t.join();
  PQfinish(older);
  REQUIRE(younger_result);
  CHECK(younger_result->first_position == 4);
  // A reader continuing from position 1 gets 2, 3, 4 in order, once each.
  read_all_options opts;
  opts.after_position = 1;
  auto rest = store->read_all(opts);
  REQUIRE(rest);
  REQUIRE(rest->events.size() == 3);
  CHECK(rest->events[0].event_id == older_id_1);
  CHECK(rest->events[1].event_id == older_id_2);
  CHECK(rest->events[2].event_id == younger.front().event_id);
}

TEST_CASE("overlapping feed: a younger append commits while an older one "
          "holds lower positions, and the feed skips nothing",
          "[postgres][concurrency]") {
  postgres_fixture fx;
  auto [store, cfg] = fx.open_feed(postgres_feed::overlapping);
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::no_stream(), make_batch(s, 1)));
  PGconn* older = PQconnectdb(cfg.dsn.c_str());
  require_pg_server(older);
  auto older_stream = uuid::random();
  auto older_ids = std::vector<uuid>{uuid::random(), uuid::random()};
  auto insert = [&](const std::string& base, size_t k) {
    exec_on(older, "INSERT INTO events (global_position, event_id, event_type,"
                   " event_version, aggregate_type, aggregate_id,"
                   " aggregate_version, occurred_at, payload) VALUES ("
                     + base + " + " + std::to_string(k + 1) + ", '"
                     + older_ids[k].to_string()
                     + "', 'ItemAdded', 1, 'Order', '"
                     + older_stream.to_string() + "', " + std::to_string(k + 1)
                     + ", now(), '{}')");
  };
  // The older transaction reserves positions 2 and 3 and writes one row.
  exec_on(older, "BEGIN");
  auto base = exec_on(older, "SELECT es_reserve(2)");
  CHECK(base == "1");
  insert(base, 0);
  // A younger append does not wait for it: it commits at position 4.
  auto younger = make_batch(s, 1);
  auto younger_result = store->append(s, expected_version::exact(1), younger);
  REQUIRE(younger_result);
  CHECK(younger_result->first_position == 4);
  // The feed ends at 1 while the older transaction runs: a reader that
  // went on to 4 would never see 2 and 3.
  auto page = store->read_all({});
  REQUIRE(page);
  CHECK(page->events.size() == 1);
  CHECK(page->next_position == 1);
  CHECK(page->end_of_feed);
  CHECK(*store->head_position() == 1);
  insert(base, 1);
  exec_on(older, "COMMIT");
  PQfinish(older);
  read_all_options opts;
  opts.after_position = 1;
  auto rest = store->read_all(opts);
  REQUIRE(rest);
  REQUIRE(rest->events.size() == 3);
  CHECK(rest->events[0].event_id == older_ids[0]);
  CHECK(rest->events[1].event_id == older_ids[1]);
  CHECK(rest->events[2].event_id == younger.front().event_id);
  CHECK(rest->next_position == 4);
  CHECK(*store->head_position() == 4);
}

TEST_CASE("overlapping feed: other transactions of the server do not hold "
          "back the end of the feed, and a rolled-back append leaves a hole",
          "[postgres][concurrency]") {
  postgres_fixture fx;
  auto [store, cfg] = fx.open_feed(postgres_feed::overlapping);
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::no_stream(), make_batch(s, 1)));
  // A transaction of somebody else's, in another schema, with an id.
  PGconn* other = PQconnectdb(pg_test_dsn().c_str());
  require_pg_server(other);
  exec_on(other, "BEGIN");
  exec_on(other, "SELECT pg_current_xact_id()");
  auto more = make_batch(s, 2);
  auto appended = store->append(s, expected_version::exact(1), more);
  REQUIRE(appended);
  CHECK(appended->first_position == 2);
  // Older than the append, yet no appender: the feed shows the append.
  auto page = store->read_all({});
  REQUIRE(page);
  REQUIRE(page->events.size() == 3);
  CHECK(page->events[2].global_position == 3);
  CHECK(*store->head_position() == 3);
  exec_on(other, "ROLLBACK");
  PQfinish(other);
  // A rolled-back append: its positions are never used again.
  PGconn* doomed = PQconnectdb(cfg.dsn.c_str());
  require_pg_server(doomed);
  auto ids = rolled_back_append(doomed, postgres_feed::overlapping);
  PQfinish(doomed);
  auto after = make_batch(s, 1);
  auto last = store->append(s, expected_version::exact(3), after);
  REQUIRE(last);
  CHECK(last->first_position == 6);
  read_all_options opts;
  opts.after_position = 3;
  auto tail = store->read_all(opts);
  REQUIRE(tail);
  REQUIRE(tail->events.size() == 1);
  CHECK(tail->events[0].event_id == after.front().event_id);
  CHECK_FALSE(*store->event_exists(ids[0]));
}

TEST_CASE("a database has one feed: stores of the other feed are refused "
          "until it is switched, and switching carries positions over",
          "[postgres][concurrency]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.feed = postgres_feed::serialized;
  auto serialized = make_postgres_event_store(cfg);
  REQUIRE(serialized);
  auto s = new_stream();
  REQUIRE(
    (*serialized)->append(s, expected_version::no_stream(), make_batch(s, 3)));
  auto overlapping_cfg = cfg;
  overlapping_cfg.feed = postgres_feed::overlapping;
  // A log with events is not switched by opening a store.
  auto refused = make_postgres_event_store(overlapping_cfg);
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::invalid_argument));
  CHECK(describe(refused.error()).find("postgres_switch_feed")
        != std::string::npos);
  CHECK(*postgres_feed_of(cfg) == postgres_feed::serialized);
  // Switched (writers stopped), the overlapping store goes on after 3.
  REQUIRE_FALSE(postgres_switch_feed(cfg, postgres_feed::overlapping));
  CHECK(*postgres_feed_of(cfg) == postgres_feed::overlapping);
  auto overlapping = make_postgres_event_store(overlapping_cfg);
  REQUIRE(overlapping);
  auto second = make_batch(s, 2);
  auto res = (*overlapping)->append(s, expected_version::exact(3), second);
  REQUIRE(res);
  CHECK(res->first_position == 4);
  CHECK(*(*overlapping)->head_position() == 5);
  // The serialized store opened before the switch refuses to write the
  // old way, and says nothing was written.
  auto stale
    = (*serialized)->append(s, expected_version::exact(5), make_batch(s, 1));
  REQUIRE_FALSE(stale);
  CHECK(describe(stale.error()).find("nothing was written")
        != std::string::npos);
  CHECK(*(*overlapping)->head_position() == 5);
  // And back: the serialized counter goes on after the sequence.
  REQUIRE_FALSE(postgres_switch_feed(cfg, postgres_feed::serialized));
  auto again = make_postgres_event_store(cfg);
  REQUIRE(again);
  auto third
    = (*again)->append(s, expected_version::exact(5), make_batch(s, 1));
  REQUIRE(third);
  CHECK(third->first_position == 6);
  auto all = (*again)->read_all({});
  REQUIRE(all);
  REQUIRE(all->events.size() == 6);
  for (size_t i = 0; i < all->events.size(); ++i)
    CHECK(all->events[i].global_position == static_cast<int64_t>(i) + 1);
}
