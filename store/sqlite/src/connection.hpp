// A thin RAII layer over sqlite3 connections and prepared statements.
#pragma once

#include "es/store/event.hpp"
#include "es/store/uuid.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace es::detail::sqlite {

/// Translates an SQLite result code into a store error: busy and locked
/// become the retryable `storage_busy`, I/O, full and permission codes
/// `io_error`, corrupt and not-a-database `corrupt_database`.
caf::error translate(int rc, sqlite3* db, std::string_view what);

/// A prepared statement. Not thread-safe: belongs to one connection.
class statement {
public:
  statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {
    // nop
  }
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  // Bind helpers; indexes start at 1. Text and blobs are bound without a
  // copy: the caller keeps them alive until `reset`.
  void bind(int i, int64_t x);
  void bind(int i, std::string_view x);
  void bind(int i, const uuid& x);
  void bind(int i, const std::optional<uuid>& x);
  void bind_null(int i);

  /// Runs one step: SQLITE_ROW, SQLITE_DONE or an error code.
  int step();

  /// Resets the statement and clears its bindings.
  void reset();

  int64_t int64_at(int col) const;
  std::string text_at(int col) const;
  /// The text in the statement's row buffer: valid until the next step or
  /// reset.
  std::string_view text_view_at(int col) const;
  uuid uuid_at(int col) const;
  std::optional<uuid> opt_uuid_at(int col) const;
  bool is_null(int col) const;

  sqlite3* db() const noexcept {
    return db_;
  }

  sqlite3_stmt* raw() const noexcept {
    return stmt_;
  }

private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

/// Resets a statement when leaving a scope.
class reset_guard {
public:
  explicit reset_guard(statement& st) : st_(st) {
    // nop
  }
  ~reset_guard() {
    st_.reset();
  }
  reset_guard(const reset_guard&) = delete;
  reset_guard& operator=(const reset_guard&) = delete;

private:
  statement& st_;
};

/// One sqlite3 connection with a cache of prepared statements. Not
/// thread-safe: used by one thread at a time.
class connection {
public:
  /// Opens `path` (creating it if `create` holds) and applies the pragmas
  /// every connection of the store uses; `mmap_bytes` of the file are read
  /// through a memory map.
  static caf::expected<std::unique_ptr<connection>>
  open(const std::string& path, bool create, int busy_timeout_ms,
       int cache_pages, int64_t mmap_bytes = 256 << 20);

  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs one or more statements without results.
  caf::error exec(const char* sql);

  /// Returns the cached prepared statement for `sql`, preparing it on first
  /// use. Errors as `translate`.
  caf::expected<statement*> prepare(const std::string& sql);

  sqlite3* handle() const noexcept {
    return db_;
  }

private:
  explicit connection(sqlite3* db) : db_(db) {
    // nop
  }

  sqlite3* db_;
  std::unordered_map<std::string, std::unique_ptr<statement>> cache_;
};

/// Runs `sql` (one statement) and returns the first column of the first row
/// as integer, or `fallback` without rows.
caf::expected<int64_t> query_int(connection& conn, const std::string& sql,
                                 int64_t fallback);

/// Switches the database to WAL mode. When several connections switch a
/// new file at once, SQLite answers SQLITE_BUSY without calling the busy
/// handler (waiting could deadlock), so this retries with a short backoff
/// for up to `timeout`. A file already in WAL mode needs no lock.
caf::error enable_wal(connection& conn, std::chrono::milliseconds timeout);

} // namespace es::detail::sqlite
