// A PostgreSQL store fixture: each store gets a fresh schema in the test
// database, dropped afterwards. The server comes from ES_TEST_PG_DSN or the
// one scripts/pg starts.
#pragma once

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace es::test {

inline std::string pg_test_dsn() {
  if (const char* dsn = std::getenv("ES_TEST_PG_DSN"); dsn && *dsn)
    return dsn;
  return "host=127.0.0.1 port=55432 user=postgres dbname=es_test";
}

/// The feed fresh stores use: ES_TEST_PG_FEED=overlapping selects the
/// overlapping feed (ctest runs the PostgreSQL suites once per feed).
inline postgres_feed pg_test_feed() {
  const char* feed = std::getenv("ES_TEST_PG_FEED");
  if (feed == nullptr || *feed == '\0' || std::string{feed} == "serialized")
    return postgres_feed::serialized;
  if (std::string{feed} == "overlapping")
    return postgres_feed::overlapping;
  FAIL("ES_TEST_PG_FEED must be serialized or overlapping, not " << feed);
  return postgres_feed::serialized;
}

/// Fails the test with instructions when the server is not reachable.
inline void require_pg_server(PGconn* conn) {
  if (PQstatus(conn) != CONNECTION_OK)
    FAIL("cannot reach the PostgreSQL test server at '"
         << pg_test_dsn() << "': " << PQerrorMessage(conn)
         << "start it with `scripts/pg start` (or set ES_TEST_PG_DSN)");
}

/// An admin connection to the test database.
class pg_admin {
public:
  pg_admin() : conn_(PQconnectdb(pg_test_dsn().c_str())) {
    require_pg_server(conn_);
    exec("SET client_min_messages = warning");
  }
  ~pg_admin() {
    PQfinish(conn_);
  }
  pg_admin(const pg_admin&) = delete;
  pg_admin& operator=(const pg_admin&) = delete;

  /// Runs `sql`; FAILs on error.
  void exec(const std::string& sql) {
    std::string msg;
    if (!try_exec(sql, msg))
      FAIL("SQL failed: " << sql << ": " << msg);
  }

  /// Runs `sql`, reconnecting once if the server went away (for example
  /// after a restart). Returns false with the message on error.
  bool try_exec(const std::string& sql, std::string& msg) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (PQstatus(conn_) != CONNECTION_OK) {
        PQreset(conn_);
        PQclear(PQexec(conn_, "SET client_min_messages = warning"));
      }
      auto* res = PQexec(conn_, sql.c_str());
      auto status = PQresultStatus(res);
      msg = PQresultErrorMessage(res);
      PQclear(res);
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return true;
      if (PQstatus(conn_) == CONNECTION_OK)
        return false;
    }
    return false;
  }

  /// Runs `sql` and returns the first column of the first row as text.
  std::string value(const std::string& sql) {
    if (PQstatus(conn_) != CONNECTION_OK)
      PQreset(conn_);
    auto* res = PQexec(conn_, sql.c_str());
    std::string result;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
      result = PQgetvalue(res, 0, 0);
    std::string msg = PQresultErrorMessage(res);
    auto status = PQresultStatus(res);
    PQclear(res);
    if (status != PGRES_TUPLES_OK)
      FAIL("SQL failed: " << sql << ": " << msg);
    return result;
  }

  PGconn* handle() {
    return conn_;
  }

private:
  PGconn* conn_;
};

/// Returns a DSN whose search_path is `schema`.
inline std::string pg_dsn_for(const std::string& schema) {
  return pg_test_dsn() + " options='-c search_path=" + schema + "'";
}

struct postgres_fixture {
  static constexpr const char* name = "postgres";

  pg_admin admin;
  std::vector<std::string> schemas;

  ~postgres_fixture() {
    // No FAIL in a destructor: a schema left behind is only clutter.
    std::string msg;
    for (const auto& s : schemas)
      admin.try_exec("DROP SCHEMA IF EXISTS " + s + " CASCADE", msg);
  }

  /// Creates a fresh schema and returns a config for it.
  postgres_config fresh_config() {
    auto schema = "es_t_" + uuid::random().to_string().substr(0, 8);
    admin.exec("CREATE SCHEMA " + schema);
    schemas.push_back(schema);
    postgres_config cfg;
    cfg.dsn = pg_dsn_for(schema);
    // Tests that look for the store's sessions (to kill them or to see them
    // wait) find only their own: other test binaries run at the same time.
    cfg.application_name = schema;
    cfg.feed = pg_test_feed();
    return cfg;
  }

  /// Partitions of the events table (0: plain).
  int partitions = 0;
  /// Positions per range partition (0: not range-partitioned), and how
  /// many ranges to prepare when the store opens.
  int64_t range_size = 0;
  int ranges_ahead = 0;

  /// A store on a fresh schema and the config it was opened with.
  struct opened_store {
    event_store_ptr store;
    postgres_config cfg;
  };

  /// Opens a store on a fresh schema with `feed`, whatever
  /// ES_TEST_PG_FEED says.
  opened_store open_feed(postgres_feed feed) {
    auto cfg = fresh_config();
    cfg.feed = feed;
    auto store = make_postgres_event_store(cfg);
    if (!store)
      FAIL("cannot open the PostgreSQL store: " << describe(store.error()));
    return {*store, cfg};
  }

  event_store_ptr open(std::shared_ptr<const event_registry> registry = {},
                       store_limits limits = {}) {
    auto cfg = fresh_config();
    cfg.events_partitions = partitions;
    cfg.events_range_size = range_size;
    cfg.registry = std::move(registry);
    cfg.limits = limits;
    auto store = make_postgres_event_store(cfg);
    if (!store)
      FAIL("cannot open the PostgreSQL store: " << describe(store.error())
                                                << " (start the server with "
                                                   "`scripts/pg start`)");
    if (range_size > 0) {
      auto ranges = postgres_prepare_event_ranges(cfg, ranges_ahead);
      if (!ranges)
        FAIL("cannot prepare the event ranges: " << describe(ranges.error()));
    }
    return *store;
  }
};

/// The same store over an events table range-partitioned by position:
/// small ranges, a few prepared ahead and the rest in the default
/// partition, so the suite's reads cross partitions of both kinds.
struct postgres_range_fixture : postgres_fixture {
  static constexpr const char* name = "postgres_range";

  postgres_range_fixture() {
    range_size = 16;
    ranges_ahead = 3;
  }
};

/// The same store over an events table hash-partitioned four ways.
struct postgres_partitioned_fixture : postgres_fixture {
  static constexpr const char* name = "postgres_partitioned";

  postgres_partitioned_fixture() {
    partitions = 4;
  }
};

} // namespace es::test
