// The operations endpoints: Prometheus text, health verdicts, and the HTTP
// server fetched during a run, on SQLite and on PostgreSQL (through a proxy
// that plays a database going away and coming back).
#include "es/ops/endpoints.hpp"
#include "es/ops/metrics.hpp"
#include "es/postgres/postgres.hpp"
#include "es/projections/coordinator.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>

#include "pg_fixture.hpp"
#include "pg_proxy.hpp"
#include "read_model_helpers.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <httplib.h>
#include <sqlite3.h>

#include <cmath>
#include <cstring>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

/// Parses Prometheus text format 0.0.4 strictly enough to catch a broken
/// page: every line a HELP, a TYPE (before its samples) or a sample with a
/// number. Returns sample (name with labels) -> value.
std::map<std::string, double> parse_prometheus(const std::string& text) {
  static const std::regex help{R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)"};
  static const std::regex type{
    R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))"};
  static const std::regex sample{
    R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+))"};
  std::map<std::string, double> result;
  std::map<std::string, std::string> types;
  std::istringstream in{text};
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    if (std::regex_match(line, m, help))
      continue;
    if (std::regex_match(line, m, type)) {
      CHECK(types.emplace(m[1].str(), m[2].str()).second);
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample));
    auto name = m[1].str();
    auto family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (types.count(family) == 0 && family.size() > std::strlen(suffix)
          && family.compare(family.size() - std::strlen(suffix),
                            std::string::npos, suffix)
               == 0)
        family.resize(family.size() - std::strlen(suffix));
    CHECK(types.count(family) == 1);
    auto value = m[m.size() - 1].str();
    double x = value == "+Inf" ? INFINITY : std::stod(value);
    CHECK(result.emplace(line.substr(0, line.rfind(' ')), x).second);
  }
  return result;
}

double sample(const std::map<std::string, double>& page,
              const std::string& key) {
  auto i = page.find(key);
  if (i == page.end())
    FAIL("no sample " << key);
  return i->second;
}

/// Fetches `path` until `pred` holds for its status, up to ten seconds.
httplib::Result fetch_until(httplib::Client& client, const std::string& path,
                            const std::function<bool(int)>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto res = client.Get(path.c_str());
    if ((res && pred(res->status))
        || std::chrono::steady_clock::now() > deadline)
      return res;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

} // namespace

TEST_CASE("a metrics page is Prometheus text", "[ops][metrics]") {
  ops::metrics_page page;
  page.counter("es_x_total", "Things.", 3, {{"a", "1"}});
  page.gauge("es_y", "A level.", 0.5);
  page.gauge("es_w", "A fine level.", 0.00025);
  page.counter("es_x_total", "Things.", 4,
               {{"a", "quote \" slash \\ newline \n end"}});
  page.histogram("es_z_seconds", "Latency.", {{0.1, 2}, {1, 3}}, 4, 2.5,
                 {{"s", "m"}});
  CHECK(page.text()
        == "# HELP es_x_total Things.\n"
           "# TYPE es_x_total counter\n"
           "es_x_total{a=\"1\"} 3\n"
           "es_x_total{a=\"quote \\\" slash \\\\ newline \\n end\"} 4\n"
           "# HELP es_y A level.\n"
           "# TYPE es_y gauge\n"
           "es_y 0.5\n"
           "# HELP es_w A fine level.\n"
           "# TYPE es_w gauge\n"
           "es_w 0.00025\n"
           "# HELP es_z_seconds Latency.\n"
           "# TYPE es_z_seconds histogram\n"
           "es_z_seconds_bucket{s=\"m\",le=\"0.1\"} 2\n"
           "es_z_seconds_bucket{s=\"m\",le=\"1\"} 3\n"
           "es_z_seconds_bucket{s=\"m\",le=\"+Inf\"} 4\n"
           "es_z_seconds_sum{s=\"m\"} 2.5\n"
           "es_z_seconds_count{s=\"m\"} 4\n");
  auto parsed = parse_prometheus(page.text());
  CHECK(parsed.size() == 9);
}

TEST_CASE("a check that warns keeps 200, one that fails gives 503",
          "[ops][health]") {
  ops::endpoints ep;
  auto level = std::make_shared<std::atomic<int>>(0);
  ep.add_check(
    "custom",
    [level] {
      return ops::check_result{"", static_cast<health_level>(level->load()),
                               "level " + std::to_string(level->load())};
    },
    true);
  REQUIRE_FALSE(ep.serve("127.0.0.1", 0));
  REQUIRE(ep.port() != 0);
  httplib::Client client{"127.0.0.1", ep.port()};
  auto live = client.Get("/live");
  REQUIRE(live);
  CHECK(live->status == 200);
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body
        == R"({"status":"healthy","checks":[{"name":"custom","status":)"
           R"("healthy","detail":"level 0"}]})");
  level->store(static_cast<int>(health_level::warnings));
  health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body.find(R"("status":"warnings")") != std::string::npos);
  auto ready = client.Get("/ready");
  REQUIRE(ready);
  CHECK(ready->status == 200);
  level->store(static_cast<int>(health_level::errors));
  health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 503);
  ready = client.Get("/ready");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  auto missing = client.Get("/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  ep.stop();
  CHECK(ep.port() == 0);
  CHECK_FALSE(client.Get("/live"));
}

TEST_CASE("bad listen addresses are refused with a clear error",
          "[ops][health]") {
  ops::endpoints ep;
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:x",
                          "127.0.0.1:70000", "127.0.0.1:80x"}) {
    INFO(bad);
    auto err = ep.serve(bad);
    REQUIRE(err);
    CHECK(has_code(err, store_errc::invalid_argument));
  }
  ops::endpoints first;
  REQUIRE_FALSE(first.serve("127.0.0.1", 0));
  auto taken = ep.serve("127.0.0.1", first.port());
  REQUIRE(taken);
  CHECK(describe(taken).find("cannot serve HTTP on 127.0.0.1:")
        != std::string::npos);
}

TEST_CASE("the endpoints follow a SQLite store and its projections",
          "[ops][sqlite]") {
  temp_dir dir;
  sqlite_config sc;
  sc.path = dir.file("events.db");
  auto store = make_sqlite_event_store(sc);
  REQUIRE(store);
  fill(**store, 10, 3);
  auto db = make_sqlite_read_model_db(dir.file("read.db"));
  REQUIRE(db);
  auto model = std::make_shared<counting_read_model>(*db);
  threaded_config cfg;
  caf::actor_system sys{cfg};
  projection_coordinator coord{sys};
  REQUIRE_FALSE(coord.add(model, base_config(*store)));
  ops::endpoints ep;
  ep.watch_store("main", *store);
  ep.watch_projections(coord);
  ep.watch_dead_letters("read", (*db)->dead_letters());
  REQUIRE_FALSE(ep.serve("127.0.0.1:0"));
  httplib::Client client{"127.0.0.1", ep.port()};
  REQUIRE_FALSE(coord.wait_until_caught_up("counts", std::chrono::seconds(30)));
  auto ready = fetch_until(client, "/ready", [](int s) {
    return s == 200;
  });
  REQUIRE(ready);
  CHECK(ready->status == 200);
  CHECK(ready->body.find(R"("name":"store main","status":"healthy")")
        != std::string::npos);
  auto first = client.Get("/metrics");
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK(first->get_header_value("Content-Type") == "text/plain; version=0.0.4");
  auto before = parse_prometheus(first->body);
  CHECK(sample(before, R"(es_store_events_appended_total{store="main"})")
        == 30);
  CHECK(sample(before, R"(es_store_head_position{store="main"})") == 30);
  CHECK(sample(before, R"(es_store_up{store="main"})") == 1);
  CHECK(sample(before, R"(es_projection_position{projection="counts"})") == 30);
  CHECK(
    sample(before, R"(es_projection_state{projection="counts",state="live"})")
    == 1);
  CHECK(sample(before, R"(es_store_append_seconds_count{store="main"})") == 10);
  CHECK(sample(before, R"(es_store_group_size_count{store="main"})") == 10);
  // The workload moves the figures.
  fill(**store, 5, 4);
  REQUIRE_FALSE(coord.wait_until_caught_up("counts", std::chrono::seconds(30)));
  auto second = client.Get("/metrics");
  REQUIRE(second);
  auto after = parse_prometheus(second->body);
  CHECK(sample(after, R"(es_store_events_appended_total{store="main"})") == 50);
  CHECK(sample(after, R"(es_projection_position{projection="counts"})") == 50);
  CHECK(
    sample(after,
           R"(es_projection_events_processed_total{projection="counts"})")
    > sample(before,
             R"(es_projection_events_processed_total{projection="counts"})"));
  CHECK(sample(after, R"(es_store_reads_total{store="main"})")
        > sample(before, R"(es_store_reads_total{store="main"})"));
  CHECK(sample(after, R"(es_dlq_unresolved{dlq="read"})") == 0);
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body.find(R"("name":"projection counts","status":"healthy")")
        != std::string::npos);
  // A damaged database: /ready and /health name the missing table.
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(sc.path.c_str(), &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "DROP TABLE snapshots", nullptr, nullptr, nullptr)
          == SQLITE_OK);
    sqlite3_close(raw);
  }
  ready = client.Get("/ready");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body.find("tables missing") != std::string::npos);
  coord.stop();
}

TEST_CASE("/ready and /health flip to 503 while PostgreSQL is unreachable "
          "and back",
          "[ops][postgres]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  REQUIRE(make_postgres_event_store(cfg)); // creates the schema
  auto server = pg_endpoint_of(pg_test_dsn());
  pg_proxy proxy{server.host, server.port};
  auto via = cfg;
  via.dsn = proxy.dsn(cfg.dsn);
  via.migrate = false;
  via.reconnect_backoff = std::chrono::milliseconds{10};
  via.max_reconnect_backoff = std::chrono::milliseconds{40};
  via.connect_timeout = std::chrono::seconds{2};
  auto store = make_postgres_event_store(via);
  REQUIRE(store);
  auto s = new_stream();
  REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 4)));
  ops::endpoints ep;
  ep.watch_store("pg", *store);
  REQUIRE_FALSE(ep.serve("127.0.0.1", 0));
  httplib::Client client{"127.0.0.1", ep.port()};
  client.set_read_timeout(std::chrono::seconds(20));
  auto ready = client.Get("/ready");
  REQUIRE(ready);
  CHECK(ready->status == 200);
  auto page = parse_prometheus(client.Get("/metrics")->body);
  CHECK(sample(page, R"(es_store_up{store="pg"})") == 1);
  CHECK(sample(page, R"(es_store_events_appended_total{store="pg"})") == 4);
  // The database goes away: every connection is cut, new ones refused.
  proxy.set_rule([](const pg_message&) {
    return pg_proxy_action::cut_before;
  });
  ready = fetch_until(client, "/ready", [](int s) {
    return s == 503;
  });
  REQUIRE(ready);
  CHECK(ready->status == 503);
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 503);
  CHECK(health->body.find(R"("name":"store pg","status":"errors")")
        != std::string::npos);
  page = parse_prometheus(client.Get("/metrics")->body);
  CHECK(sample(page, R"(es_store_up{store="pg"})") == 0);
  // It comes back: so do the verdicts, and nothing was lost.
  proxy.clear_rule();
  ready = fetch_until(client, "/ready", [](int s) {
    return s == 200;
  });
  REQUIRE(ready);
  CHECK(ready->status == 200);
  CHECK(fetch_until(client, "/health",
                    [](int s) {
                      return s == 200;
                    })
          ->status
        == 200);
  CHECK((*store)->stream_version(s).value() == 4);
}
