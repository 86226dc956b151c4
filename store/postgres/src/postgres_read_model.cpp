// The PostgreSQL read-model database.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"

#include "connection.hpp"
#include "schema.hpp"
#include "state_common.hpp"
#include "state_sql.hpp"

#include <mutex>
#include <string>
#include <unordered_map>

namespace es {

namespace {

using detail::pg::connection;
using detail::pg::result;

/// Statements with parameters are prepared once per connection (up to
/// this many), so the server parses and plans each only once.
constexpr size_t max_prepared = 256;

using statement_cache = std::unordered_map<std::string, std::string>;

/// Rewrites SQLite-style `?N` parameters to PostgreSQL's `$N` (outside
/// quotes and comments), so one read model's SQL runs on both.
std::string numbered_placeholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    auto c = sql[i];
    if (quote != 0) {
      if (c == quote)
        quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      auto end = sql.find('\n', i);
      end = end == std::string_view::npos ? sql.size() : end;
      out.append(sql.substr(i, end - i));
      i = end - 1;
      continue;
    } else if (c == '?' && i + 1 < sql.size() && sql[i + 1] >= '0'
               && sql[i + 1] <= '9') {
      c = '$';
    }
    out.push_back(c);
  }
  return out;
}

class pg_tx final : public sql_transaction {
public:
  pg_tx(connection& conn, statement_cache& statements)
    : conn_(conn), statements_(statements) {
    // nop
  }

  std::string dialect() const override {
    return "postgres";
  }

  caf::error exec(std::string_view sql,
                  const std::vector<sql_value>& params) override {
    auto r = run(sql, params);
    if (!r)
      return std::move(r.error());
    return caf::none;
  }

  caf::expected<std::vector<sql_row>>
  query(std::string_view sql, const std::vector<sql_value>& params) override {
    auto r = run(sql, params);
    if (!r)
      return std::move(r.error());
    std::vector<sql_row> rows;
    auto* res = r->get();
    for (int row = 0; row < PQntuples(res); ++row) {
      sql_row out;
      for (int c = 0; c < PQnfields(res); ++c) {
        if (PQgetisnull(res, row, c))
          out.emplace_back(std::monostate{});
        else
          out.emplace_back(r->text(row, c));
      }
      rows.push_back(std::move(out));
    }
    return rows;
  }

  connection& conn() {
    return conn_;
  }

private:
  caf::expected<result> run(std::string_view sql,
                            const std::vector<sql_value>& params) {
    std::vector<std::string> texts;
    std::vector<const char*> ptrs;
    texts.reserve(params.size());
    for (const auto& p : params)
      texts.push_back(sql_text(p));
    for (size_t i = 0; i < params.size(); ++i)
      ptrs.push_back(std::holds_alternative<std::monostate>(params[i])
                       ? nullptr
                       : texts[i].c_str());
    auto nparams = static_cast<int>(ptrs.size());
    // Keyed by the caller's text: the rewrite to $N runs once per statement
    // prepared, not once per call.
    std::string key{sql};
    auto i = statements_.find(key);
    if (i == statements_.end() && nparams > 0
        && statements_.size() < max_prepared) {
      auto name = "es_rm_" + std::to_string(statements_.size());
      result prep{PQprepare(conn_.handle(), name.c_str(),
                            numbered_placeholders(sql).c_str(), nparams,
                            nullptr)};
      if (PQresultStatus(prep.get()) != PGRES_COMMAND_OK)
        return detail::pg::translate(prep.get(), conn_.handle(),
                                     "statement failed");
      i = statements_.emplace(std::move(key), std::move(name)).first;
    }
    result r{i != statements_.end()
               ? PQexecPrepared(conn_.handle(), i->second.c_str(), nparams,
                                ptrs.data(), nullptr, nullptr, 0)
               : PQexecParams(conn_.handle(),
                              numbered_placeholders(sql).c_str(), nparams,
                              nullptr, ptrs.data(), nullptr, nullptr, 0)};
    auto status = PQresultStatus(r.get());
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
      return r;
    return detail::pg::translate(r.get(), conn_.handle(), "statement failed");
  }

  connection& conn_;
  statement_cache& statements_;
};

class pg_read_model_db final : public read_model_db {
public:
  pg_read_model_db(postgres_config cfg, std::unique_ptr<connection> conn)
    : cfg_(std::move(cfg)), conn_(std::move(conn)) {
    // nop
  }

  std::string dialect() const override {
    return "postgres";
  }

  caf::error
  transact(const std::function<caf::error(sql_transaction&)>& fn) override {
    std::lock_guard guard{mtx_};
    if (!conn_->ok()) {
      auto fresh = connection::open(cfg_);
      if (!fresh)
        return std::move(fresh.error());
      conn_ = std::move(*fresh);
      statements_.clear();
    }
    if (auto begin = conn_->exec("BEGIN"); !begin)
      return std::move(begin.error());
    pg_tx tx{*conn_, statements_};
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
    if (auto commit = conn_->exec("COMMIT"); !commit) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return std::move(commit.error());
    }
    return caf::none;
  }

  caf::expected<checkpoint>
  save_checkpoint(sql_transaction& tx, const checkpoint& cp,
                  std::optional<int64_t> expected_position) override {
    if (expected_position)
      return detail::pg::save_checkpoint_if(own(tx), cp, *expected_position);
    return detail::pg::save_checkpoint(own(tx), cp);
  }

  caf::expected<int64_t> add_dead_letter(sql_transaction& tx,
                                         const dead_letter& e) override {
    return detail::pg::add_dead_letter(own(tx), e);
  }

  caf::expected<bool> mark_processed(sql_transaction& tx,
                                     const std::string& projection,
                                     const uuid& event_id) override {
    return detail::pg::mark_processed(own(tx), projection, event_id);
  }

  checkpoint_store_ptr checkpoints() override {
    std::lock_guard guard{mtx_};
    if (!checkpoints_)
      if (auto res = make_postgres_checkpoint_store(cfg_))
        checkpoints_ = *res;
    return checkpoints_;
  }

  dead_letter_store_ptr dead_letters() override {
    std::lock_guard guard{mtx_};
    if (!dead_letters_)
      if (auto res = make_postgres_dead_letter_store(cfg_))
        dead_letters_ = *res;
    return dead_letters_;
  }

  caf::expected<read_model_db_ptr>
  open_shadow(const std::string& tag) override {
    if (auto err = check_name(tag))
      return err;
    std::string schema;
    {
      std::lock_guard guard{mtx_};
      if (auto err = reconnect())
        return err;
      auto current = conn_->exec("SELECT current_schema()::text");
      if (!current)
        return std::move(current.error());
      schema = current->text(0, 0) + "_" + tag;
      auto q = quote(schema);
      if (!q)
        return std::move(q.error());
      auto fresh = conn_->exec("DROP SCHEMA IF EXISTS " + *q
                               + " CASCADE; CREATE SCHEMA " + *q);
      if (!fresh)
        return std::move(fresh.error());
    }
    auto cfg = cfg_;
    cfg.schema = schema;
    cfg.migrate = true;
    return make_postgres_read_model_db(cfg);
  }

  caf::error replace_from(read_model_db& shadow,
                          const std::vector<std::string>& tables,
                          const std::string& name) override {
    auto* other = dynamic_cast<pg_read_model_db*>(&shadow);
    if (other == nullptr || other->cfg_.schema.empty())
      return make_store_error(store_errc::invalid_argument,
                              "the shadow is not a PostgreSQL read-model "
                              "database from open_shadow");
    for (const auto& t : tables)
      if (auto err = check_name(t))
        return err;
    std::lock_guard guard{mtx_};
    if (auto err = reconnect())
      return err;
    auto from = quote(other->cfg_.schema);
    if (!from)
      return std::move(from.error());
    std::string sql = "BEGIN;";
    for (const auto& t : tables)
      sql += " DELETE FROM " + t + "; INSERT INTO " + t + " SELECT * FROM "
             + *from + "." + t + ";";
    auto literal = [&](const std::string& x) {
      std::string r = "'";
      for (char c : x) {
        if (c == '\'')
          r += '\'';
        r += c;
      }
      return r + "'";
    };
    auto n = literal(name);
    constexpr const char* dl_columns
      = "projection_name, event_id, global_position, event_type,"
        " event_data, error_message, error_context, retry_count, status,"
        " first_failed_at, last_failed_at, resolved_at, resolved_by";
    sql += " DELETE FROM projection_checkpoints WHERE projection_name = " + n
           + "; INSERT INTO projection_checkpoints SELECT * FROM " + *from
           + ".projection_checkpoints WHERE projection_name = " + n
           + "; DELETE FROM dead_letter_queue WHERE projection_name = " + n
           + " AND status <> 'resolved'; INSERT INTO dead_letter_queue ("
           + dl_columns + ") SELECT " + dl_columns + " FROM " + *from
           + ".dead_letter_queue WHERE projection_name = " + n
           + " ON CONFLICT (projection_name, event_id) DO UPDATE SET"
             " global_position = EXCLUDED.global_position,"
             " event_type = EXCLUDED.event_type,"
             " event_data = EXCLUDED.event_data,"
             " error_message = EXCLUDED.error_message,"
             " error_context = EXCLUDED.error_context,"
             " retry_count = EXCLUDED.retry_count, status = EXCLUDED.status,"
             " first_failed_at = EXCLUDED.first_failed_at,"
             " last_failed_at = EXCLUDED.last_failed_at,"
             " resolved_at = EXCLUDED.resolved_at,"
             " resolved_by = EXCLUDED.resolved_by; COMMIT";
    auto res = conn_->exec(sql);
    if (!res) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return std::move(res.error());
    }
    return caf::none;
  }

  caf::error discard() override {
    std::lock_guard guard{mtx_};
    checkpoints_.reset();
    dead_letters_.reset();
    if (cfg_.schema.empty())
      return make_store_error(store_errc::invalid_argument,
                              "only a shadow read-model database is discarded");
    if (auto err = reconnect())
      return err;
    auto q = quote(cfg_.schema);
    if (!q)
      return std::move(q.error());
    auto res = conn_->exec("DROP SCHEMA IF EXISTS " + *q + " CASCADE");
    conn_.reset();
    return res ? caf::error{} : std::move(res.error());
  }

private:
  caf::error reconnect() {
    if (conn_ && conn_->ok())
      return caf::none;
    auto fresh = connection::open(cfg_);
    if (!fresh)
      return std::move(fresh.error());
    conn_ = std::move(*fresh);
    statements_.clear();
    return caf::none;
  }

  caf::expected<std::string> quote(const std::string& ident) {
    char* q = PQescapeIdentifier(conn_->handle(), ident.data(), ident.size());
    if (q == nullptr)
      return make_store_error(store_errc::invalid_argument,
                              "cannot quote " + ident);
    std::string result{q};
    PQfreemem(q);
    return result;
  }

  /// Table names and tags take part in SQL text (schema names are at
  /// most 63 bytes: the live schema's name and a tag of 40 fit).
  static caf::error check_name(const std::string& x) {
    return detail::check_plain_sql_name(x, 40);
  }

  static connection& own(sql_transaction& tx) {
    return static_cast<pg_tx&>(tx).conn();
  }

  postgres_config cfg_;
  std::mutex mtx_;
  std::unique_ptr<connection> conn_;
  statement_cache statements_;
  checkpoint_store_ptr checkpoints_;
  dead_letter_store_ptr dead_letters_;
};

} // namespace

caf::expected<read_model_db_ptr>
make_postgres_read_model_db(const postgres_config& cfg) {
  if (cfg.migrate)
    if (auto err = postgres_migrate(cfg))
      return err;
  auto conn = connection::open(cfg);
  if (!conn)
    return std::move(conn.error());
  auto store_cfg = cfg;
  store_cfg.migrate = false;
  return read_model_db_ptr{
    std::make_shared<pg_read_model_db>(store_cfg, std::move(*conn))};
}

} // namespace es
