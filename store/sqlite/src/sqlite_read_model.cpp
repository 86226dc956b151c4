// The SQLite read-model database.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"

#include "connection.hpp"
#include "schema.hpp"
#include "state_common.hpp"
#include "state_sql.hpp"

#include <filesystem>
#include <mutex>

namespace es {

namespace {

using detail::sqlite::connection;
using detail::sqlite::statement;

class sqlite_tx final : public sql_transaction {
public:
  explicit sqlite_tx(connection& conn) : conn_(conn) {
    // nop
  }

  std::string dialect() const override {
    return "sqlite";
  }

  caf::error exec(std::string_view sql,
                  const std::vector<sql_value>& params) override {
    auto rows = run(sql, params, false);
    if (!rows)
      return std::move(rows.error());
    return caf::none;
  }

  caf::expected<std::vector<sql_row>>
  query(std::string_view sql, const std::vector<sql_value>& params) override {
    return run(sql, params, true);
  }

  connection& conn() {
    return conn_;
  }

private:
  caf::expected<std::vector<sql_row>> run(std::string_view sql,
                                          const std::vector<sql_value>& params,
                                          bool collect) {
    auto st = conn_.prepare(std::string{sql});
    if (!st)
      return std::move(st.error());
    detail::sqlite::reset_guard reset{**st};
    auto* raw = raw_stmt(**st);
    for (size_t i = 0; i < params.size(); ++i) {
      auto idx = static_cast<int>(i) + 1;
      const auto& p = params[i];
      if (std::holds_alternative<std::monostate>(p))
        sqlite3_bind_null(raw, idx);
      else if (auto* v = std::get_if<int64_t>(&p))
        sqlite3_bind_int64(raw, idx, *v);
      else if (auto* d = std::get_if<double>(&p))
        sqlite3_bind_double(raw, idx, *d);
      else {
        const auto& s = std::get<std::string>(p);
        sqlite3_bind_text(raw, idx, s.data(), static_cast<int>(s.size()),
                          SQLITE_TRANSIENT);
      }
    }
    std::vector<sql_row> rows;
    int rc;
    while ((rc = (*st)->step()) == SQLITE_ROW) {
      if (!collect)
        continue;
      sql_row row;
      for (int c = 0; c < sqlite3_column_count(raw); ++c) {
        switch (sqlite3_column_type(raw, c)) {
          case SQLITE_NULL: row.emplace_back(std::monostate{}); break;
          case SQLITE_INTEGER:
            row.emplace_back(int64_t{sqlite3_column_int64(raw, c)});
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(raw, c));
            break;
          default: row.emplace_back((*st)->text_at(c)); break;
        }
      }
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE)
      return detail::sqlite::translate(rc, conn_.handle(), "statement failed");
    return rows;
  }

  static sqlite3_stmt* raw_stmt(statement& st) {
    return st.raw();
  }

  connection& conn_;
};

class sqlite_read_model_db final : public read_model_db {
public:
  sqlite_read_model_db(std::string path, std::unique_ptr<connection> conn)
    : path_(std::move(path)), conn_(std::move(conn)) {
    // nop
  }

  std::string dialect() const override {
    return "sqlite";
  }

  caf::error
  transact(const std::function<caf::error(sql_transaction&)>& fn) override {
    std::lock_guard guard{mtx_};
    if (auto err = conn_->exec("BEGIN IMMEDIATE"))
      return err;
    sqlite_tx tx{*conn_};
    caf::error err;
    try {
      err = fn(tx);
    } catch (...) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      throw;
    }
    if (err) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return err;
    }
    if (auto cerr = conn_->exec("COMMIT")) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return cerr;
    }
    return caf::none;
  }

  caf::expected<checkpoint>
  save_checkpoint(sql_transaction& tx, const checkpoint& cp,
                  std::optional<int64_t> expected_position) override {
    if (expected_position)
      return detail::sqlite::save_checkpoint_if(own(tx), cp,
                                                *expected_position);
    return detail::sqlite::save_checkpoint(own(tx), cp);
  }

  caf::expected<int64_t> add_dead_letter(sql_transaction& tx,
                                         const dead_letter& e) override {
    return detail::sqlite::add_dead_letter(own(tx), e);
  }

  caf::expected<bool> mark_processed(sql_transaction& tx,
                                     const std::string& projection,
                                     const uuid& event_id) override {
    return detail::sqlite::mark_processed(own(tx), projection, event_id);
  }

  checkpoint_store_ptr checkpoints() override {
    std::lock_guard guard{mtx_};
    if (!checkpoints_) {
      auto res = make_sqlite_checkpoint_store(path_);
      if (res)
        checkpoints_ = *res;
    }
    return checkpoints_;
  }

  dead_letter_store_ptr dead_letters() override {
    std::lock_guard guard{mtx_};
    if (!dead_letters_) {
      auto res = make_sqlite_dead_letter_store(path_);
      if (res)
        dead_letters_ = *res;
    }
    return dead_letters_;
  }

  caf::expected<read_model_db_ptr>
  open_shadow(const std::string& tag) override {
    if (auto err = check_tag(tag))
      return err;
    auto path = path_ + "." + tag;
    if (auto err = remove_files(path))
      return err;
    auto conn = detail::sqlite::open_migrated(path, 2000,
                                              "a shadow read-model database");
    if (!conn)
      return std::move(conn.error());
    return read_model_db_ptr{
      std::make_shared<sqlite_read_model_db>(path, std::move(*conn))};
  }

  caf::error replace_from(read_model_db& shadow,
                          const std::vector<std::string>& tables,
                          const std::string& name) override {
    auto* other = dynamic_cast<sqlite_read_model_db*>(&shadow);
    if (other == nullptr)
      return make_store_error(store_errc::invalid_argument,
                              "the shadow is not a SQLite read-model database");
    for (const auto& t : tables)
      if (auto err = check_tag(t))
        return err;
    std::lock_guard guard{mtx_};
    // ATTACH cannot run inside a transaction.
    std::string attach = "ATTACH DATABASE '";
    for (char c : other->path_) {
      if (c == '\'')
        attach += '\'';
      attach += c;
    }
    attach += "' AS es_shadow";
    if (auto err = conn_->exec(attach.c_str()))
      return err;
    auto err = swap_in(tables, name);
    if (err)
      static_cast<void>(conn_->exec("ROLLBACK"));
    static_cast<void>(conn_->exec("DETACH DATABASE es_shadow"));
    return err;
  }

  caf::error discard() override {
    std::lock_guard guard{mtx_};
    checkpoints_.reset();
    dead_letters_.reset();
    conn_.reset();
    return remove_files(path_);
  }

private:
  /// The statements of `replace_from`, with the shadow attached.
  caf::error swap_in(const std::vector<std::string>& tables,
                     const std::string& name) {
    if (auto err = conn_->exec("BEGIN IMMEDIATE"))
      return err;
    for (const auto& t : tables) {
      auto del = "DELETE FROM main." + t;
      if (auto err = conn_->exec(del.c_str()))
        return err;
      auto ins = "INSERT INTO main." + t + " SELECT * FROM es_shadow." + t;
      if (auto err = conn_->exec(ins.c_str()))
        return err;
    }
    auto run = [&](const char* sql) -> caf::error {
      auto st = conn_->prepare(sql);
      if (!st)
        return std::move(st.error());
      detail::sqlite::reset_guard guard{**st};
      (*st)->bind(1, std::string_view{name});
      auto rc = (*st)->step();
      if (rc != SQLITE_DONE)
        return detail::sqlite::translate(rc, conn_->handle(),
                                         "swapping in the rebuilt model");
      return caf::none;
    };
    constexpr const char* dl_columns
      = "projection_name, event_id, global_position, event_type,"
        " event_data, error_message, error_context, retry_count, status,"
        " first_failed_at, last_failed_at, resolved_at, resolved_by";
    std::string copy_dead_letters
      = "INSERT OR REPLACE INTO main.dead_letter_queue (";
    copy_dead_letters += dl_columns;
    copy_dead_letters += ") SELECT ";
    copy_dead_letters += dl_columns;
    copy_dead_letters += " FROM es_shadow.dead_letter_queue"
                         " WHERE projection_name = ?1";
    for (const char* sql :
         {"DELETE FROM main.projection_checkpoints WHERE projection_name = ?1",
          "INSERT INTO main.projection_checkpoints SELECT * FROM"
          " es_shadow.projection_checkpoints WHERE projection_name = ?1",
          "DELETE FROM main.dead_letter_queue WHERE projection_name = ?1"
          " AND status <> 'resolved'",
          copy_dead_letters.c_str()})
      if (auto err = run(sql))
        return err;
    return conn_->exec("COMMIT");
  }

  /// Table names and tags take part in SQL text.
  static caf::error check_tag(const std::string& x) {
    return detail::check_plain_sql_name(x, 63);
  }

  static caf::error remove_files(const std::string& path) {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(path + suffix, ec);
      if (ec)
        return make_store_error(store_errc::io_error, "cannot remove " + path
                                                        + suffix + ": "
                                                        + ec.message());
    }
    return caf::none;
  }

  static connection& own(sql_transaction& tx) {
    return static_cast<sqlite_tx&>(tx).conn();
  }

  std::string path_;
  std::mutex mtx_;
  std::unique_ptr<connection> conn_;
  checkpoint_store_ptr checkpoints_;
  dead_letter_store_ptr dead_letters_;
};

} // namespace

caf::expected<read_model_db_ptr> make_sqlite_read_model_db(std::string path) {
  auto conn
    = detail::sqlite::open_migrated(path, 2000, "a read-model database");
  if (!conn)
    return std::move(conn.error());
  return read_model_db_ptr{
    std::make_shared<sqlite_read_model_db>(std::move(path), std::move(*conn))};
}

} // namespace es
