#include "connection.hpp"

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include <algorithm>
#include <cstring>
#include <thread>

namespace es::detail::sqlite {

caf::error translate(int rc, sqlite3* db, std::string_view what) {
  std::string msg{what};
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_store_error(store_errc::storage_busy, std::move(msg));
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_NOLFS:
      return make_store_error(store_errc::io_error, std::move(msg));
    case SQLITE_CANTOPEN:
      return make_store_error(store_errc::connection_failed, std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return make_store_error(store_errc::corrupt_database, std::move(msg));
    case SQLITE_TOOBIG:
      return make_store_error(store_errc::payload_too_large, std::move(msg));
    case SQLITE_INTERRUPT:
      return make_store_error(store_errc::timeout, std::move(msg));
    default: return make_store_error(store_errc::internal, std::move(msg));
  }
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

void statement::bind(int i, int64_t x) {
  sqlite3_bind_int64(stmt_, i, x);
}

void statement::bind(int i, std::string_view x) {
  sqlite3_bind_text(stmt_, i, x.data(), static_cast<int>(x.size()),
                    SQLITE_STATIC);
}

void statement::bind(int i, const uuid& x) {
  sqlite3_bind_blob(stmt_, i, x.bytes().data(), 16, SQLITE_STATIC);
}

void statement::bind(int i, const std::optional<uuid>& x) {
  if (x)
    bind(i, *x);
  else
    bind_null(i);
}

void statement::bind_null(int i) {
  sqlite3_bind_null(stmt_, i);
}

int statement::step() {
  return sqlite3_step(stmt_);
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t statement::int64_at(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

std::string statement::text_at(int col) const {
  return std::string{text_view_at(col)};
}

std::string_view statement::text_view_at(int col) const {
  auto ptr = sqlite3_column_text(stmt_, col);
  auto len = sqlite3_column_bytes(stmt_, col);
  if (ptr == nullptr)
    return {};
  return {reinterpret_cast<const char*>(ptr), static_cast<size_t>(len)};
}

uuid statement::uuid_at(int col) const {
  uuid result;
  auto ptr = sqlite3_column_blob(stmt_, col);
  if (ptr != nullptr && sqlite3_column_bytes(stmt_, col) == 16)
    std::memcpy(result.bytes().data(), ptr, 16);
  return result;
}

std::optional<uuid> statement::opt_uuid_at(int col) const {
  if (is_null(col))
    return std::nullopt;
  return uuid_at(col);
}

bool statement::is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

caf::expected<std::unique_ptr<connection>>
connection::open(const std::string& path, bool create, int busy_timeout_ms,
                 int cache_pages, int64_t mmap_bytes) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
              | (create ? SQLITE_OPEN_CREATE : 0);
  auto rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    auto err = translate(rc, db, "cannot open " + path);
    sqlite3_close_v2(db);
    if (has_code(err, store_errc::internal)
        || has_code(err, store_errc::io_error))
      return make_store_error(store_errc::connection_failed,
                              error_description(err));
    return err;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);
  std::unique_ptr<connection> conn{new connection(db)};
  auto pragmas = "PRAGMA cache_size = " + std::to_string(cache_pages)
                 + "; PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;"
                 + " PRAGMA mmap_size = " + std::to_string(mmap_bytes) + ";";
  if (auto err = conn->exec(pragmas.c_str()))
    return err;
  return conn;
}

connection::~connection() {
  cache_.clear();
  sqlite3_close_v2(db_);
}

caf::error connection::exec(const char* sql) {
  char* msg = nullptr;
  auto rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
  if (rc == SQLITE_OK)
    return caf::none;
  std::string what = msg != nullptr ? msg : "statement failed";
  sqlite3_free(msg);
  return translate(rc, db_, what);
}

caf::expected<statement*> connection::prepare(const std::string& sql) {
  auto i = cache_.find(sql);
  if (i != cache_.end())
    return i->second.get();
  sqlite3_stmt* stmt = nullptr;
  auto rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                               SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK)
    return translate(rc, db_, "cannot prepare statement");
  auto ptr = std::make_unique<statement>(db_, stmt);
  auto* raw = ptr.get();
  cache_.emplace(sql, std::move(ptr));
  return raw;
}

caf::expected<int64_t> query_int(connection& conn, const std::string& sql,
                                 int64_t fallback) {
  auto st = conn.prepare(sql);
  if (!st)
    return std::move(st.error());
  reset_guard guard{**st};
  auto rc = (*st)->step();
  if (rc == SQLITE_ROW)
    return (*st)->is_null(0) ? fallback : (*st)->int64_at(0);
  if (rc == SQLITE_DONE)
    return fallback;
  return translate(rc, conn.handle(), "query failed");
}

caf::error enable_wal(connection& conn, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::milliseconds pause{1};
  for (;;) {
    auto err = conn.exec("PRAGMA journal_mode = WAL");
    if (!err)
      return caf::none;
    if (!has_code(err, store_errc::storage_busy)
        || std::chrono::steady_clock::now() + pause > deadline)
      return err;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds{50});
  }
}

} // namespace es::detail::sqlite
