// esctl against real stores: the test writes a store through the library
// (made-up event types, a checkpoint, dead letters, outbox rows), runs the
// built esctl on it and checks its JSON field by field, a few tables to the
// character, its exit codes, and that its changes reach the store.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#ifdef ES_HAVE_POSTGRES
#  include "pg_fixture.hpp"
#endif

#include "esctl_process.hpp"
#include "temp_dir.hpp"
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace es::test {
namespace {

template <class T>
T take(caf::expected<T> x) {
  if (!x)
    FAIL("store call failed: " << describe(x.error()));
  return std::move(*x);
}

uuid id(const char* text) {
  return take(uuid::parse(text));
}

const uuid tenant_a = id("11111111-1111-4111-8111-111111111111");
const uuid tenant_b = id("22222222-2222-4222-8222-222222222222");
const stream_id cart_1{"Cart", id("aaaaaaaa-0000-4000-8000-000000000001")};
const stream_id cart_2{"Cart", id("aaaaaaaa-0000-4000-8000-000000000002")};
const stream_id invoice_3{"Invoice",
                          id("bbbbbbbb-0000-4000-8000-000000000003")};

/// 2026-01-02T03:04:05.000006Z plus `seconds`.
timestamp at(int seconds) {
  return timestamp{std::chrono::microseconds{1'767'323'045'000'006}}
         + std::chrono::seconds{seconds};
}

event_data make_event(const stream_id& s, const char* event_id,
                      std::string type, std::string payload,
                      std::optional<uuid> tenant, int second) {
  event_data ev;
  ev.event_id = id(event_id);
  ev.event_type = std::move(type);
  ev.aggregate_type = s.aggregate_type;
  ev.aggregate_id = s.aggregate_id;
  ev.tenant_id = tenant;
  ev.occurred_at = at(second);
  ev.payload = std::move(payload);
  return ev;
}

constexpr const char* invoice_event_id = "eeeeeeee-0000-4000-8000-000000000005";

/// The library's handles on one store, whatever the backend.
struct store_handles {
  event_store_ptr events;
  read_model_db_ptr db;
  outbox_ptr outbox;
};

/// Writes the store every test starts from: five events in three streams
/// and two tenants (positions 1 to 5), two checkpoints, two dead letters
/// (one resolved) and outbox rows (3 pending, 1 published, 1 failed).
/// Returns the id of the unresolved dead letter, then the resolved one.
std::pair<int64_t, int64_t> seed(store_handles& h) {
  auto& s = *h.events;
  take(s.append(
    cart_1, expected_version::no_stream(),
    {make_event(cart_1, "eeeeeeee-0000-4000-8000-000000000001", "CartOpened",
                R"({"owner":"ann"})", tenant_a, 0),
     make_event(cart_1, "eeeeeeee-0000-4000-8000-000000000002", "ItemAdded",
                R"({"sku":"X-1","qty":2})", tenant_a, 1),
     make_event(cart_1, "eeeeeeee-0000-4000-8000-000000000003", "ItemAdded",
                R"({"sku":"Y-9","qty":1})", tenant_a, 2)}));
  take(s.append(cart_2, expected_version::no_stream(),
                {make_event(cart_2, "eeeeeeee-0000-4000-8000-000000000004",
                            "CartOpened", R"({"owner":"bob"})", tenant_b, 3)}));
  auto invoice
    = make_event(invoice_3, invoice_event_id, "InvoiceIssued",
                 R"({"amount":12.5,"lines":[1,2]})", std::nullopt, 4);
  invoice.metadata = R"({"source":"test"})";
  take(s.append(invoice_3, expected_version::no_stream(), {invoice}));

  auto cps = h.db->checkpoints();
  checkpoint cp;
  cp.projection = "cart_view";
  cp.position = 3;
  cp.event_id = id("eeeeeeee-0000-4000-8000-000000000003");
  cp.event_type = "ItemAdded";
  cp.events_processed = 3;
  cp.updated_at = now_utc();
  take(cps->save(cp));
  cp.projection = "invoice_view";
  cp.position = 5;
  cp.events_processed = 1;
  take(cps->save(cp));

  auto failed_event
    = take(s.find_event(id("eeeeeeee-0000-4000-8000-000000000002")));
  REQUIRE(failed_event);
  dead_letter dl;
  dl.projection = "cart_view";
  dl.event_id = failed_event->event_id;
  dl.global_position = failed_event->global_position;
  dl.event_type = failed_event->event_type;
  dl.event_data = encode_recorded_event(*failed_event);
  dl.error_message = "boom: qty must be even";
  dl.first_failed_at = now_utc();
  dl.last_failed_at = dl.first_failed_at;
  auto dlq = h.db->dead_letters();
  auto unresolved = take(dlq->add(dl));
  dl.projection = "invoice_view";
  auto resolved = take(dlq->add(dl));
  REQUIRE(take(dlq->mark_resolved(resolved, "tester")));

  // Outbox rows: one published, one failed, the rest pending.
  auto claim = take(h.outbox->claim(2));
  REQUIRE(claim->entries().size() == 2);
  REQUIRE(!claim->mark_published({claim->entries()[0].id}));
  REQUIRE(!claim->mark_failed(claim->entries()[1].id, "broker down"));
  REQUIRE(!claim->commit());
  return {unresolved, resolved};
}

// -- backends -----------------------------------------------------------------

struct sqlite_backend {
  temp_dir dir;
  std::string path = dir.file("store.db");

  store_handles open() {
    sqlite_config cfg;
    cfg.path = path;
    cfg.synchronous = sqlite_sync::off;
    cfg.outbox = true;
    store_handles h;
    h.events = take(make_sqlite_event_store(cfg));
    h.db = take(make_sqlite_read_model_db(path));
    h.outbox = take(make_sqlite_outbox(path));
    return h;
  }

  std::string store_arg() const {
    return "--store=sqlite:" + path;
  }

  /// A place for a new store, not created yet.
  std::string fresh_store_arg() {
    return "--store=sqlite:" + dir.file("fresh.db");
  }

  /// Whether the fresh store holds any table (or exists at all).
  bool fresh_store_touched() {
    return std::filesystem::exists(dir.file("fresh.db"));
  }

  std::string unreachable_store_arg() {
    return "--store=sqlite:" + dir.file("missing/none.db");
  }

  static int library_version() {
    return sqlite_schema_version();
  }
};

#ifdef ES_HAVE_POSTGRES
struct postgres_backend {
  postgres_fixture fx;
  postgres_config cfg = fx.fresh_config();
  postgres_config fresh = fx.fresh_config();

  store_handles open() {
    cfg.outbox = true;
    store_handles h;
    h.events = take(make_postgres_event_store(cfg));
    h.db = take(make_postgres_read_model_db(cfg));
    h.outbox = take(make_postgres_outbox(cfg));
    return h;
  }

  std::string store_arg() const {
    return "--store=postgres:" + cfg.dsn;
  }

  std::string fresh_store_arg() {
    return "--store=postgres:" + fresh.dsn;
  }

  bool fresh_store_touched() {
    return fx.admin.value("SELECT count(*) FROM information_schema.tables"
                          " WHERE table_schema = '"
                          + fx.schemas.back() + "'")
           != "0";
  }

  std::string unreachable_store_arg() {
    return "--store=postgres:host=127.0.0.1 port=1 connect_timeout=2"
           " dbname=none";
  }

  static int library_version() {
    return postgres_schema_version();
  }
};
#  define ESCTL_BACKENDS sqlite_backend, postgres_backend
#else
#  define ESCTL_BACKENDS sqlite_backend
#endif

// -- helpers ------------------------------------------------------------------

/// Runs esctl with `--json` and returns the parsed document; REQUIREs exit
/// code 0 and well-formed JSON.
rapidjson::Document json_of(const std::vector<std::string>& args) {
  auto all = args;
  all.push_back("--json");
  auto r = run_esctl(all);
  INFO("esctl " << args.back() << " stderr: " << r.err);
  REQUIRE(r.code == 0);
  rapidjson::Document doc;
  doc.Parse(r.out.c_str());
  INFO("output: " << r.out);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

std::string str(const rapidjson::Value& v) {
  REQUIRE(v.IsString());
  return v.GetString();
}

/// The test's store, written through the library, and esctl's view of it.
template <class Backend>
struct esctl_fixture {
  Backend backend;
  store_handles h = backend.open();
  std::pair<int64_t, int64_t> dead_letters = seed(h);

  std::string store() const {
    return backend.store_arg();
  }

  rapidjson::Document json(std::vector<std::string> args) {
    args.insert(args.begin(), store());
    return json_of(args);
  }

  esctl_result run(std::vector<std::string> args) {
    args.insert(args.begin(), store());
    return run_esctl(args);
  }
};

} // namespace

// -- info and migrate ---------------------------------------------------------

TEMPLATE_TEST_CASE("esctl info reports counts and a healthy store",
                   "[esctl][info]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto doc = f.json({"info"});
  CHECK(doc["healthy"].GetBool());
  CHECK(doc["problem"].IsNull());
  CHECK(doc["checks"]["connect"].GetBool());
  CHECK(doc["checks"]["select_1"].GetBool());
  CHECK(doc["checks"]["tables"].GetBool());
  CHECK(doc["checks"]["schema_current"].GetBool());
  CHECK(doc["missing_tables"].Size() == 0);
  CHECK(doc["schema_version"].GetInt() == TestType::library_version());
  CHECK(doc["library_schema_version"].GetInt() == TestType::library_version());
  CHECK(doc["head_position"].GetInt64() == 5);
  CHECK(doc["event_count"].GetInt64() == 5);
  CHECK(doc["stream_count"].GetInt64() == 3);
  CHECK(doc["outbox_pending"].GetInt64() == 3);
  CHECK(doc["outbox_failed"].GetInt64() == 1);
  CHECK(doc["dlq_unresolved"].GetInt64() == 1);
}

TEMPLATE_TEST_CASE("esctl info exits 3 for a store it cannot reach",
                   "[esctl][info]", ESCTL_BACKENDS) {
  TestType backend;
  auto r = run_esctl({backend.unreachable_store_arg(), "info", "--json"});
  INFO(r.err);
  CHECK(r.code == 3);
  CHECK(r.err.find("esctl: the store is unhealthy") != std::string::npos);
  rapidjson::Document doc;
  doc.Parse(r.out.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK_FALSE(doc["healthy"].GetBool());
  CHECK_FALSE(doc["checks"]["connect"].GetBool());
  CHECK(doc["event_count"].IsNull());
}

TEMPLATE_TEST_CASE("esctl migrate --dry-run lists steps and creates nothing",
                   "[esctl][migrate]", ESCTL_BACKENDS) {
  TestType backend;
  const auto latest = TestType::library_version();
  auto doc = json_of({backend.fresh_store_arg(), "migrate", "--dry-run"});
  CHECK(doc["dry_run"].GetBool());
  CHECK(doc["schema_version"].GetInt() == 0);
  CHECK(doc["library_schema_version"].GetInt() == latest);
  REQUIRE(doc["pending"].Size() == static_cast<unsigned>(latest));
  for (int v = 1; v <= latest; ++v)
    CHECK(doc["pending"][v - 1].GetInt() == v);
  CHECK_FALSE(backend.fresh_store_touched());
  // Every other command refuses a store without the schema: exit 3, and
  // still nothing created.
  auto r = run_esctl({backend.fresh_store_arg(), "streams"});
  CHECK(r.code == 3);
  CHECK(r.err.find("esctl migrate") != std::string::npos);
  CHECK_FALSE(backend.fresh_store_touched());
  // The real thing applies every step; a second run has nothing to do.
  auto applied = json_of({backend.fresh_store_arg(), "migrate"});
  CHECK(applied["schema_version"].GetInt() == latest);
  CHECK(applied["applied"].Size() == static_cast<unsigned>(latest));
  CHECK(backend.fresh_store_touched());
  auto again = run_esctl({backend.fresh_store_arg(), "migrate"});
  CHECK(again.code == 0);
  CHECK(again.out
        == "schema is current (version " + std::to_string(latest)
             + "): nothing to do\n");
  auto info = json_of({backend.fresh_store_arg(), "info"});
  CHECK(info["healthy"].GetBool());
  CHECK(info["event_count"].GetInt64() == 0);
}

// -- streams and events -------------------------------------------------------

TEMPLATE_TEST_CASE("esctl streams lists streams with filters",
                   "[esctl][streams]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto doc = f.json({"streams"});
  REQUIRE(doc["count"].GetInt() == 3);
  const auto& s = doc["streams"];
  CHECK(str(s[0]["aggregate_type"]) == "Cart");
  CHECK(str(s[0]["aggregate_id"]) == cart_1.aggregate_id.to_string());
  CHECK(s[0]["version"].GetInt64() == 3);
  CHECK(str(s[0]["tenant_id"]) == tenant_a.to_string());
  CHECK(str(s[0]["last_occurred_at"]) == "2026-01-02T03:04:07.000006Z");
  CHECK(str(s[1]["aggregate_id"]) == cart_2.aggregate_id.to_string());
  CHECK(str(s[2]["aggregate_type"]) == "Invoice");
  CHECK(s[2]["tenant_id"].IsNull());
  CHECK(f.json({"streams", "--type=Invoice"})["count"].GetInt() == 1);
  auto b = f.json({"streams", "--tenant=" + tenant_b.to_string()});
  REQUIRE(b["count"].GetInt() == 1);
  CHECK(str(b["streams"][0]["aggregate_id"])
        == cart_2.aggregate_id.to_string());
  CHECK(f.json({"streams", "--limit=2"})["count"].GetInt() == 2);
}

TEMPLATE_TEST_CASE("esctl streams prints an aligned table", "[esctl][streams]",
                   ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto r = f.run({"streams", "--type=Cart"});
  CHECK(r.code == 0);
  CHECK(r.out
        == "TYPE  ID                                    VERSION  TENANT      "
           "                          LAST EVENT AT\n"
           "Cart  aaaaaaaa-0000-4000-8000-000000000001        3  "
           "11111111-1111-4111-8111-111111111111  2026-01-02T03:04:07.000006Z\n"
           "Cart  aaaaaaaa-0000-4000-8000-000000000002        1  "
           "22222222-2222-4222-8222-222222222222  "
           "2026-01-02T03:04:08.000006Z\n");
}

TEMPLATE_TEST_CASE("esctl stream shows one stream's events", "[esctl][stream]",
                   ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto id = cart_1.aggregate_id.to_string();
  auto doc = f.json({"stream", "Cart", id});
  CHECK(doc["version"].GetInt64() == 3);
  const auto& evs = doc["events"];
  REQUIRE(evs.Size() == 3);
  for (unsigned i = 0; i < 3; ++i) {
    CHECK(evs[i]["aggregate_version"].GetInt64() == i + 1);
    CHECK(evs[i]["global_position"].GetInt64() == i + 1);
  }
  CHECK(str(evs[1]["event_type"]) == "ItemAdded");
  CHECK(str(evs[1]["payload"]["sku"]) == "X-1");
  CHECK(evs[1]["payload"]["qty"].GetInt() == 2);
  auto middle = f.json({"stream", "Cart", id, "--from=2", "--to=2"});
  REQUIRE(middle["events"].Size() == 1);
  CHECK(middle["events"][0]["aggregate_version"].GetInt64() == 2);
  auto table = f.run({"stream", "Cart", id, "--from=2"});
  CHECK(table.code == 0);
  CHECK(table.out
        == "stream Cart/aaaaaaaa-0000-4000-8000-000000000001, version 3\n"
           "VERSION  POSITION  EVENT TYPE    OCCURRED AT                  "
           "PAYLOAD\n"
           "      2         2  ItemAdded v1  2026-01-02T03:04:06.000006Z  "
           "{\"sku\":\"X-1\",\"qty\":2}\n"
           "      3         3  ItemAdded v1  2026-01-02T03:04:07.000006Z  "
           "{\"sku\":\"Y-9\",\"qty\":1}\n");
}

TEMPLATE_TEST_CASE("esctl event shows one event in full", "[esctl][event]",
                   ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto doc = f.json({"event", invoice_event_id});
  CHECK(str(doc["event_id"]) == invoice_event_id);
  CHECK(str(doc["event_type"]) == "InvoiceIssued");
  CHECK(doc["event_version"].GetInt() == 1);
  CHECK(str(doc["aggregate_type"]) == "Invoice");
  CHECK(str(doc["aggregate_id"]) == invoice_3.aggregate_id.to_string());
  CHECK(doc["aggregate_version"].GetInt64() == 1);
  CHECK(doc["global_position"].GetInt64() == 5);
  CHECK(doc["tenant_id"].IsNull());
  CHECK(str(doc["occurred_at"]) == "2026-01-02T03:04:09.000006Z");
  CHECK(str(doc["metadata"]["source"]) == "test");
  CHECK(doc["payload"]["amount"].GetDouble() == 12.5);
  REQUIRE(doc["payload"]["lines"].Size() == 2);
  CHECK(doc["payload"]["lines"][1].GetInt() == 2);
}

TEMPLATE_TEST_CASE("esctl events pages through the feed with filters",
                   "[esctl][events]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto doc = f.json({"events", "--from-position=2", "--limit=2"});
  REQUIRE(doc["events"].Size() == 2);
  CHECK(doc["events"][0]["global_position"].GetInt64() == 3);
  CHECK(doc["events"][1]["global_position"].GetInt64() == 4);
  CHECK(doc["next_position"].GetInt64() == 4);
  auto invoices = f.json({"events", "--type=Invoice"});
  REQUIRE(invoices["events"].Size() == 1);
  CHECK(invoices["events"][0]["global_position"].GetInt64() == 5);
  auto a = f.json({"events", "--tenant=" + tenant_a.to_string()});
  CHECK(a["events"].Size() == 3);
  CHECK(f.json({"events"})["events"].Size() == 5);
}

TEMPLATE_TEST_CASE("esctl chain lists the events of one correlation id",
                   "[esctl][chain]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  // Two later events caused by the cart's first one (positions 6 and 7),
  // and one of another chain.
  auto root = id("eeeeeeee-0000-4000-8000-000000000001");
  auto caused = [&](const stream_id& s, const char* event_id, int n,
                    std::optional<uuid> chain) {
    auto ev = make_event(
      s, event_id, "ItemAdded", R"({"sku":"C","qty":1})",
      s == cart_2 ? std::optional<uuid>{tenant_b} : std::nullopt, n);
    ev.correlation_id = chain;
    ev.causation_id = root;
    return ev;
  };
  take(f.h.events->append(
    invoice_3, expected_version::any(),
    {caused(invoice_3, "eeeeeeee-0000-4000-8000-000000000006", 5, root)}));
  take(f.h.events->append(
    cart_2, expected_version::any(),
    {caused(cart_2, "eeeeeeee-0000-4000-8000-000000000007", 6, uuid::random()),
     caused(cart_2, "eeeeeeee-0000-4000-8000-000000000008", 7, root)}));
  auto doc = f.json({"chain", root.to_string()});
  const auto& evs = doc["events"];
  REQUIRE(evs.Size() == 3);
  CHECK(std::string{evs[0]["event_id"].GetString()} == root.to_string());
  CHECK(std::string{evs[1]["event_id"].GetString()}
        == "eeeeeeee-0000-4000-8000-000000000006");
  CHECK(std::string{evs[2]["event_id"].GetString()}
        == "eeeeeeee-0000-4000-8000-000000000008");
  CHECK(f.json({"chain", root.to_string(), "--limit=2"})["events"].Size() == 2);
  auto table = f.run({"chain", root.to_string()});
  CHECK(table.code == 0);
  CHECK(table.out.find("CAUSED BY") != std::string::npos);
  CHECK(f.json({"chain", uuid::random().to_string()})["events"].Size() == 0);
  CHECK(f.run({"chain", "not-a-uuid"}).code == 1);
}

TEMPLATE_TEST_CASE("esctl deletes and truncates streams", "[esctl][delete]",
                   ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto cart = cart_1.aggregate_id.to_string();
  // A stale expectation changes nothing; then the cart goes.
  CHECK(f.run({"delete-stream", "Cart", cart, "--expected=2"}).code == 4);
  auto del = f.json({"delete-stream", "Cart", cart, "--expected=3"});
  CHECK(del["version"].GetInt64() == 4);
  CHECK(del["position"].GetInt64() == 6);
  CHECK(std::string{del["action"].GetString()} == "deleted");
  CHECK(f.run({"stream", "Cart", cart}).code == 2);
  CHECK(f.run({"delete-stream", "Cart", cart}).code == 2);
  // The deletion is an event of the feed.
  auto feed = f.json({"events", "--from-position=5"});
  REQUIRE(feed["events"].Size() == 1);
  CHECK(std::string{feed["events"][0]["event_type"].GetString()}
        == "es.StreamDeleted");
  // For good: the second cart takes nothing more.
  auto other = cart_2.aggregate_id.to_string();
  auto hard = f.run({"delete-stream", "Cart", other, "--hard"});
  CHECK(hard.code == 0);
  CHECK(hard.out.find("deleted (for good) stream Cart/" + other)
        != std::string::npos);
  CHECK_FALSE(f.h.events->append(
    cart_2, expected_version::any(),
    {make_event(cart_2, "eeeeeeee-0000-4000-8000-000000000009", "CartOpened",
                "{}", tenant_b, 9)}));
  // The invoice keeps only what follows version 1.
  auto invoice = invoice_3.aggregate_id.to_string();
  CHECK(f.run({"truncate-stream", "Invoice", invoice, "--before=3"}).code == 1);
  auto cut = f.json({"truncate-stream", "Invoice", invoice, "--before=2"});
  CHECK(cut["version"].GetInt64() == 2);
  auto rest = f.json({"stream", "Invoice", invoice});
  REQUIRE(rest["events"].Size() == 1);
  CHECK(std::string{rest["events"][0]["event_type"].GetString()}
        == "es.StreamTruncated");
  // Bad input and streams that do not exist.
  CHECK(f.run({"delete-stream", "Cart", "nope"}).code == 1);
  CHECK(f.run({"delete-stream", "Cart", uuid::random().to_string()}).code == 2);
  CHECK(f.run({"truncate-stream", "Invoice", invoice}).code == 1);
  // Range partitions exist on range-partitioned PostgreSQL stores only.
  CHECK(f.run({"partitions"}).code == 1);
  CHECK(f.run({"partitions", "detach", "--up-to=1"}).code == 1);
  // The feed is a PostgreSQL setting; switching keeps every event.
  if (f.store().rfind("--store=postgres:", 0) == 0) {
    CHECK(std::string{f.json({"feed"})["feed"].GetString()} == "serialized");
    CHECK(
      std::string{f.json({"feed", "set", "overlapping"})["feed"].GetString()}
      == "overlapping");
    CHECK(std::string{f.json({"feed"})["feed"].GetString()} == "overlapping");
    CHECK(f.run({"feed", "set", "sideways"}).code == 1);
    CHECK(std::string{f.json({"feed", "set", "serialized"})["feed"].GetString()}
          == "serialized");
    CHECK(f.json({"stream", "Invoice", invoice})["events"].Size() == 1);
  } else {
    CHECK(f.run({"feed"}).code == 1);
  }
}

TEMPLATE_TEST_CASE("esctl exit codes tell not found from bad input",
                   "[esctl][exit]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto unknown = uuid::random().to_string();
  auto code = [&](std::vector<std::string> args) {
    auto r = f.run(std::move(args));
    INFO("stderr: " << r.err);
    CHECK_FALSE(r.err.empty());
    CHECK(r.out.empty());
    return r.code;
  };
  CHECK(code({"event", unknown}) == 2);
  CHECK(code({"stream", "Cart", unknown}) == 2);
  CHECK(code({"dlq", "show", "999999"}) == 2);
  CHECK(code({"dlq", "resolve", "999999"}) == 2);
  CHECK(code({"checkpoints", "reset", "no_such_view", "--to=1"}) == 2);
  CHECK(code({"event", "not-a-uuid"}) == 1);
  CHECK(code({"stream", "Cart", "12345"}) == 1);
  CHECK(code({"streams", "--tenant=nope"}) == 1);
  CHECK(code({"streams", "--limit=-3"}) == 1);
  CHECK(code({"events", "--from-position=-1"}) == 1);
  CHECK(code({"dlq", "show", "abc"}) == 1);
  CHECK(code({"dlq", "purge"}) == 1);
  CHECK(code({"no-such-command"}) == 1);
  // Bad input changes nothing.
  CHECK(code({"checkpoints", "reset", "cart_view", "--to=-1"}) == 1);
  CHECK(code({"checkpoints", "reset", "cart_view", "--to=99"}) == 1);
  CHECK(code({"checkpoints", "reset", "cart_view"}) == 1);
  auto cp = take(f.h.db->checkpoints()->load("cart_view"));
  REQUIRE(cp);
  CHECK(cp->position == 3);
  auto r = run_esctl({"--store=mysql:whatever", "info"});
  CHECK(r.code == 1);
  CHECK(r.err
        == "esctl: unknown store scheme 'mysql' (esctl knows sqlite: "
           "and postgres:)\n");
}

// -- projections --------------------------------------------------------------

TEMPLATE_TEST_CASE("esctl checkpoints reset moves a checkpoint",
                   "[esctl][checkpoints]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto list = f.json({"checkpoints"});
  REQUIRE(list["checkpoints"].Size() == 2);
  CHECK(str(list["checkpoints"][0]["projection"]) == "cart_view");
  CHECK(list["checkpoints"][0]["position"].GetInt64() == 3);
  CHECK(list["checkpoints"][0]["events_processed"].GetInt64() == 3);
  CHECK(str(list["checkpoints"][0]["event_type"]) == "ItemAdded");
  auto projections = f.json({"projections"});
  CHECK(projections["head_position"].GetInt64() == 5);
  const auto& p = projections["projections"];
  REQUIRE(p.Size() == 2);
  CHECK(str(p[0]["projection"]) == "cart_view");
  CHECK(p[0]["lag"].GetInt64() == 2);
  CHECK(p[0]["dlq_unresolved"].GetInt64() == 1);
  CHECK(p[1]["lag"].GetInt64() == 0);

  auto moved = f.json({"checkpoints", "reset", "cart_view", "--to=1"});
  CHECK(moved["previous_position"].GetInt64() == 3);
  CHECK(moved["position"].GetInt64() == 1);
  auto cps = f.h.db->checkpoints();
  CHECK(take(cps->load("cart_view"))->position == 1);
  auto r = f.run({"checkpoints", "reset", "invoice_view", "--to-start"});
  CHECK(r.code == 0);
  CHECK(r.out == "checkpoint invoice_view moved from 5 to 0\n");
  CHECK(take(cps->load("invoice_view"))->position == 0);
  CHECK(f.json({"projections"})["projections"][1]["lag"].GetInt64() == 5);
  // A running projection holds its lease: esctl leaves it alone.
  auto lease = take(cps->try_lease("cart_view"));
  auto refused = f.run({"checkpoints", "reset", "cart_view", "--to=2"});
  CHECK(refused.code == 4);
  CHECK(refused.err.find("is running") != std::string::npos);
  CHECK(take(cps->load("cart_view"))->position == 1);
}

// -- dead letters -------------------------------------------------------------

TEMPLATE_TEST_CASE("esctl dlq lists, shows, replays, resolves and purges",
                   "[esctl][dlq]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto [open_id, resolved_id] = f.dead_letters;
  auto ids = [](int64_t x) {
    return std::to_string(x);
  };
  auto list = f.json({"dlq", "list"});
  REQUIRE(list["dead_letters"].Size() == 2);
  CHECK(list["dead_letters"][0]["id"].GetInt64() == open_id);
  CHECK(str(list["dead_letters"][0]["status"]) == "failed");
  CHECK(list["dead_letters"][0]["global_position"].GetInt64() == 2);
  auto failed = f.json({"dlq", "list", "--status=failed"});
  CHECK(failed["dead_letters"].Size() == 1);
  CHECK(f.run({"dlq", "list", "--status=odd"}).code == 1);

  auto shown = f.json({"dlq", "show", ids(open_id)});
  CHECK(str(shown["projection"]) == "cart_view");
  CHECK(str(shown["error_message"]) == "boom: qty must be even");
  CHECK(str(shown["event"]["payload"]["sku"]) == "X-1");

  auto stats = f.json({"dlq", "stats"});
  CHECK(stats["total"].GetInt64() == 2);
  CHECK(stats["failed"].GetInt64() == 1);
  CHECK(stats["resolved"].GetInt64() == 1);
  CHECK(stats["unresolved_by_projection"]["cart_view"].GetInt64() == 1);

  // Replay re-queues: the entry waits as `retrying` for its projection.
  auto replayed = f.json({"dlq", "replay", ids(open_id)});
  CHECK(str(replayed["status"]) == "retrying");
  auto dlq = f.h.db->dead_letters();
  CHECK(take(dlq->get(open_id))->status == dead_letter_status::retrying);
  CHECK(f.run({"dlq", "replay", ids(resolved_id)}).code == 2);

  auto r = f.run({"dlq", "resolve", ids(open_id), "--by=ops"});
  CHECK(r.code == 0);
  CHECK(r.out == "dead letter " + ids(open_id) + " resolved by ops\n");
  auto entry = take(dlq->get(open_id));
  CHECK(entry->status == dead_letter_status::resolved);
  CHECK(entry->resolved_by == "ops");

  // Resolved just now: not older than a day, so kept; --resolved takes all.
  CHECK(f.json({"dlq", "purge", "--older-than-days=1"})["deleted"].GetInt64()
        == 0);
  CHECK(f.json({"dlq", "purge", "--resolved"})["deleted"].GetInt64() == 2);
  CHECK(take(dlq->get(open_id)) == std::nullopt);
  CHECK(f.json({"dlq", "list"})["dead_letters"].Size() == 0);
}

// -- outbox -------------------------------------------------------------------

TEMPLATE_TEST_CASE("esctl outbox shows, retries and cleans up",
                   "[esctl][outbox]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  auto status = f.json({"outbox", "status"});
  CHECK(status["pending"].GetInt64() == 3);
  CHECK(status["published"].GetInt64() == 1);
  CHECK(status["failed"].GetInt64() == 1);
  CHECK(status["oldest_waiting"].IsString());
  CHECK(f.json({"outbox", "retry-failed"})["requeued"].GetInt64() == 1);
  auto counts = take(f.h.outbox->counts());
  CHECK(counts.pending == 4);
  CHECK(counts.failed == 0);
  CHECK(
    f.json({"outbox", "cleanup", "--older-than-days=0"})["deleted"].GetInt64()
    == 1);
  CHECK(take(f.h.outbox->counts()).published == 0);
}

// -- follow -------------------------------------------------------------------

TEMPLATE_TEST_CASE("esctl follow sees events appended after it started",
                   "[esctl][follow]", ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  esctl_process p{{f.store(), "follow", "--json", "--max-events=2",
                   "--interval-ms=20", "--type=Cart"}};
  // It says on stderr where it starts; only then the test appends.
  p.wait_for([&] {
    return p.err().find("following the feed after position 5\n")
           != std::string::npos;
  });
  auto cart_9 = stream_id{"Cart", uuid::random()};
  take(f.h.events->append(
    invoice_3, expected_version::exact(1),
    {make_event(invoice_3, "eeeeeeee-0000-4000-8000-000000000006",
                "InvoicePaid", "{}", std::nullopt, 9)}));
  take(f.h.events->append(
    cart_9, expected_version::no_stream(),
    {make_event(cart_9, "eeeeeeee-0000-4000-8000-000000000007", "CartOpened",
                R"({"owner":"cy"})", tenant_a, 10),
     make_event(cart_9, "eeeeeeee-0000-4000-8000-000000000008", "ItemAdded",
                R"({"sku":"Z-3","qty":4})", tenant_a, 11)}));
  CHECK(p.finish() == 0);
  std::vector<rapidjson::Document> lines;
  size_t start = 0;
  for (auto nl = p.out().find('\n'); nl != std::string::npos;
       start = nl + 1, nl = p.out().find('\n', start)) {
    lines.emplace_back();
    lines.back().Parse(p.out().substr(start, nl - start).c_str());
    REQUIRE_FALSE(lines.back().HasParseError());
  }
  REQUIRE(lines.size() == 2);
  // The invoice event (position 6) is filtered out.
  CHECK(lines[0]["global_position"].GetInt64() == 7);
  CHECK(str(lines[0]["payload"]["owner"]) == "cy");
  CHECK(lines[1]["global_position"].GetInt64() == 8);
  CHECK(lines[1]["payload"]["qty"].GetInt() == 4);
}

TEMPLATE_TEST_CASE("esctl follow stops cleanly on SIGTERM", "[esctl][follow]",
                   ESCTL_BACKENDS) {
  esctl_fixture<TestType> f;
  esctl_process p{
    {f.store(), "follow", "--from-position=4", "--interval-ms=20"}};
  p.wait_for([&] {
    return p.out().find('\n') != std::string::npos;
  });
  CHECK(p.out()
        == "5  Invoice/bbbbbbbb-0000-4000-8000-000000000003  v1  "
           "InvoiceIssued  {\"amount\":12.5,\"lines\":[1,2]}\n");
  p.signal(SIGTERM);
  CHECK(p.finish() == 0);
}

} // namespace es::test
