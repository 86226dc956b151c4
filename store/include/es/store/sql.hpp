// A small SQL facade for read models that live in the same database as
// their checkpoint, so handler writes and checkpoint commit together.
#pragma once

#include "es/store/state_stores.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace es {

/// A parameter or column value.
using sql_value = std::variant<std::monostate, int64_t, double, std::string>;

using sql_row = std::vector<sql_value>;

/// Returns the integer in `v` (or converts a numeric text), else nullopt.
std::optional<int64_t> sql_int(const sql_value& v);

/// Returns the text in `v`, or the decimal form of a number, or "".
std::string sql_text(const sql_value& v);

/// One open transaction on a read-model database. Parameters are written
/// `?1, ?2, ...` on both backends (PostgreSQL also takes its own `$1, $2,
/// ...`), so one projection's SQL can run on either. Not
/// thread-safe; valid only inside `read_model_db::transact`.
class sql_transaction {
public:
  virtual ~sql_transaction();

  /// The backend: "sqlite" or "postgres".
  virtual std::string dialect() const = 0;

  /// Runs a statement without results.
  [[nodiscard]] virtual caf::error
  exec(std::string_view sql, const std::vector<sql_value>& params = {})
    = 0;

  /// Runs a query and returns its rows.
  [[nodiscard]] virtual caf::expected<std::vector<sql_row>>
  query(std::string_view sql, const std::vector<sql_value>& params = {}) = 0;
};

/// A database holding read models next to the framework's own
/// `projection_checkpoints`, `dead_letter_queue` and `processed_events`
/// tables (created by the same migrations as the event store). It may be the
/// event store's own database or another one. Thread-safe (one connection
/// behind a lock).
class read_model_db {
public:
  virtual ~read_model_db();

  virtual std::string dialect() const = 0;

  /// Runs `fn` inside one transaction: commits if it returns no error,
  /// rolls back otherwise (and on exceptions, which are rethrown).
  [[nodiscard]] virtual caf::error
  transact(const std::function<caf::error(sql_transaction&)>& fn)
    = 0;

  /// Saves a checkpoint inside `tx` (never moving it backwards) and returns
  /// the one now stored. With `expected_position`, a compare-and-set as
  /// `checkpoint_store::save_if`: `checkpoint_conflict` when the stored
  /// position is another one (0 also matches "no checkpoint"), so the
  /// caller's transaction, and with it the batch of read-model writes,
  /// rolls back. On PostgreSQL a concurrent writer of the same checkpoint
  /// makes this wait for its commit, then compare with what it stored.
  [[nodiscard]] virtual caf::expected<checkpoint>
  save_checkpoint(sql_transaction& tx, const checkpoint& cp,
                  std::optional<int64_t> expected_position = std::nullopt)
    = 0;

  /// Adds a dead letter inside `tx` (same rules as `dead_letter_store::add`).
  [[nodiscard]] virtual caf::expected<int64_t>
  add_dead_letter(sql_transaction& tx, const dead_letter& entry) = 0;

  /// Records that `projection` processed `event_id` inside `tx`; returns
  /// false if it had already (for at-least-once side effects).
  [[nodiscard]] virtual caf::expected<bool>
  mark_processed(sql_transaction& tx, const std::string& projection,
                 const uuid& event_id)
    = 0;

  /// The checkpoint and dead-letter stores of this database. The leases of
  /// `checkpoints()` exclude those taken through any other store or
  /// read-model database on the same SQLite file or PostgreSQL schema.
  virtual checkpoint_store_ptr checkpoints() = 0;
  virtual dead_letter_store_ptr dead_letters() = 0;

  // -- shadow rebuilds (see projection_coordinator::rebuild) -----------------

  /// Opens an empty database of the same kind next to this one, named by
  /// `tag` ([A-Za-z0-9_] only), for a read model to be rebuilt into while
  /// this one keeps serving: on SQLite the file `<path>.<tag>`, on
  /// PostgreSQL the schema `<schema>_<tag>` of the same database. Whatever
  /// was there before is removed first.
  [[nodiscard]] virtual caf::expected<std::shared_ptr<read_model_db>>
  open_shadow(const std::string& tag) = 0;

  /// In one transaction of this database, replaces the rows of `tables`
  /// with those of the same tables in `shadow` (opened by `open_shadow`),
  /// and the checkpoint and unresolved dead letters of projection `name`
  /// with those `shadow` holds for it. The tables must have the same
  /// columns in both. On error nothing changed.
  [[nodiscard]] virtual caf::error
  replace_from(read_model_db& shadow, const std::vector<std::string>& tables,
               const std::string& name)
    = 0;

  /// Removes this database (a shadow: its file or its schema); the object
  /// is unusable afterwards.
  [[nodiscard]] virtual caf::error discard() = 0;
};

using read_model_db_ptr = std::shared_ptr<read_model_db>;

// Read-model databases: make_sqlite_read_model_db (es/sqlite/sqlite.hpp)
// and make_postgres_read_model_db (es/postgres/postgres.hpp).

} // namespace es
