// The outbox (claims, SKIP LOCKED, marks, cleanup) and the least-privilege
// application role.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/outbox.hpp"

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <cstdlib>
#include <set>

using namespace es;
using namespace es::test;

namespace {

/// A least-privilege role made by the shipped script for the fixture's last
/// schema (as the owner), dropped with the schema at the end.
struct app_role {
  pg_admin& admin;
  std::string name = "es_app_" + uuid::random().to_string().substr(0, 8);
  std::string schema;

  explicit app_role(postgres_fixture& fx)
    : admin(fx.admin), schema(fx.schemas.back()) {
    std::string cmd = "psql -q -v ON_ERROR_STOP=1 -v role=" + name
                      + " -v schema=" + schema + " -f " + ES_ROLE_SCRIPT + " \""
                      + pg_test_dsn() + "\"";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }

  ~app_role() {
    std::string msg;
    admin.try_exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE", msg);
    admin.try_exec("DROP ROLE IF EXISTS " + name, msg);
  }

  /// `cfg` connecting as this role, without migrating.
  postgres_config config(postgres_config cfg) const {
    cfg.dsn += " user=" + name;
    cfg.migrate = false;
    return cfg;
  }
};

} // namespace

TEST_CASE("outbox rows are written with appends and claimed once",
          "[postgres][outbox]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.outbox = true;
  auto store = make_postgres_event_store(cfg);
  REQUIRE(store);
  auto ob = make_postgres_outbox(cfg);
  REQUIRE(ob);
  auto s = new_stream();
  REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 6)));
  // A refused append writes no outbox row.
  REQUIRE_FALSE(
    (*store)->append(s, expected_version::no_stream(), make_batch(s, 1)));
  auto counts = (*ob)->counts();
  REQUIRE(counts);
  CHECK(counts->pending == 6);
  // Two relays at once get disjoint rows.
  auto a = (*ob)->claim(4);
  auto b = (*ob)->claim(4);
  REQUIRE(a);
  REQUIRE(b);
  CHECK((*a)->entries().size() == 4);
  CHECK((*b)->entries().size() == 2);
  std::set<int64_t> ids;
  for (auto* c : {&*a, &*b})
    for (const auto& e : (*c)->entries())
      CHECK(ids.insert(e.id).second);
  CHECK((*a)->entries().front().global_position == 1);
  CHECK((*a)->entries().front().aggregate_id == s.aggregate_id);
  // Relay a publishes three and fails one; relay b crashes (drops its
  // claim without committing).
  std::vector<int64_t> done;
  for (size_t i = 0; i < 3; ++i)
    done.push_back((*a)->entries()[i].id);
  REQUIRE_FALSE((*a)->mark_published(done));
  auto failed_id = (*a)->entries()[3].id;
  REQUIRE_FALSE((*a)->mark_failed(failed_id, "broker said no"));
  REQUIRE_FALSE((*a)->commit());
  b->reset();
  counts = (*ob)->counts();
  CHECK(counts->published == 3);
  CHECK(counts->failed == 1);
  CHECK(counts->pending == 2);
  // The failed row comes back until its retry limit.
  auto again = (*ob)->claim(10, 2);
  REQUIRE(again);
  CHECK((*again)->entries().size() == 3);
  bool saw_failed = false;
  for (const auto& e : (*again)->entries())
    if (e.id == failed_id) {
      saw_failed = true;
      CHECK(e.retry_count == 1);
      CHECK(e.last_error == "broker said no");
    }
  CHECK(saw_failed);
  REQUIRE_FALSE((*again)->mark_failed(failed_id, "still no"));
  std::vector<int64_t> rest;
  for (const auto& e : (*again)->entries())
    if (e.id != failed_id)
      rest.push_back(e.id);
  REQUIRE_FALSE((*again)->mark_published(rest));
  REQUIRE_FALSE((*again)->commit());
  auto last = (*ob)->claim(10, 2);
  REQUIRE(last);
  CHECK((*last)->entries().empty());
  // Cleanup removes published rows older than the age.
  CHECK(*(*ob)->cleanup(std::chrono::hours(1)) == 0);
  CHECK(*(*ob)->cleanup(std::chrono::seconds(0)) == 5);
  CHECK((*ob)->counts()->published == 0);
}

TEST_CASE("the application role can append but not change the log",
          "[postgres][role]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  REQUIRE(make_postgres_event_store(cfg));
  app_role role{fx};
  auto schema = role.schema;
  postgres_config app = role.config(cfg);
  auto store = make_postgres_event_store(app);
  REQUIRE(store);
  auto s = new_stream();
  auto res = (*store)->append(s, expected_version::any(), make_batch(s, 2));
  INFO((res ? std::string{"ok"} : describe(res.error())));
  REQUIRE(res);
  REQUIRE((*store)->read_stream(s, {}));
  // UPDATE and DELETE on events are refused.
  PGconn* conn = PQconnectdb(app.dsn.c_str());
  require_pg_server(conn);
  for (const char* sql :
       {"UPDATE events SET payload = '{}'", "DELETE FROM events"}) {
    PGresult* r = PQexec(conn, sql);
    std::string state = PQresultErrorField(r, PG_DIAG_SQLSTATE)
                          ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                          : "";
    PQclear(r);
    CHECK(state == "42501");
  }
  PQfinish(conn);
  // And migrating as the application is refused with a clear error.
  app.migrate = true;
  pg_admin admin;
  // Forget the newest migration so the application role has to apply it.
  admin.exec("DELETE FROM " + schema
             + ".schema_migrations WHERE version = "
               "(SELECT max(version) FROM "
             + schema + ".schema_migrations)");
  auto migrated = postgres_migrate(app);
  REQUIRE(migrated);
  INFO(describe(migrated));
  CHECK(has_code(migrated, store_errc::permission_denied));
}

TEST_CASE("on the partitioned variant every event has its id recorded",
          "[postgres][role]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.events_partitions = 4;
  REQUIRE(make_postgres_event_store(cfg));
  app_role role{fx};
  auto schema = role.schema;
  postgres_config app = role.config(cfg);
  auto store = make_postgres_event_store(app);
  REQUIRE(store);
  auto s = new_stream();
  auto batch = make_batch(s, 2);
  REQUIRE((*store)->append(s, expected_version::any(), batch));
  auto ids = fx.admin.value("SELECT count(*) FROM " + schema + ".event_ids");
  CHECK(ids == "2");
  PGconn* conn = PQconnectdb(app.dsn.c_str());
  require_pg_server(conn);
  auto state_of = [&](const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    std::string state = PQresultErrorField(r, PG_DIAG_SQLSTATE)
                          ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                          : "";
    PQclear(r);
    return state;
  };
  auto row
    = [&](const uuid& event_id, const uuid& aggregate_id, int64_t position) {
        return "(" + std::to_string(position) + ", '" + event_id.to_string()
               + "', 'ItemAdded', 1, 'Order', '" + aggregate_id.to_string()
               + "', 1, now(), '{}')";
      };
  constexpr const char* columns
    = " (global_position, event_id, event_type, event_version,"
      " aggregate_type, aggregate_id, aggregate_version, occurred_at,"
      " payload) VALUES ";
  // Neither the id table nor a partition can be written around the
  // trigger.
  CHECK(state_of("INSERT INTO event_ids VALUES ('" + uuid::random().to_string()
                 + "', 'Order', '" + uuid::random().to_string() + "', 1, 99)")
        == "42501");
  for (int p = 0; p < 4; ++p)
    CHECK(state_of("INSERT INTO events_p" + std::to_string(p) + columns
                   + row(uuid::random(), uuid::random(), 100 + p))
          == "42501");
  // A row written straight into events (a bug, or a hand-written tool) gets
  // its id recorded, and an id already stored in another partition is
  // refused.
  auto other = uuid::random();
  auto fresh = uuid::random();
  CHECK(state_of("INSERT INTO events" + std::string{columns}
                 + row(fresh, other, 200))
        == "");
  CHECK(fx.admin.value("SELECT aggregate_id::text FROM " + schema
                       + ".event_ids WHERE event_id = '" + fresh.to_string()
                       + "'")
        == other.to_string());
  CHECK(state_of("INSERT INTO events" + std::string{columns}
                 + row(batch[0].event_id, uuid::random(), 201))
        == "23505");
  PQfinish(conn);
}
