// The SQLite key store: its own connection to the event store's file.
#include "es/shred/sqlite_key_store.hpp"

#include "es/shred/errors.hpp"
#include "es/store/errors.hpp"

#include "crypto.hpp"
#include <sqlite3.h>

#include <mutex>

namespace es {

namespace {

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS es_subject_keys (
  subject TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  key_data BLOB NOT NULL,
  wrapped INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS es_subject_streams (
  subject TEXT NOT NULL,
  aggregate_type TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  PRIMARY KEY (subject, aggregate_type, aggregate_id)
) WITHOUT ROWID;
)sql";

caf::error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  std::string text{what};
  text += ": ";
  text += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_store_error(store_errc::storage_busy, std::move(text));
    case SQLITE_CANTOPEN:
      return make_store_error(store_errc::connection_failed, std::move(text));
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return make_store_error(store_errc::corrupt_database, std::move(text));
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return make_store_error(store_errc::permission_denied, std::move(text));
    default: return make_store_error(store_errc::io_error, std::move(text));
  }
}

/// One prepared statement, finalised when it goes away.
class statement {
public:
  statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~statement() {
    sqlite3_finalize(stmt_);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  caf::error prepared(std::string_view what) const {
    return rc_ == SQLITE_OK ? caf::error{} : sqlite_error(db_, rc_, what);
  }

  void bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
  }

  void bind_blob(int i, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
  }

  void bind(int i, int64_t x) {
    sqlite3_bind_int64(stmt_, i, x);
  }

  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step() {
    return sqlite3_step(stmt_);
  }

  std::string text(int col) const {
    auto* p = sqlite3_column_blob(stmt_, col);
    auto n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr
             ? std::string{}
             : std::string{static_cast<const char*>(p), static_cast<size_t>(n)};
  }

  int64_t integer(int col) const {
    return sqlite3_column_int64(stmt_, col);
  }

private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

class sqlite_key_store final : public key_store {
public:
  sqlite_key_store(sqlite3* db, std::optional<master_key> master)
    : db_(db), master_(std::move(master)) {
    // nop
  }

  ~sqlite_key_store() override {
    sqlite3_close_v2(db_);
  }

  std::string name() const override {
    return "sqlite";
  }

  caf::expected<subject_key>
  get_or_create_key(const std::string& subject) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    for (int attempt = 0; attempt < 2; ++attempt) {
      statement sel{db_, "SELECT key_id, key_data, wrapped FROM "
                         "es_subject_keys WHERE subject = ?1"};
      if (auto err = sel.prepared("reading a subject key"))
        return err;
      sel.bind(1, subject);
      auto rc = sel.step();
      if (rc == SQLITE_ROW)
        return shred_detail::from_stored(
          master_, subject, {sel.text(0), sel.text(1), sel.integer(2) != 0});
      if (rc != SQLITE_DONE)
        return sqlite_error(db_, rc, "reading a subject key");
      auto key = shred_detail::generate_key();
      auto stored = shred_detail::to_stored(master_, subject, key);
      // Another process may create the key first: then its key is read on
      // the next round.
      statement ins{db_, "INSERT OR IGNORE INTO es_subject_keys (subject, "
                         "key_id, key_data, wrapped, created_at) VALUES (?1, "
                         "?2, ?3, ?4, strftime('%s', 'now'))"};
      if (auto err = ins.prepared("creating a subject key"))
        return err;
      ins.bind(1, subject);
      ins.bind(2, stored.key_id);
      ins.bind_blob(3, stored.data);
      ins.bind(4, int64_t{stored.wrapped ? 1 : 0});
      rc = ins.step();
      shred_detail::wipe(stored.data.data(), stored.data.size());
      if (rc != SQLITE_DONE)
        return sqlite_error(db_, rc, "creating a subject key");
      if (sqlite3_changes(db_) == 1)
        return key;
    }
    return make_store_error(store_errc::internal,
                            "a subject key was neither found nor created");
  }

  caf::expected<std::map<std::string, subject_key>>
  get_keys(const std::vector<std::string>& subjects) override {
    std::map<std::string, subject_key> result;
    std::lock_guard guard{mtx_};
    statement sel{db_, "SELECT key_id, key_data, wrapped FROM es_subject_keys "
                       "WHERE subject = ?1"};
    if (auto err = sel.prepared("reading subject keys"))
      return err;
    for (const auto& s : subjects) {
      sel.reset();
      sel.bind(1, s);
      auto rc = sel.step();
      if (rc == SQLITE_DONE)
        continue;
      if (rc != SQLITE_ROW)
        return sqlite_error(db_, rc, "reading subject keys");
      auto key = shred_detail::from_stored(
        master_, s, {sel.text(0), sel.text(1), sel.integer(2) != 0});
      if (!key)
        return std::move(key.error());
      result.emplace(s, std::move(*key));
    }
    return result;
  }

  caf::error add_stream(const std::string& subject,
                        const stream_id& stream) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    statement ins{db_, "INSERT OR IGNORE INTO es_subject_streams (subject, "
                       "aggregate_type, aggregate_id) VALUES (?1, ?2, ?3)"};
    if (auto err = ins.prepared("recording a subject's stream"))
      return err;
    ins.bind(1, subject);
    ins.bind(2, stream.aggregate_type);
    ins.bind(3, stream.aggregate_id.to_string());
    if (auto rc = ins.step(); rc != SQLITE_DONE)
      return sqlite_error(db_, rc, "recording a subject's stream");
    return caf::none;
  }

  caf::expected<std::vector<stream_id>>
  streams(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    return read_streams(subject);
  }

  caf::expected<forget_result> forget(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    if (auto err = exec("BEGIN IMMEDIATE"))
      return err;
    auto result = forget_in_transaction(subject);
    if (!result) {
      static_cast<void>(exec("ROLLBACK"));
      return result;
    }
    if (auto err = exec("COMMIT")) {
      static_cast<void>(exec("ROLLBACK"));
      return err;
    }
    // In WAL mode the page that held the key may still be in the log:
    // copy the log into the file (whose page secure_delete overwrote) and
    // truncate it. Readers of other connections can hold the checkpoint
    // back; the next one finishes it.
    static_cast<void>(exec("PRAGMA wal_checkpoint(TRUNCATE)"));
    return result;
  }

  caf::error exec(const char* sql) {
    char* msg = nullptr;
    auto rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc == SQLITE_OK)
      return caf::none;
    std::string text = msg != nullptr ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    return sqlite_error(nullptr, rc, std::string{sql} + ": " + text);
  }

private:
  caf::expected<std::vector<stream_id>>
  read_streams(const std::string& subject) {
    std::vector<stream_id> result;
    statement sel{db_, "SELECT aggregate_type, aggregate_id FROM "
                       "es_subject_streams WHERE subject = ?1 ORDER BY "
                       "aggregate_type, aggregate_id"};
    if (auto err = sel.prepared("reading a subject's streams"))
      return err;
    sel.bind(1, subject);
    int rc;
    while ((rc = sel.step()) == SQLITE_ROW) {
      auto id = uuid::parse(sel.text(1));
      if (!id)
        return make_store_error(store_errc::corrupt_database,
                                "es_subject_streams holds a bad UUID");
      result.push_back(stream_id{sel.text(0), *id});
    }
    if (rc != SQLITE_DONE)
      return sqlite_error(db_, rc, "reading a subject's streams");
    return result;
  }

  caf::expected<forget_result> forget_in_transaction(const std::string& s) {
    forget_result result;
    auto streams = read_streams(s);
    if (!streams)
      return std::move(streams.error());
    result.streams = std::move(*streams);
    statement del_streams{db_,
                          "DELETE FROM es_subject_streams WHERE subject = ?1"};
    if (auto err = del_streams.prepared("forgetting a subject"))
      return err;
    del_streams.bind(1, s);
    if (auto rc = del_streams.step(); rc != SQLITE_DONE)
      return sqlite_error(db_, rc, "forgetting a subject");
    statement del_key{db_, "DELETE FROM es_subject_keys WHERE subject = ?1"};
    if (auto err = del_key.prepared("forgetting a subject"))
      return err;
    del_key.bind(1, s);
    if (auto rc = del_key.step(); rc != SQLITE_DONE)
      return sqlite_error(db_, rc, "forgetting a subject");
    result.key_deleted = sqlite3_changes(db_) > 0;
    return result;
  }

  static caf::error empty_subject() {
    return make_store_error(store_errc::invalid_argument,
                            "a subject id must not be empty");
  }

  std::mutex mtx_;
  sqlite3* db_;
  std::optional<master_key> master_;
};

} // namespace

caf::expected<key_store_ptr>
make_sqlite_key_store(sqlite_key_store_config config) {
  if (auto err = shred_detail::ensure_sodium())
    return err;
  sqlite3* db = nullptr;
  auto rc = sqlite3_open_v2(config.path.c_str(), &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                              | SQLITE_OPEN_FULLMUTEX,
                            nullptr);
  if (rc != SQLITE_OK) {
    auto err = make_store_error(store_errc::connection_failed,
                                "cannot open " + config.path + ": "
                                  + sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return err;
  }
  sqlite3_busy_timeout(db, static_cast<int>(config.busy_timeout.count()));
  auto store = std::make_shared<sqlite_key_store>(db, std::move(config.master));
  if (auto err = store->exec("PRAGMA secure_delete = ON"))
    return err;
  if (auto err = store->exec(schema_sql))
    return err;
  return key_store_ptr{std::move(store)};
}

} // namespace es
