// The PostgreSQL append path under faults: groups the database refuses in
// part, connections cut at chosen protocol messages (through `pg_proxy`),
// commits whose reply is lost, heads remembered ahead of a damaged log, and
// sessions ended by the server.
#include "es/actors/blocking.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "pg_fixture.hpp"
#include "pg_proxy.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

template <class T>
T require(caf::expected<T> x) {
  if (!x)
    FAIL("unexpected error: " << describe(x.error()));
  return std::move(*x);
}

void require_code(const caf::error& err, store_errc code) {
  INFO("error: " << describe(err));
  REQUIRE(has_code(err, code));
}

template <class T>
void require_code(const caf::expected<T>& x, store_errc code) {
  REQUIRE_FALSE(x);
  require_code(x.error(), code);
}

/// Sends the same append again while it fails in a retryable way, as a
/// caller should (the pool refuses to reconnect during its backoff), for
/// at most ten seconds.
caf::expected<append_result>
append_retrying(event_store& store, const stream_id& s,
                expected_version expected, const event_batch& events) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  for (;;) {
    auto res = store.append(s, expected, events);
    if (res || !is_retryable(res.error())
        || std::chrono::steady_clock::now() > deadline)
      return res;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

/// Two stores on one fresh schema: one straight to the server, one through a
/// proxy that cuts connections where a test says.
template <class Base>
struct faulty : Base {
  pg_endpoint server = pg_endpoint_of(pg_test_dsn());
  // Declared before the stores, so it outlives their connections.
  pg_proxy proxy{server.host, server.port};
  postgres_config cfg;
  event_store_ptr direct;
  event_store_ptr proxied;

  faulty() {
    cfg = this->fresh_config();
    cfg.events_partitions = this->partitions;
    // Refused by the database only: a rule the library cannot know.
    auto opened = make_postgres_event_store(cfg);
    if (!opened)
      FAIL("cannot open the store: " << describe(opened.error())
                                     << " (start the server with "
                                        "`scripts/pg start`)");
    direct = *opened;
    this->admin.exec("ALTER TABLE " + schema()
                     + ".events ADD CONSTRAINT"
                       " no_poison CHECK (event_type <> 'Poison')");
    auto via = cfg;
    via.dsn = proxy.dsn(cfg.dsn);
    via.migrate = false;
    via.reconnect_backoff = std::chrono::milliseconds{10};
    via.max_reconnect_backoff = std::chrono::milliseconds{40};
    auto p = make_postgres_event_store(via);
    if (!p)
      FAIL("cannot open the store through the proxy: " << describe(p.error()));
    proxied = *p;
  }

  std::string schema() const {
    return this->schemas.back();
  }

  /// Rows of events with this id, read by SQL.
  int copies_of(const uuid& id) {
    return std::stoi(this->admin.value("SELECT count(*) FROM " + schema()
                                       + ".events WHERE event_id = '"
                                       + id.to_string() + "'"));
  }
};

using plain = faulty<postgres_fixture>;
using partitioned = faulty<postgres_partitioned_fixture>;

event_data poison(const stream_id& s) {
  auto ev = make_test_event(s, 0, "Poison");
  ev.payload = R"({"harm":true})";
  return ev;
}

/// A rule that cuts before the first ReadyForQuery after a Bind of
/// `statement`: the server ran (and, at that sync, committed) the
/// statement's implicit transaction; the client never hears of it.
pg_proxy_rule cut_before_ready_after_bind(std::string statement) {
  auto armed = std::make_shared<std::atomic<uint64_t>>(0);
  auto fired = std::make_shared<std::atomic<bool>>(false);
  return [=](const pg_message& msg) {
    if (fired->load())
      return pg_proxy_action::forward;
    if (msg.from_client) {
      if (auto st = pg_bind_statement(msg); st && *st == statement)
        armed->store(msg.connection);
    } else if (msg.type == 'Z' && armed->load() == msg.connection) {
      fired->store(true);
      return pg_proxy_action::cut_before;
    }
    return pg_proxy_action::forward;
  };
}

/// A rule that cuts before forwarding the client's Bind of `statement`.
pg_proxy_rule cut_before_bind(std::string statement) {
  auto fired = std::make_shared<std::atomic<bool>>(false);
  return [=](const pg_message& msg) {
    if (!fired->load() && msg.from_client)
      if (auto st = pg_bind_statement(msg); st && *st == statement) {
        fired->store(true);
        return pg_proxy_action::cut_before;
      }
    return pg_proxy_action::forward;
  };
}

/// Runs `first`; once it has cut a connection, refuses the next `refusals`
/// new connections (cutting their startup message), then forwards all.
pg_proxy_rule then_refuse_connections(pg_proxy_rule first, int refusals) {
  auto state = std::make_shared<std::pair<std::mutex, int>>();
  auto cut = std::make_shared<std::atomic<bool>>(false);
  return [=](const pg_message& msg) {
    if (!cut->load()) {
      auto action = first(msg);
      if (action != pg_proxy_action::forward)
        cut->store(true);
      return action;
    }
    if (msg.from_client && msg.type == 0) {
      std::lock_guard guard{state->first};
      if (state->second < refusals) {
        ++state->second;
        return pg_proxy_action::cut_before;
      }
    }
    return pg_proxy_action::forward;
  };
}

/// The log holds `events` rows and the feed ends at the last of them. In
/// the serialized feed that is position `events`; in the overlapping feed
/// writes that failed after reserving positions leave holes.
template <class Fixture>
void check_log_holds(Fixture& fx, int events) {
  auto head = require(fx.direct->head_position());
  auto shape = fx.admin.value("SELECT count(*) || ' ' || COALESCE(max("
                              "global_position), 0) FROM "
                              + fx.schema() + ".events");
  CHECK(shape == std::to_string(events) + " " + std::to_string(head));
  if (pg_test_feed() == postgres_feed::serialized)
    CHECK(head == events);
}

} // namespace

TEMPLATE_TEST_CASE("a replay within a group shares the group's fate",
                   "[postgres][faults]", plain, partitioned) {
  TestType fx;
  auto s = new_stream();
  auto t = new_stream();
  auto x = make_batch(s, 1);
  SECTION("when the database refuses another request of the group") {
    std::vector<append_request> reqs;
    reqs.push_back({s, expected_version::any(), x});
    reqs.push_back({s, expected_version::any(), x});
    reqs.push_back({t, expected_version::any(), {poison(t)}});
    auto results = fx.direct->append_many(std::move(reqs));
    REQUIRE(results.size() == 3);
    auto first = require(results[0]);
    auto second = require(results[1]);
    CHECK_FALSE(first.deduplicated);
    CHECK(second.deduplicated);
    CHECK(second.last_position == first.last_position);
    require_code(results[2], store_errc::invalid_argument);
    CHECK_THAT(error_description(results[2].error()),
               Catch::Contains("no_poison"));
  }
  SECTION("when the connection breaks before the commit") {
    // The locked path (an id repeats in the group) is cut before its
    // COMMIT reaches the server: the session ends, nothing is committed,
    // and the store commits the group again.
    fx.proxy.set_rule(cut_before_bind("es_commit"));
    std::vector<append_request> reqs;
    reqs.push_back({s, expected_version::any(), x});
    reqs.push_back({s, expected_version::any(), x});
    auto results = fx.proxied->append_many(std::move(reqs));
    CHECK(fx.proxy.cuts() == 1);
    auto first = require(results[0]);
    auto second = require(results[1]);
    CHECK_FALSE(first.deduplicated);
    CHECK(second.deduplicated);
    CHECK(second.first_version == first.first_version);
  }
  SECTION("when the reply to the commit is lost") {
    // The COMMIT runs (the server executes it before the sync), the reply
    // never comes back: the store settles the old session and answers
    // from the log.
    fx.proxy.set_rule(pg_rules::cut_before_sync_after_bind("es_commit"));
    std::vector<append_request> reqs;
    reqs.push_back({s, expected_version::any(), x});
    reqs.push_back({s, expected_version::any(), x});
    auto results = fx.proxied->append_many(std::move(reqs));
    CHECK(fx.proxy.cuts() == 1);
    auto first = require(results[0]);
    auto second = require(results[1]);
    CHECK_FALSE(first.deduplicated);
    CHECK(second.first_version == first.first_version);
  }
  // Whatever was acknowledged is stored, once.
  CHECK(fx.copies_of(x[0].event_id) == 1);
  CHECK(require(fx.direct->stream_version(s)) == 1);
}

TEMPLATE_TEST_CASE("one request the database refuses fails alone",
                   "[postgres][faults]", plain, partitioned) {
  TestType fx;
  constexpr int threads = 16;
  constexpr int per_thread = 15;
  std::vector<std::vector<caf::expected<append_result>>> results(threads);
  std::vector<std::vector<uuid>> ids(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i)
    workers.emplace_back([&, i] {
      ++ready;
      while (ready.load() < threads)
        std::this_thread::yield();
      for (int k = 0; k < per_thread; ++k) {
        auto s = new_stream();
        event_batch batch = make_batch(s, 2, k);
        if (i == 7 && k == 7)
          batch[1] = poison(s);
        ids[i].push_back(batch[0].event_id);
        results[i].push_back(
          fx.direct->append(s, expected_version::no_stream(), batch));
      }
    });
  for (auto& w : workers)
    w.join();
  int ok = 0;
  for (int i = 0; i < threads; ++i)
    for (int k = 0; k < per_thread; ++k) {
      auto& res = results[i][k];
      if (i == 7 && k == 7) {
        require_code(res, store_errc::invalid_argument);
        CHECK(fx.copies_of(ids[i][k]) == 0);
        continue;
      }
      INFO("append " << i << "/" << k);
      if (!res)
        FAIL("valid append failed: " << describe(res.error()));
      ++ok;
    }
  CHECK(ok == threads * per_thread - 1);
  check_log_holds(fx, 2 * ok);
}

TEMPLATE_TEST_CASE("a commit whose reply is lost is settled from the log",
                   "[postgres][faults]", plain, partitioned) {
  TestType fx;
  auto s = new_stream();
  auto x = make_batch(s, 2);
  SECTION("the optimistic path, committed at the sync") {
    fx.proxy.set_rule(cut_before_ready_after_bind("es_write"));
    auto res = require(fx.proxied->append(s, expected_version::no_stream(), x));
    CHECK(fx.proxy.cuts() == 1);
    // This call wrote the events: not a replay.
    CHECK_FALSE(res.deduplicated);
    CHECK(res.last_version == 2);
    auto found = require(fx.direct->find_event(x[1].event_id));
    REQUIRE(found);
    CHECK(found->global_position == res.last_position);
  }
  SECTION("the optimistic path, cut before the sync") {
    fx.proxy.set_rule(pg_rules::cut_before_sync_after_bind("es_write"));
    auto res = require(fx.proxied->append(s, expected_version::no_stream(), x));
    CHECK(fx.proxy.cuts() == 1);
    CHECK_FALSE(res.deduplicated);
    CHECK(res.last_version == 2);
  }
  SECTION("without a way back to the server the outcome is unknown") {
    fx.proxy.set_rule(
      then_refuse_connections(cut_before_ready_after_bind("es_write"), 1000));
    auto res = fx.proxied->append(s, expected_version::no_stream(), x);
    require_code(res, store_errc::commit_outcome_unknown);
    CHECK(is_retryable(res.error()));
    // It was in fact committed; a retry with the same ids says so.
    fx.proxy.clear_rule();
    auto again = require(
      append_retrying(*fx.proxied, s, expected_version::no_stream(), x));
    CHECK(again.deduplicated);
    CHECK(again.last_version == 2);
  }
  SECTION("an unknown outcome of a commit that did not happen") {
    fx.proxy.set_rule(then_refuse_connections(
      pg_rules::cut_before_sync_after_bind("es_write"), 1000));
    require_code(fx.proxied->append(s, expected_version::no_stream(), x),
                 store_errc::commit_outcome_unknown);
    fx.proxy.clear_rule();
    auto again = require(
      append_retrying(*fx.proxied, s, expected_version::no_stream(), x));
    CHECK_FALSE(again.deduplicated);
    CHECK(again.last_version == 2);
  }
  for (const auto& ev : x)
    CHECK(fx.copies_of(ev.event_id) == 1);
  check_log_holds(fx, 2);
}

TEMPLATE_TEST_CASE("a one-event commit whose reply is lost is settled",
                   "[postgres][faults]", plain, partitioned) {
  // A group of one event goes out as its own statement (es_write1).
  TestType fx;
  auto s = new_stream();
  require(
    fx.proxied->append(s, expected_version::no_stream(), make_batch(s, 1)));
  auto x = make_batch(s, 1);
  SECTION("committed at the sync") {
    fx.proxy.set_rule(cut_before_ready_after_bind("es_write1"));
    auto res = require(fx.proxied->append(s, expected_version::exact(1), x));
    CHECK(fx.proxy.cuts() == 1);
    CHECK_FALSE(res.deduplicated);
    CHECK(res.last_version == 2);
    auto found = require(fx.direct->find_event(x[0].event_id));
    REQUIRE(found);
    CHECK(found->global_position == res.last_position);
    CHECK(found->aggregate_version == 2);
  }
  SECTION("cut before the sync") {
    fx.proxy.set_rule(pg_rules::cut_before_sync_after_bind("es_write1"));
    auto res = require(fx.proxied->append(s, expected_version::exact(1), x));
    CHECK(fx.proxy.cuts() == 1);
    CHECK_FALSE(res.deduplicated);
    CHECK(res.last_version == 2);
  }
  SECTION("without a way back to the server the outcome is unknown") {
    fx.proxy.set_rule(
      then_refuse_connections(cut_before_ready_after_bind("es_write1"), 1000));
    auto res = fx.proxied->append(s, expected_version::exact(1), x);
    require_code(res, store_errc::commit_outcome_unknown);
    fx.proxy.clear_rule();
    auto again
      = require(append_retrying(*fx.proxied, s, expected_version::exact(1), x));
    CHECK(again.deduplicated);
    CHECK(again.last_version == 2);
  }
  CHECK(fx.copies_of(x[0].event_id) == 1);
  check_log_holds(fx, 2);
}

TEST_CASE("the store actor retries an unknown outcome with the same ids",
          "[postgres][faults]") {
  plain fx;
  struct config : caf::actor_system_config {
    config() {
      add_actors_module(*this);
      set("scheduler.max-threads", 2);
    }
  } cfg;
  caf::actor_system sys{cfg};
  auto actor = spawn_store_actor(sys, fx.proxied);
  auto store = make_actor_event_store(sys, actor, std::chrono::seconds(30));
  auto s = new_stream();
  auto x = make_batch(s, 3);
  // The commit happens, its reply is lost, and the next two connections
  // are refused: the adapter answers commit_outcome_unknown, the store
  // actor sends the same events again and gets them back from the log.
  fx.proxy.set_rule(
    then_refuse_connections(cut_before_ready_after_bind("es_write"), 2));
  auto res = require(store->append(s, expected_version::no_stream(), x));
  CHECK(fx.proxy.cuts() >= 3);
  CHECK_FALSE(res.deduplicated);
  CHECK(res.first_version == 1);
  CHECK(res.last_version == 3);
  for (const auto& ev : x)
    CHECK(fx.copies_of(ev.event_id) == 1);
  caf::scoped_actor self{sys};
  self->send_exit(actor, caf::exit_reason::user_shutdown);
}

TEMPLATE_TEST_CASE("a lost connection after a stale head is decided again",
                   "[postgres][faults]", plain, partitioned) {
  TestType fx;
  auto s = new_stream();
  // The proxied store remembers head 1; the direct one moves it to 2.
  require(
    fx.proxied->append(s, expected_version::no_stream(), make_batch(s, 1)));
  require(fx.direct->append(s, expected_version::exact(1), make_batch(s, 1)));
  SECTION("a new event") {
    // The optimistic insert at version 2 hits the unique key, and the
    // connection breaks right after the error.
    fx.proxy.set_rule(pg_rules::cut_after_error("23505"));
    auto ev = make_batch(s, 1);
    auto res = require(fx.proxied->append(s, expected_version::any(), ev));
    // The overlapping feed's write statement finds the taken version
    // before it reserves positions, so no error ever comes back.
    CHECK(fx.proxy.cuts() == (pg_test_feed() == postgres_feed::serialized));
    CHECK(res.last_version == 3);
    CHECK(fx.copies_of(ev[0].event_id) == 1);
  }
  SECTION("the retry of a batch whose commit reply was lost") {
    // Brought up to date (version 3), the proxied store loses the reply to
    // the commit of versions 4 and 5.
    require(fx.proxied->append(s, expected_version::any(), make_batch(s, 1)));
    auto x = make_batch(s, 2);
    fx.proxy.set_rule(
      then_refuse_connections(cut_before_ready_after_bind("es_write"), 1000));
    require_code(fx.proxied->append(s, expected_version::any(), x),
                 store_errc::commit_outcome_unknown);
    // Another writer moves on; then the retry's optimistic insert hits the
    // stored event ids and its connection breaks after the error.
    fx.proxy.clear_rule();
    require(fx.direct->append(s, expected_version::any(), make_batch(s, 1)));
    fx.proxy.set_rule(pg_rules::cut_after_error("23505"));
    auto res
      = require(append_retrying(*fx.proxied, s, expected_version::any(), x));
    CHECK(res.deduplicated);
    CHECK(res.first_version == 4);
    CHECK(res.last_version == 5);
    for (const auto& ev : x)
      CHECK(fx.copies_of(ev.event_id) == 1);
  }
}

TEMPLATE_TEST_CASE("a remembered head ahead of the log cannot skip versions",
                   "[postgres][faults]", plain, partitioned) {
  TestType fx;
  auto s = new_stream();
  require(
    fx.direct->append(s, expected_version::no_stream(), make_batch(s, 3)));
  // Acknowledged data lost behind the store's back (a restore, a failover
  // to a standby that missed the last commit).
  fx.admin.exec("DELETE FROM " + fx.schema() + ".events WHERE aggregate_id = '"
                + s.aggregate_id.to_string() + "' AND aggregate_version = 3");
  auto res = fx.direct->append(s, expected_version::exact(3), make_batch(s, 1));
  require_code(res, store_errc::wrong_expected_version);
  auto conflict = get_version_conflict(res.error());
  REQUIRE(conflict);
  CHECK(conflict->actual == 2);
  // `any` goes on from the real head.
  auto next
    = require(fx.direct->append(s, expected_version::any(), make_batch(s, 1)));
  CHECK(next.first_version == 3);
  std::vector<int64_t> versions;
  auto err = for_each_in_stream(*fx.direct, s, {}, [&](recorded_event& ev) {
    versions.push_back(ev.aggregate_version);
    return caf::error{};
  });
  REQUIRE_FALSE(err);
  CHECK(versions == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("notices of ended sessions go to the log, not to stderr",
          "[postgres][faults]") {
  plain fx;
  std::mutex mtx;
  std::vector<std::string> logged;
  set_log_sink([&](log_level, std::string_view text) {
    std::lock_guard guard{mtx};
    logged.emplace_back(text);
  });
  set_log_level(log_level::debug);
  // Capture what goes to file descriptor 2 meanwhile.
  char path[] = "/tmp/es-stderr-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  auto s = new_stream();
  require(
    fx.direct->append(s, expected_version::no_stream(), make_batch(s, 1)));
  fx.admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = '"
                + fx.schema() + "'");
  // The writer's idle session is gone: the next append notices, writes
  // nothing on it, and commits on a fresh one.
  auto res = fx.direct->append(s, expected_version::any(), make_batch(s, 1));
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  set_log_sink([](log_level level, std::string_view text) {
    std::cerr << "[eventsource " << to_string(level) << "] " << text << '\n';
  });
  set_log_level(log_level::warning);
  std::ifstream in{path};
  std::stringstream captured;
  captured << in.rdbuf();
  unlink(path);
  REQUIRE(res);
  CHECK(res->last_version == 2);
  CHECK_THAT(captured.str(), !Catch::Contains("terminating connection"));
}

TEST_CASE("a write the server cannot prepare fails the call as written "
          "nowhere, not as an unknown outcome",
          "[postgres][faults]") {
  plain fx;
  auto s = new_stream();
  // The write statement names es_write_marks: without the table the
  // server refuses to prepare it, inside the locked path's transaction too.
  auto marks = fx.schema() + ".es_write_marks";
  fx.admin.exec("ALTER TABLE " + marks + " RENAME TO es_write_marks_gone");
  auto batch = make_batch(s, 2);
  auto res = fx.direct->append(s, expected_version::no_stream(), batch);
  REQUIRE_FALSE(res);
  INFO(describe(res.error()));
  CHECK_FALSE(has_code(res.error(), store_errc::commit_outcome_unknown));
  CHECK(fx.copies_of(batch[0].event_id) == 0);
  fx.admin.exec("ALTER TABLE " + fx.schema()
                + ".es_write_marks_gone RENAME TO es_write_marks");
  auto again = fx.direct->append(s, expected_version::no_stream(), batch);
  REQUIRE(again);
  CHECK_FALSE(again->deduplicated);
  CHECK(fx.copies_of(batch[0].event_id) == 1);
}
