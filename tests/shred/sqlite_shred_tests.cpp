// Crypto-shredding on SQLite: the database file searched for personal
// values before and after forgetting, damaged ciphertexts, master keys.
#include "es/sqlite/sqlite.hpp"

#include "shred_fixture.hpp"
#include "temp_dir.hpp"
#include <sqlite3.h>

using namespace es;
using namespace es::test;

namespace {

/// Runs `sql` on a connection of its own; FAILs on error.
void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* msg = nullptr;
  auto rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  std::string text = msg != nullptr ? msg : "";
  sqlite3_free(msg);
  sqlite3_close(db);
  if (rc != SQLITE_OK)
    FAIL(sql << ": " << text);
}

/// Everything SQLite keeps of the database on disk, after copying the
/// write-ahead log into the file.
std::string database_bytes(const std::string& path) {
  exec_sql(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  return file_bytes(path) + file_bytes(path + "-wal")
         + file_bytes(path + "-journal");
}

struct sqlite_setup {
  temp_dir dir;
  std::string path = dir.file("events.db");
  std::shared_ptr<event_registry> registry = make_shred_registry();
  event_store_ptr inner;
  key_store_ptr keys;
  event_store_ptr store;

  explicit sqlite_setup(std::optional<master_key> master = std::nullopt) {
    sqlite_config cfg;
    cfg.path = path;
    cfg.synchronous = sqlite_sync::off;
    cfg.registry = registry;
    auto es = make_sqlite_event_store(cfg);
    REQUIRE(es);
    inner = *es;
    open_keys(std::move(master));
  }

  void open_keys(std::optional<master_key> master) {
    store.reset();
    keys.reset();
    // [sqlite-setup]
    sqlite_key_store_config kcfg;
    kcfg.path = path; // the event store's file
    kcfg.master = master;
    auto ks = make_sqlite_key_store(kcfg);
    REQUIRE(ks);
    keys = *ks;
    // `inner` is the SQLite event store; give `store` to aggregates,
    // repositories and projections.
    auto s = make_shredding_store(inner, keys, make_test_policy());
    REQUIRE(s);
    store = *s;
    // [/sqlite-setup]
  }
};

customer_registered registration(const stream_id& s) {
  return {s.aggregate_id.to_string(), random_email(), random_name(), 1815,
          "gold"};
}

} // namespace

TEST_CASE("SQLite: no personal value in the database file, before or after "
          "forgetting",
          "[sqlite]") {
  sqlite_setup db;
  auto snapshots = make_sqlite_snapshot_store(db.path);
  REQUIRE(snapshots);
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  REQUIRE(db.store->append(s, expected_version::no_stream(), {make(c, s)}));
  auto key = db.keys->get_keys({c.customer_id});
  REQUIRE(key);
  REQUIRE(key->size() == 1);
  auto raw_key = key_bytes(key->begin()->second);
  // Encrypted from the start.
  auto before = database_bytes(db.path);
  CHECK(contains(before, c.customer_id));
  CHECK(!contains(before, c.email));
  CHECK(!contains(before, c.name));
  // (Without a master key the key is in the file: that is what forgetting
  // removes.)
  CHECK(contains(before, raw_key));
  auto read = read_all_of(*db.store, s);
  REQUIRE(read.size() == 1);
  CHECK(db.registry->decode_as<customer_registered>(read[0]) == c);
  // A snapshot holds the plaintext: forgetting deletes it.
  REQUIRE((*snapshots)
            ->save(snapshot{s, 1, 1, R"({"email":")" + c.email + R"("})",
                            now_utc()}));
  CHECK(contains(database_bytes(db.path), c.email));
  auto forgotten = forget_subject(*db.keys, c.customer_id, snapshots->get());
  REQUIRE(forgotten);
  CHECK(forgotten->key_deleted);
  CHECK(forgotten->snapshots_deleted == std::vector<stream_id>{s});
  auto after = database_bytes(db.path);
  CHECK(!contains(after, c.email));
  CHECK(!contains(after, c.name));
  CHECK(!contains(after, raw_key));
  // The events still replay, erased.
  auto replay = read_all_of(*db.store, s);
  REQUIRE(replay.size() == 1);
  CHECK(erased_fields(replay[0])
        == std::vector<std::string>{"email", "name", "birth_year"});
  auto decoded = db.registry->decode_as<customer_registered>(replay[0]);
  REQUIRE(decoded);
  CHECK(decoded->email == erased_marker);
  CHECK(decoded->plan == "gold");
}

TEST_CASE("SQLite: a ciphertext damaged in the database is an error",
          "[sqlite]") {
  sqlite_setup db;
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  auto res = db.store->append(s, expected_version::no_stream(), {make(c, s)});
  REQUIRE(res);
  auto raw = read_all_of(*db.inner, s);
  REQUIRE(raw.size() == 1);
  auto payload = raw[0].payload;
  auto at = payload.find("\"email\":\"", payload.find("\"$pii\"")) + 30;
  payload[at] = payload[at] == 'A' ? 'B' : 'A';
  exec_sql(db.path, "UPDATE events SET payload = '" + payload
                      + "' WHERE global_position = "
                      + std::to_string(res->last_position));
  auto read = db.store->read_stream(s, {});
  REQUIRE(!read);
  CHECK(has_code(read.error(), shred_errc::decryption_failed));
  CHECK(contains(describe(read.error()), raw[0].event_id.to_string()));
  auto found = db.store->find_event(raw[0].event_id);
  REQUIRE(!found);
  CHECK(has_code(found.error(), shred_errc::decryption_failed));
  // Nothing is lost: the event is there, and the key too.
  CHECK(read_all_of(*db.inner, s).size() == 1);
  auto keys = db.keys->get_keys({c.customer_id});
  REQUIRE(keys);
  CHECK(keys->size() == 1);
}

TEST_CASE("SQLite: keys wrapped by a master key", "[sqlite]") {
  auto master = master_key::generate();
  sqlite_setup db{master};
  stream_id s{"Customer", uuid::random()};
  auto c = registration(s);
  REQUIRE(db.store->append(s, expected_version::no_stream(), {make(c, s)}));
  auto key = db.keys->get_keys({c.customer_id});
  REQUIRE(key);
  REQUIRE(key->size() == 1);
  CHECK(!contains(database_bytes(db.path), key_bytes(key->begin()->second)));
  SECTION("a wrong master key is refused and loses nothing") {
    db.open_keys(master_key::generate());
    auto read = db.store->read_stream(s, {});
    REQUIRE(!read);
    CHECK(has_code(read.error(), shred_errc::wrong_master_key));
    auto more = db.store->append(s, expected_version::exact(1),
                                 {make(registration(s), s)});
    REQUIRE(!more);
    CHECK(has_code(more.error(), shred_errc::wrong_master_key));
    db.open_keys(std::nullopt);
    read = db.store->read_stream(s, {});
    REQUIRE(!read);
    CHECK(has_code(read.error(), shred_errc::wrong_master_key));
    db.open_keys(master);
    auto events = read_all_of(*db.store, s);
    REQUIRE(events.size() == 1);
    CHECK(db.registry->decode_as<customer_registered>(events[0]) == c);
  }
  SECTION("a master key given as hex") {
    auto parsed = master_key::from_hex(master.to_hex());
    REQUIRE(parsed);
    db.open_keys(*parsed);
    CHECK(read_all_of(*db.store, s).size() == 1);
    CHECK(has_code(master_key::from_hex("abc").error(),
                   store_errc::invalid_argument));
  }
}
