// Crypto-shredding on PostgreSQL: pg_dump searched for personal values
// before and after forgetting, damaged ciphertexts, master keys. Needs the
// test server (scripts/pg start; ES_TEST_PG_DSN).
#include "es/shred/postgres_key_store.hpp"

#include "pg_fixture.hpp"
#include "shred_fixture.hpp"

#include <cstdio>

using namespace es;
using namespace es::test;

namespace {

/// The text of `pg_dump` of one schema of the test database.
std::string dump_schema(const std::string& schema) {
  std::string cmd = "pg_dump --no-owner --schema=" + schema + " --dbname='"
                    + pg_test_dsn() + "' 2>&1";
  auto* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
    out.append(buf, n);
  auto status = pclose(pipe);
  if (status != 0)
    FAIL("pg_dump failed (" << status << "): " << out);
  return out;
}

std::string hex(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

struct pg_setup {
  postgres_fixture fixture;
  postgres_config cfg = fixture.fresh_config();
  std::string schema = fixture.schemas.back();
  std::shared_ptr<event_registry> registry = make_shred_registry();
  event_store_ptr inner;
  key_store_ptr keys;
  event_store_ptr store;

  explicit pg_setup(std::optional<master_key> master = std::nullopt) {
    cfg.registry = registry;
    auto es = make_postgres_event_store(cfg);
    if (!es)
      FAIL("cannot open the PostgreSQL store: " << describe(
             es.error()) << " (start the server with `scripts/pg start`)");
    inner = *es;
    open_keys(std::move(master));
  }

  void open_keys(std::optional<master_key> master) {
    store.reset();
    keys.reset();
    // [postgres-setup]
    postgres_key_store_config kcfg;
    kcfg.dsn = pg_test_dsn(); // the event store's database
    kcfg.schema = schema;     // and schema
    kcfg.master = master;
    auto ks = make_postgres_key_store(kcfg);
    // [/postgres-setup]
    if (!ks)
      FAIL("cannot open the PostgreSQL key store: " << describe(
             ks.error()) << " (start the server with `scripts/pg start`)");
    keys = *ks;
    auto s = make_shredding_store(inner, keys, make_test_policy());
    REQUIRE(s);
    store = *s;
  }
};

customer_registered registration(const stream_id& s) {
  return {s.aggregate_id.to_string(), random_email(), random_name(), 1815,
          "gold"};
}

} // namespace

TEST_CASE("PostgreSQL: no personal value in pg_dump, before or after "
          "forgetting",
          "[postgres]") {
  pg_setup db;
  auto snapshots = make_postgres_snapshot_store(db.cfg);
  REQUIRE(snapshots);
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  REQUIRE(db.store->append(s, expected_version::no_stream(), {make(c, s)}));
  auto key = db.keys->get_keys({c.customer_id});
  REQUIRE(key);
  REQUIRE(key->size() == 1);
  auto key_hex = hex(key_bytes(key->begin()->second));
  auto before = dump_schema(db.schema);
  CHECK(contains(before, c.customer_id));
  CHECK(!contains(before, c.email));
  CHECK(!contains(before, c.name));
  CHECK(contains(before, key_hex));
  auto read = read_all_of(*db.store, s);
  REQUIRE(read.size() == 1);
  CHECK(db.registry->decode_as<customer_registered>(read[0]) == c);
  REQUIRE((*snapshots)
            ->save(snapshot{s, 1, 1, R"({"email":")" + c.email + R"("})",
                            now_utc()}));
  CHECK(contains(dump_schema(db.schema), c.email));
  auto forgotten = forget_subject(*db.keys, c.customer_id, snapshots->get());
  REQUIRE(forgotten);
  CHECK(forgotten->key_deleted);
  CHECK(forgotten->streams == std::vector<stream_id>{s});
  CHECK(forgotten->snapshots_deleted == std::vector<stream_id>{s});
  auto after = dump_schema(db.schema);
  CHECK(!contains(after, c.email));
  CHECK(!contains(after, c.name));
  CHECK(!contains(after, key_hex));
  auto replay = read_all_of(*db.store, s);
  REQUIRE(replay.size() == 1);
  CHECK(erased_fields(replay[0])
        == std::vector<std::string>{"email", "name", "birth_year"});
  // VACUUM reclaims the dead tuples of the deleted rows.
  db.fixture.admin.exec("VACUUM " + db.schema + ".es_subject_keys, " + db.schema
                        + ".snapshots");
}

TEST_CASE("PostgreSQL: a ciphertext damaged in the database is an error",
          "[postgres]") {
  pg_setup db;
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  auto res = db.store->append(s, expected_version::no_stream(), {make(c, s)});
  REQUIRE(res);
  auto raw = read_all_of(*db.inner, s);
  REQUIRE(raw.size() == 1);
  auto payload = raw[0].payload;
  auto at = payload.find("\"email\":\"", payload.find("\"$pii\"")) + 30;
  payload[at] = payload[at] == 'A' ? 'B' : 'A';
  db.fixture.admin.exec("UPDATE " + db.schema + ".events SET payload = '"
                        + payload + "'::json WHERE event_id = '"
                        + raw[0].event_id.to_string() + "'");
  auto read = db.store->read_stream(s, {});
  REQUIRE(!read);
  CHECK(has_code(read.error(), shred_errc::decryption_failed));
  auto all = db.store->read_all({});
  REQUIRE(!all);
  CHECK(has_code(all.error(), shred_errc::decryption_failed));
  CHECK(read_all_of(*db.inner, s).size() == 1);
}

TEST_CASE("PostgreSQL: keys wrapped by a master key", "[postgres]") {
  auto master = master_key::generate();
  pg_setup db{master};
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  REQUIRE(db.store->append(s, expected_version::no_stream(), {make(c, s)}));
  auto key = db.keys->get_keys({c.customer_id});
  REQUIRE(key);
  REQUIRE(key->size() == 1);
  CHECK(
    !contains(dump_schema(db.schema), hex(key_bytes(key->begin()->second))));
  db.open_keys(master_key::generate());
  auto read = db.store->read_stream(s, {});
  REQUIRE(!read);
  CHECK(has_code(read.error(), shred_errc::wrong_master_key));
  auto more = db.store->append(s, expected_version::exact(1),
                               {make(registration(s), s)});
  REQUIRE(!more);
  CHECK(has_code(more.error(), shred_errc::wrong_master_key));
  db.open_keys(master);
  auto events = read_all_of(*db.store, s);
  REQUIRE(events.size() == 1);
  CHECK(db.registry->decode_as<customer_registered>(events[0]) == c);
}
