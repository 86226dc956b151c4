// Row-level security by tenant (store/sql/postgres_tenant_rls.sql) with the
// real application role on the real server: raw SQL of one tenant's session
// sees and writes nothing of another's, and the scoped store works end to
// end on top of it. The random tenant model of tests/store/tenant_tests.cpp
// runs here too: over the plain PostgreSQL store, and with each tenant's
// handle on its own role session under the policies.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/outbox.hpp"
#include "es/store/tenant_scope.hpp"

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

using namespace es;
using namespace es::test;

namespace {

/// Runs a psql script on the test server as the owner, with the role and
/// schema variables the shipped scripts take.
void run_script(const char* script, const std::string& role,
                const std::string& schema) {
  std::string cmd = "psql -q -v ON_ERROR_STOP=1 -v role=" + role + " -v schema="
                    + schema + " -f " + script + " \"" + pg_test_dsn() + "\"";
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

/// The application role of the fixture's last schema, made by the shipped
/// script, with the tenant policies on top; dropped with the schema.
struct tenant_role {
  pg_admin& admin;
  std::string name = "es_app_" + uuid::random().to_string().substr(0, 8);
  std::string schema;

  explicit tenant_role(postgres_fixture& fx)
    : admin(fx.admin), schema(fx.schemas.back()) {
    run_script(ES_ROLE_SCRIPT, name, schema);
    run_script(ES_RLS_SCRIPT, name, schema);
  }

  ~tenant_role() {
    std::string msg;
    admin.try_exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE", msg);
    admin.try_exec("DROP ROLE IF EXISTS " + name, msg);
  }

  /// `cfg` connecting as this role for `tenant` (none: no session tenant),
  /// without migrating.
  postgres_config config(postgres_config cfg,
                         std::optional<uuid> tenant) const {
    cfg.dsn += " user=" + name;
    cfg.migrate = false;
    cfg.session_tenant = tenant;
    return cfg;
  }
};

/// A raw libpq session of the role, with `tenant` set or not.
class raw_session {
public:
  raw_session(const postgres_config& cfg, std::optional<uuid> tenant)
    : conn_(PQconnectdb(cfg.dsn.c_str())) {
    require_pg_server(conn_);
    if (tenant)
      REQUIRE(state_of("SELECT set_config('es.tenant_id', '"
                       + tenant->to_string() + "', false)")
              == "");
  }
  ~raw_session() {
    PQfinish(conn_);
  }
  raw_session(const raw_session&) = delete;
  raw_session& operator=(const raw_session&) = delete;

  /// Runs `sql`; returns its SQLSTATE ("" on success).
  std::string state_of(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    std::string result = state != nullptr ? state : "";
    PQclear(r);
    return result;
  }

  /// Runs a query and returns the first column of its first row.
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    std::string msg = PQresultErrorMessage(r);
    std::string result;
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok && PQntuples(r) > 0)
      result = PQgetvalue(r, 0, 0);
    PQclear(r);
    if (!ok)
      FAIL("SQL failed: " << sql << ": " << msg);
    return result;
  }

private:
  PGconn* conn_;
};

/// An INSERT of one event row of `tenant` (NULL when none).
std::string insert_row(std::optional<uuid> tenant, int64_t position) {
  return "INSERT INTO events (global_position, event_id, event_type,"
         " event_version, aggregate_type, aggregate_id, aggregate_version,"
         " tenant_id, occurred_at, payload) VALUES ("
         + std::to_string(position) + ", '" + uuid::random().to_string()
         + "', 'ItemAdded', 1, 'Order', '" + uuid::random().to_string()
         + "', 1, "
         + (tenant ? "'" + tenant->to_string() + "'" : std::string{"NULL"})
         + ", now(), '{}')";
}

event_store_ptr open_store(const postgres_config& cfg) {
  auto store = make_postgres_event_store(cfg);
  if (!store)
    FAIL("cannot open the PostgreSQL store: " << describe(store.error()));
  return *store;
}

void check_policies(int partitions) {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.events_partitions = partitions;
  cfg.outbox = true;
  auto acme = uuid::random();
  auto globex = uuid::random();
  // The owner writes rows of globex and of no tenant; the policies do not
  // apply to it.
  auto owner = open_store(cfg);
  stream_id theirs{"Order", uuid::random()};
  stream_id nobodys{"Order", uuid::random()};
  auto their_batch = make_batch(theirs, 3);
  for (auto& ev : their_batch)
    ev.tenant_id = globex;
  REQUIRE(owner->append(theirs, expected_version::no_stream(), their_batch));
  REQUIRE(owner->append(nobodys, expected_version::no_stream(),
                        make_batch(nobodys, 2)));
  tenant_role role{fx};
  auto schema = role.schema;
  // [rls-store]
  auto app_cfg = role.config(cfg, acme); // session_tenant = acme
  auto app = es::make_postgres_event_store(app_cfg);
  REQUIRE(app);
  auto acme_store = es::for_tenant(*app, acme);
  // [/rls-store]
  // The scoped store works end to end under the policies.
  stream_id mine{"Order", uuid::random()};
  auto written = acme_store->append(mine, expected_version::no_stream(),
                                    make_batch(mine, 4));
  INFO(describe(written ? caf::error{} : written.error()));
  REQUIRE(written);
  REQUIRE(acme_store->append(mine, expected_version::exact(4),
                             make_batch(mine, 1, 10)));
  auto page = acme_store->read_stream(mine, {});
  REQUIRE(page);
  CHECK(page->events.size() == 5);
  auto feed = acme_store->read_all({});
  REQUIRE(feed);
  CHECK(feed->events.size() == 5);
  for (const auto& ev : feed->events)
    CHECK(ev.tenant_id == acme);
  // Even the unscoped store of the session sees its tenant's rows only.
  auto all = (*app)->read_all({});
  REQUIRE(all);
  CHECK(all->events.size() == 5);
  CHECK(*(*app)->stream_version(theirs) == 0);
  CHECK_FALSE((*app)->find_event(their_batch[0].event_id)->has_value());
  CHECK(*acme_store->stream_version(theirs) == 0);
  // Another tenant's stream cannot be written: the session cannot see it,
  // and the database keeps its versions unique; the store answers the
  // unique key it could not see coming as the tenant mismatch it is.
  auto head = owner->head_position();
  auto refused = acme_store->append(theirs, expected_version::any(),
                                    make_batch(theirs, 1));
  INFO("append to another tenant's stream: "
       << (refused ? std::string{"ok"} : describe(refused.error())));
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::tenant_mismatch));
  CHECK(*owner->head_position() == *head);
  // Nor can another tenant's event id be taken.
  auto stolen = make_batch(mine, 1);
  stolen[0].event_id = their_batch[0].event_id;
  auto dup = acme_store->append(mine, expected_version::any(), stolen);
  INFO("append with another tenant's event id: "
       << (dup ? std::string{"ok"} : describe(dup.error())));
  REQUIRE_FALSE(dup);
  CHECK(has_code(dup.error(), store_errc::duplicate_event_id));
  CHECK(*owner->head_position() == *head);
  // Raw SQL of the role with acme's session.
  raw_session as_acme{app_cfg, acme};
  CHECK(as_acme.value("SELECT count(*) FROM events WHERE tenant_id = '"
                      + globex.to_string() + "'")
        == "0");
  CHECK(as_acme.value("SELECT count(*) FROM events WHERE tenant_id IS NULL")
        == "0");
  CHECK(as_acme.value("SELECT count(*) FROM events") == "5");
  CHECK(as_acme.state_of(insert_row(globex, 1000)) == "42501");
  CHECK(as_acme.state_of(insert_row(std::nullopt, 1001)) == "42501");
  CHECK(as_acme.value("SELECT count(*) FROM event_outbox") == "5");
  if (partitions > 0)
    CHECK(as_acme.value("SELECT count(*) FROM event_ids") == "5");
  // The owner still sees everything.
  CHECK(fx.admin.value("SELECT count(*) FROM " + schema + ".events") == "10");
  // Without a session tenant the role sees no row and writes none.
  raw_session unset{app_cfg, std::nullopt};
  CHECK(unset.value("SELECT count(*) FROM events") == "0");
  CHECK(unset.value("SELECT count(*) FROM event_outbox") == "0");
  CHECK(unset.state_of(insert_row(std::nullopt, 1002)) == "42501");
  CHECK(unset.state_of(insert_row(acme, 1003)) == "42501");
  auto bare = open_store(role.config(cfg, std::nullopt));
  CHECK(bare->read_all({})->events.empty());
  auto orphan
    = bare->append(nobodys, expected_version::any(), make_batch(nobodys, 1));
  CHECK_FALSE(orphan);
  CHECK(*owner->head_position() == *head);
  // The outbox of acme's session claims acme's rows only.
  auto outbox = make_postgres_outbox(app_cfg);
  REQUIRE(outbox);
  auto claim = (*outbox)->claim(100);
  REQUIRE(claim);
  CHECK((*claim)->entries().size() == 5);
  for (const auto& e : (*claim)->entries())
    CHECK(e.tenant_id == acme);
  claim->reset();
  // Snapshots: of the session's streams only.
  auto owner_snapshots = make_postgres_snapshot_store(cfg);
  REQUIRE(owner_snapshots);
  REQUIRE((*owner_snapshots)->save({theirs, 3, 1, "{}", now_utc()}));
  auto snapshots = make_postgres_snapshot_store(app_cfg);
  REQUIRE(snapshots);
  CHECK((*snapshots)->save({mine, 5, 1, R"({"n":5})", now_utc()}));
  CHECK((*snapshots)->load(mine)->has_value());
  CHECK_FALSE((*snapshots)->load(theirs)->has_value());
  auto overwrite = (*snapshots)->save({theirs, 4, 1, "{}", now_utc()});
  CHECK_FALSE(overwrite);
  CHECK((*(*owner_snapshots)->load(theirs))->version == 3);
  // Dead letters: of the session's events only.
  auto owner_letters = make_postgres_dead_letter_store(cfg);
  REQUIRE(owner_letters);
  auto their_event = owner->find_event(their_batch[0].event_id);
  REQUIRE(their_event);
  REQUIRE(*their_event);
  dead_letter d;
  d.projection = "orders";
  d.event_id = (*their_event)->event_id;
  d.global_position = (*their_event)->global_position;
  d.event_type = (*their_event)->event_type;
  d.event_data = encode_recorded_event(**their_event);
  d.error_message = "failed";
  d.first_failed_at = d.last_failed_at = now_utc();
  auto their_letter = (*owner_letters)->add(d);
  REQUIRE(their_letter);
  auto letters = make_postgres_dead_letter_store(app_cfg);
  REQUIRE(letters);
  CHECK_FALSE((*letters)->get(*their_letter)->has_value());
  CHECK((*letters)->list({})->empty());
  CHECK_FALSE((*letters)->add(d));
  auto own_event = page->events.front();
  d.event_id = own_event.event_id;
  d.event_data = encode_recorded_event(own_event);
  CHECK((*letters)->add(d));
  CHECK((*letters)->list({})->size() == 1);
  // A tenant's append in the same group as such a refusal still lands.
  auto last = owner->head_position();
  std::vector<append_request> group;
  group.push_back({theirs, expected_version::any(), make_batch(theirs, 1)});
  group.push_back({mine, expected_version::any(), make_batch(mine, 1)});
  auto results = acme_store->append_many(std::move(group));
  REQUIRE(results.size() == 2);
  CHECK_FALSE(results[0]);
  CHECK(results[1]);
  CHECK(*owner->head_position() == *last + 1);
}

} // namespace

TEST_CASE("row-level security confines the application role to its tenant",
          "[postgres][rls]") {
  SECTION("plain events table") {
    check_policies(0);
  }
  SECTION("partitioned events table") {
    check_policies(4);
  }
}

namespace es::test {

/// The store of a fresh schema as its owner, and scoped handles each on
/// a session of the application role with its tenant set, under the
/// policies.
struct postgres_rls_fixture : postgres_fixture {
  static constexpr const char* name = "postgres_rls";

  postgres_config owner_cfg;
  std::unique_ptr<tenant_role> role;

  event_store_ptr open(std::shared_ptr<const event_registry> registry = {},
                       store_limits limits = {}) {
    owner_cfg = fresh_config();
    owner_cfg.registry = std::move(registry);
    owner_cfg.limits = limits;
    auto store = open_store(owner_cfg);
    role = std::make_unique<tenant_role>(*this);
    return store;
  }

  event_store_ptr scoped(const uuid& tenant) {
    return for_tenant(open_store(role->config(owner_cfg, tenant)), tenant);
  }
};

} // namespace es::test

// The random model, over the plain store and under the policies.
#define ES_TENANT_FIXTURES postgres_fixture, postgres_rls_fixture
#define ES_TENANT_RUNS 2
#define ES_TENANT_STEPS 200
#define ES_TENANT_NO_STATE_TESTS
#include "tenant_tests.cpp"
