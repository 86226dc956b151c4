// The PostgreSQL key store: one connection of its own, used one call at a
// time.
#include "es/shred/postgres_key_store.hpp"

#include "es/shred/errors.hpp"
#include "es/store/errors.hpp"

#include "crypto.hpp"
#include <libpq-fe.h>

#include <cstring>
#include <memory>
#include <mutex>

namespace es {

namespace {

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS es_subject_keys (
  subject text PRIMARY KEY,
  key_id text NOT NULL,
  key_data bytea NOT NULL,
  wrapped boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS es_subject_streams (
  subject text NOT NULL,
  aggregate_type text NOT NULL,
  aggregate_id uuid NOT NULL,
  PRIMARY KEY (subject, aggregate_type, aggregate_id)
);
)sql";

using result_ptr = std::unique_ptr<PGresult, decltype(&PQclear)>;

caf::error pg_error(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string text{what};
  text += ": ";
  text += res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn);
  while (!text.empty() && text.back() == '\n')
    text.pop_back();
  const char* state
    = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (PQstatus(conn) != CONNECTION_OK || state == nullptr)
    return make_store_error(store_errc::connection_failed, std::move(text));
  std::string_view code{state};
  if (code.substr(0, 2) == "28")
    return make_store_error(store_errc::authentication_failed, std::move(text));
  if (code == "3D000")
    return make_store_error(store_errc::unknown_database, std::move(text));
  if (code == "42501")
    return make_store_error(store_errc::permission_denied, std::move(text));
  if (code == "40001" || code == "40P01")
    return make_store_error(store_errc::serialization_failure, std::move(text));
  if (code == "57014")
    return make_store_error(store_errc::timeout, std::move(text));
  return make_store_error(store_errc::io_error, std::move(text));
}

caf::error open_error(PGconn* conn, std::string_view what) {
  std::string text{what};
  text += ": ";
  text += PQerrorMessage(conn);
  while (!text.empty() && text.back() == '\n')
    text.pop_back();
  if (text.find("password authentication failed") != std::string::npos)
    return make_store_error(store_errc::authentication_failed, std::move(text));
  if (text.find("does not exist") != std::string::npos
      && text.find("database") != std::string::npos)
    return make_store_error(store_errc::unknown_database, std::move(text));
  return make_store_error(store_errc::connection_failed, std::move(text));
}

/// `{"a","b"}`: a text[] literal.
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

class postgres_key_store final : public key_store {
public:
  explicit postgres_key_store(postgres_key_store_config config)
    : config_(std::move(config)) {
    // nop
  }

  ~postgres_key_store() override {
    if (conn_ != nullptr)
      PQfinish(conn_);
  }

  std::string name() const override {
    return "postgres";
  }

  /// Connects (again) if needed and creates the tables.
  caf::error connect() {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK)
      return caf::none;
    if (conn_ != nullptr) {
      PQfinish(conn_);
      conn_ = nullptr;
    }
    auto timeout = std::to_string(config_.connect_timeout.count());
    const char* keys[]
      = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[]
      = {timeout.c_str(), "eventsource-keys", config_.dsn.c_str(), nullptr};
    conn_ = PQconnectdbParams(keys, values, 1);
    if (PQstatus(conn_) != CONNECTION_OK)
      return open_error(conn_, "connecting to the key store");
    if (auto res = exec("SET client_min_messages = warning"); !res)
      return std::move(res.error());
    if (!config_.schema.empty()) {
      auto* quoted = PQescapeIdentifier(conn_, config_.schema.c_str(),
                                        config_.schema.size());
      if (quoted == nullptr)
        return open_error(conn_, "quoting the schema name");
      std::string sql = "SET search_path TO ";
      sql += quoted;
      PQfreemem(quoted);
      if (auto res = exec(sql); !res)
        return std::move(res.error());
    }
    if (!schema_ready_) {
      // Concurrent first users create the tables one after the other.
      std::string sql = "BEGIN; SELECT pg_advisory_xact_lock(hashtext("
                        "'es.shred.schema/' || current_schema())); ";
      sql += schema_sql;
      sql += "COMMIT;";
      if (auto res = exec(sql); !res) {
        static_cast<void>(exec("ROLLBACK"));
        return std::move(res.error());
      }
      schema_ready_ = true;
    }
    return caf::none;
  }

  caf::expected<subject_key>
  get_or_create_key(const std::string& subject) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    if (auto err = connect())
      return err;
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto res = query("SELECT key_id, encode(key_data, 'hex'), wrapped FROM "
                       "es_subject_keys WHERE subject = $1",
                       {subject});
      if (!res)
        return std::move(res.error());
      if (PQntuples(res->get()) > 0)
        return key_of(res->get(), 0, 0, subject);
      auto key = shred_detail::generate_key();
      auto stored = shred_detail::to_stored(master_(), subject, key);
      auto hex = shred_detail::to_hex(stored.data);
      auto ins = query(
        "INSERT INTO es_subject_keys (subject, key_id, "
        "key_data, wrapped) VALUES ($1, $2, decode($3, 'hex'), "
        "$4) ON CONFLICT (subject) DO NOTHING",
        {subject, stored.key_id, hex, stored.wrapped ? "true" : "false"});
      shred_detail::wipe(stored.data.data(), stored.data.size());
      shred_detail::wipe(hex.data(), hex.size());
      if (!ins)
        return std::move(ins.error());
      if (std::strcmp(PQcmdTuples(ins->get()), "1") == 0)
        return key;
    }
    return make_store_error(store_errc::internal,
                            "a subject key was neither found nor created");
  }

  caf::expected<std::map<std::string, subject_key>>
  get_keys(const std::vector<std::string>& subjects) override {
    std::map<std::string, subject_key> result;
    if (subjects.empty())
      return result;
    std::lock_guard guard{mtx_};
    if (auto err = connect())
      return err;
    auto res = query("SELECT key_id, encode(key_data, 'hex'), wrapped, subject "
                     "FROM es_subject_keys WHERE subject = ANY($1::text[])",
                     {text_array(subjects)});
    if (!res)
      return std::move(res.error());
    for (int row = 0; row < PQntuples(res->get()); ++row) {
      std::string subject = PQgetvalue(res->get(), row, 3);
      auto key = key_of(res->get(), row, 0, subject);
      if (!key)
        return std::move(key.error());
      result.emplace(std::move(subject), std::move(*key));
    }
    return result;
  }

  caf::error add_stream(const std::string& subject,
                        const stream_id& stream) override {
    if (subject.empty())
      return empty_subject();
    std::lock_guard guard{mtx_};
    if (auto err = connect())
      return err;
    auto res = query(
      "INSERT INTO es_subject_streams (subject, aggregate_type, "
      "aggregate_id) VALUES ($1, $2, $3::uuid) ON CONFLICT DO "
      "NOTHING",
      {subject, stream.aggregate_type, stream.aggregate_id.to_string()});
    if (!res)
      return std::move(res.error());
    return caf::none;
  }

  caf::expected<std::vector<stream_id>>
  streams(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    if (auto err = connect())
      return err;
    auto res = query("SELECT aggregate_type, aggregate_id::text FROM "
                     "es_subject_streams WHERE subject = $1 ORDER BY 1, 2",
                     {subject});
    if (!res)
      return std::move(res.error());
    return streams_of(res->get(), 0);
  }

  caf::expected<forget_result> forget(const std::string& subject) override {
    std::lock_guard guard{mtx_};
    if (auto err = connect())
      return err;
    // One statement, so the streams and the key go together.
    auto res
      = query("WITH s AS (DELETE FROM es_subject_streams WHERE subject "
              "= $1 RETURNING aggregate_type, aggregate_id::text AS id), "
              "k AS (DELETE FROM es_subject_keys WHERE subject = $1 "
              "RETURNING 1) SELECT (SELECT count(*) FROM k)::text, "
              "s.aggregate_type, s.id FROM (SELECT 1) AS one LEFT JOIN "
              "s ON true ORDER BY 2, 3",
              {subject});
    if (!res)
      return std::move(res.error());
    forget_result result;
    auto* r = res->get();
    result.key_deleted
      = PQntuples(r) > 0 && std::string_view{PQgetvalue(r, 0, 0)} != "0";
    for (int row = 0; row < PQntuples(r); ++row) {
      if (PQgetisnull(r, row, 1))
        continue;
      auto id = uuid::parse(PQgetvalue(r, row, 2));
      if (!id)
        return make_store_error(store_errc::corrupt_database,
                                "es_subject_streams holds a bad UUID");
      result.streams.push_back(stream_id{PQgetvalue(r, row, 1), *id});
    }
    return result;
  }

private:
  const std::optional<master_key>& master_() const {
    return config_.master;
  }

  caf::expected<subject_key> key_of(const PGresult* res, int row, int col,
                                    const std::string& subject) {
    auto data = shred_detail::from_hex(PQgetvalue(res, row, col + 1));
    if (!data)
      return make_shred_error(shred_errc::malformed_ciphertext,
                              "the stored key of subject " + subject
                                + " is not hex");
    shred_detail::stored_key stored{PQgetvalue(res, row, col), std::move(*data),
                                    PQgetvalue(res, row, col + 2)[0] == 't'};
    auto key = shred_detail::from_stored(master_(), subject, stored);
    shred_detail::wipe(stored.data.data(), stored.data.size());
    return key;
  }

  static caf::expected<std::vector<stream_id>> streams_of(const PGresult* r,
                                                          int col) {
    std::vector<stream_id> result;
    for (int row = 0; row < PQntuples(r); ++row) {
      auto id = uuid::parse(PQgetvalue(r, row, col + 1));
      if (!id)
        return make_store_error(store_errc::corrupt_database,
                                "es_subject_streams holds a bad UUID");
      result.push_back(stream_id{PQgetvalue(r, row, col), *id});
    }
    return result;
  }

  caf::expected<result_ptr> exec(const std::string& sql) {
    result_ptr res{PQexec(conn_, sql.c_str()), &PQclear};
    auto status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      return pg_error(conn_, res.get(), "key store");
    return res;
  }

  caf::expected<result_ptr> query(const char* sql,
                                  const std::vector<std::string>& params) {
    std::vector<const char*> values;
    for (const auto& p : params)
      values.push_back(p.c_str());
    result_ptr res{PQexecParams(conn_, sql, static_cast<int>(values.size()),
                                nullptr, values.data(), nullptr, nullptr, 0),
                   &PQclear};
    auto status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      return pg_error(conn_, res.get(), "key store");
    return res;
  }

  static caf::error empty_subject() {
    return make_store_error(store_errc::invalid_argument,
                            "a subject id must not be empty");
  }

  postgres_key_store_config config_;
  std::mutex mtx_;
  PGconn* conn_ = nullptr;
  bool schema_ready_ = false;
};

} // namespace

caf::expected<key_store_ptr>
make_postgres_key_store(postgres_key_store_config config) {
  if (auto err = shred_detail::ensure_sodium())
    return err;
  auto store = std::make_shared<postgres_key_store>(std::move(config));
  if (auto err = store->connect())
    return err;
  return key_store_ptr{std::move(store)};
}

} // namespace es
