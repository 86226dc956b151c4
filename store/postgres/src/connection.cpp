#include "connection.hpp"

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <endian.h>

#include <cstring>

namespace es::detail::pg {

std::string sqlstate(const PGresult* res) {
  if (res == nullptr)
    return {};
  const char* code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "";
}

namespace {

std::string trim(std::string x) {
  while (!x.empty() && (x.back() == '\n' || x.back() == ' '))
    x.pop_back();
  return x;
}

caf::error from_state(const std::string& state, std::string msg) {
  auto starts = [&](const char* prefix) {
    return state.rfind(prefix, 0) == 0;
  };
  if (state == "40001" || state == "40P01")
    return make_store_error(store_errc::serialization_failure, std::move(msg));
  if (state == "57014")
    return make_store_error(store_errc::timeout, std::move(msg));
  if (starts("08") || state == "57P01" || state == "57P02" || state == "57P03"
      || state == "53300")
    return make_store_error(store_errc::connection_failed, std::move(msg));
  if (starts("28"))
    return make_store_error(store_errc::authentication_failed, std::move(msg));
  if (state == "3D000")
    return make_store_error(store_errc::unknown_database, std::move(msg));
  if (state == "42501")
    return make_store_error(store_errc::permission_denied, std::move(msg));
  if (starts("22"))
    return make_store_error(store_errc::invalid_argument, std::move(msg));
  if (starts("53") || state == "55P03")
    return make_store_error(store_errc::storage_busy, std::move(msg));
  return make_store_error(store_errc::internal, std::move(msg));
}

/// Passes a server notice to the library's log: warnings and worse (a
/// FATAL message of a terminated session arrives this way) as warnings,
/// the rest as debug output.
void route_notice(void*, const char* message) {
  std::string text = trim(message == nullptr ? "" : message);
  auto serious = text.rfind("WARNING", 0) == 0 || text.rfind("ERROR", 0) == 0
                 || text.rfind("FATAL", 0) == 0 || text.rfind("PANIC", 0) == 0;
  log(serious ? log_level::warning : log_level::debug, "postgres: " + text);
}

} // namespace

caf::error translate(const PGresult* res, PGconn* conn, std::string_view what) {
  std::string msg{what};
  msg += ": ";
  if (res != nullptr && PQresultErrorMessage(res)[0] != '\0')
    msg += trim(PQresultErrorMessage(res));
  else if (conn != nullptr)
    msg += trim(PQerrorMessage(conn));
  auto state = sqlstate(res);
  if (!state.empty())
    return from_state(state, std::move(msg) + " [" + state + "]");
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK)
    return make_store_error(store_errc::connection_failed, std::move(msg));
  return make_store_error(store_errc::internal, std::move(msg));
}

// -- result -------------------------------------------------------------------

int64_t result::int8(int row, int col) const {
  uint64_t x = 0;
  std::memcpy(&x, PQgetvalue(r_, row, col), 8);
  return static_cast<int64_t>(be64toh(x));
}

int32_t result::int4(int row, int col) const {
  uint32_t x = 0;
  std::memcpy(&x, PQgetvalue(r_, row, col), 4);
  return static_cast<int32_t>(be32toh(x));
}

int16_t result::int2(int row, int col) const {
  uint16_t x = 0;
  std::memcpy(&x, PQgetvalue(r_, row, col), 2);
  return static_cast<int16_t>(be16toh(x));
}

bool result::boolean(int row, int col) const {
  return PQgetvalue(r_, row, col)[0] != 0;
}

uuid result::uuid_at(int row, int col) const {
  uuid x;
  if (PQgetlength(r_, row, col) == 16)
    std::memcpy(x.bytes().data(), PQgetvalue(r_, row, col), 16);
  return x;
}

std::optional<uuid> result::opt_uuid(int row, int col) const {
  if (is_null(row, col))
    return std::nullopt;
  return uuid_at(row, col);
}

timestamp result::time_at(int row, int col) const {
  // Binary timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
  return timestamp{
    std::chrono::microseconds{int8(row, col) + pg_epoch_offset_us}};
}

std::string result::text(int row, int col) const {
  return std::string(PQgetvalue(r_, row, col),
                     static_cast<size_t>(PQgetlength(r_, row, col)));
}

std::string_view result::view(int row, int col) const {
  return std::string_view(PQgetvalue(r_, row, col),
                          static_cast<size_t>(PQgetlength(r_, row, col)));
}

// -- params -------------------------------------------------------------------

void params::add_array(const std::vector<std::optional<std::string_view>>& xs) {
  std::string lit;
  size_t bytes = 2;
  for (const auto& x : xs)
    bytes += (x ? x->size() + 3 : 5);
  lit.reserve(bytes + bytes / 16);
  lit += '{';
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      lit += ',';
    if (!xs[i]) {
      lit += "NULL";
      continue;
    }
    lit += '"';
    for (char c : *xs[i]) {
      if (c == '"' || c == '\\')
        lit += '\\';
      lit += c;
    }
    lit += '"';
  }
  lit += '}';
  add(std::move(lit));
}

void params::add_binary_array(
  uint32_t element_oid,
  const std::vector<std::optional<std::string_view>>& xs) {
  std::string out;
  size_t bytes = 20;
  bool has_null = false;
  for (const auto& x : xs) {
    bytes += 4 + (x ? x->size() : 0);
    has_null = has_null || !x;
  }
  out.reserve(bytes);
  auto put32 = [&](int32_t v) {
    uint32_t be = htobe32(static_cast<uint32_t>(v));
    out.append(reinterpret_cast<const char*>(&be), 4);
  };
  // Header: dimensions, null flag, element type; then size and lower bound
  // of the one dimension (an empty array has no dimension).
  put32(xs.empty() ? 0 : 1);
  put32(has_null ? 1 : 0);
  put32(static_cast<int32_t>(element_oid));
  if (!xs.empty()) {
    put32(static_cast<int32_t>(xs.size()));
    put32(1);
  }
  for (const auto& x : xs) {
    if (!x) {
      put32(-1);
      continue;
    }
    put32(static_cast<int32_t>(x->size()));
    out.append(x->data(), x->size());
  }
  add_binary(std::move(out));
}

std::vector<int> params::lengths() const {
  std::vector<int> result;
  result.reserve(values_.size());
  for (const auto& v : values_)
    result.push_back(static_cast<int>(v.size()));
  return result;
}

std::vector<int> params::formats() const {
  std::vector<int> result;
  result.reserve(values_.size());
  for (bool b : binary_)
    result.push_back(b ? 1 : 0);
  return result;
}

std::string binary_int4(int32_t x) {
  uint32_t be = htobe32(static_cast<uint32_t>(x));
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

std::string binary_int8(int64_t x) {
  uint64_t be = htobe64(static_cast<uint64_t>(x));
  return std::string(reinterpret_cast<const char*>(&be), 8);
}

std::string binary_uuid(const uuid& x) {
  return std::string(reinterpret_cast<const char*>(x.bytes().data()), 16);
}

std::vector<const char*> params::pointers() const {
  std::vector<const char*> result;
  result.reserve(values_.size());
  for (size_t i = 0; i < values_.size(); ++i)
    result.push_back(nulls_[i] ? nullptr : values_[i].c_str());
  return result;
}

// -- connection ---------------------------------------------------------------

caf::expected<std::unique_ptr<connection>>
connection::open(const postgres_config& cfg, std::string_view extra_setup) {
  // Keyword/value arrays let the DSN (string or URI) win over our defaults
  // and leave everything else to libpq's environment variables.
  std::string timeout = std::to_string(cfg.connect_timeout.count());
  const char* keys[]
    = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* vals[]
    = {timeout.c_str(), cfg.application_name.c_str(), cfg.dsn.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, vals, 1);
  if (conn == nullptr)
    return make_store_error(store_errc::connection_failed,
                            "libpq could not allocate a connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = trim(PQerrorMessage(conn));
    PQfinish(conn);
    if (msg.find("password authentication failed") != std::string::npos
        || msg.find("no pg_hba.conf entry") != std::string::npos
        || msg.find("authentication failed") != std::string::npos)
      return make_store_error(store_errc::authentication_failed,
                              "cannot connect to PostgreSQL: " + msg);
    if (msg.find("database") != std::string::npos
        && msg.find("does not exist") != std::string::npos)
      return make_store_error(store_errc::unknown_database,
                              "cannot connect to PostgreSQL: " + msg);
    return make_store_error(store_errc::connection_failed,
                            "cannot connect to PostgreSQL: " + msg);
  }
  // Notices (and the FATAL message of a session the server ends while it
  // is idle) go to the library's log, not to the application's stderr.
  PQsetNoticeProcessor(conn, route_notice, nullptr);
  std::unique_ptr<connection> result{new connection(conn)};
  result->backend_pid_ = PQbackendPID(conn);
  std::string setup = "SET client_min_messages = warning;";
  setup += extra_setup;
  if (!cfg.schema.empty()) {
    char* quoted
      = PQescapeIdentifier(conn, cfg.schema.data(), cfg.schema.size());
    if (quoted == nullptr)
      return make_store_error(store_errc::invalid_argument,
                              "cannot quote schema name " + cfg.schema);
    setup += " SET search_path TO ";
    setup += quoted;
    setup += ";";
    PQfreemem(quoted);
  }
  if (cfg.statement_timeout.count() > 0)
    setup += " SET statement_timeout = "
             + std::to_string(cfg.statement_timeout.count()) + ";";
  // The tenant the row-level security policies key on (a uuid's text needs
  // no quoting).
  if (cfg.session_tenant)
    setup += " SELECT set_config('es.tenant_id', '"
             + cfg.session_tenant->to_string() + "', false);";
  // The session's start time tells this backend apart from a later one
  // that reuses its process id (see `backend_start`).
  setup += " SELECT backend_start::text FROM pg_stat_activity"
           " WHERE pid = pg_backend_pid()";
  auto res = result->exec(setup);
  if (!res)
    return std::move(res.error());
  if (res->rows() > 0)
    result->backend_start_ = res->text(0, 0);
  return result;
}

connection::~connection() {
  PQfinish(conn_);
}

caf::expected<result> connection::exec(const std::string& sql) {
  result res{PQexec(conn_, sql.c_str())};
  auto status = PQresultStatus(res.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return res;
  return translate(res.get(), conn_, "query failed");
}

caf::error connection::ensure_prepared(const char* name, const std::string& sql,
                                       int nparams) {
  if (prepared_.count(name) > 0)
    return caf::none;
  result res{PQprepare(conn_, name, sql.c_str(), nparams, nullptr)};
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK)
    return translate(res.get(), conn_, std::string{"cannot prepare "} + name);
  prepared_.insert(name);
  return caf::none;
}

caf::expected<result> connection::run(const char* name, const std::string& sql,
                                      const params& ps, bool binary_result) {
  if (auto err = ensure_prepared(name, sql, static_cast<int>(ps.size())))
    return err;
  auto ptrs = ps.pointers();
  auto lengths = ps.lengths();
  auto formats = ps.formats();
  result res{PQexecPrepared(conn_, name, static_cast<int>(ps.size()),
                            ptrs.data(), lengths.data(), formats.data(),
                            binary_result ? 1 : 0)};
  auto status = PQresultStatus(res.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return res;
  return translate(res.get(), conn_, std::string{"statement "} + name);
}

// -- pipelines
// -----------------------------------------------------------------

pipeline_result pipeline(connection& conn, std::vector<call>& calls) {
  pipeline_result out;
  auto* pg = conn.handle();
  for (auto& c : calls)
    if (auto err
        = conn.ensure_prepared(c.name, *c.sql, static_cast<int>(c.ps.size()))) {
      // Nothing of this pipeline ran. With the session alive the server
      // refused the statement itself: like an error it reports for a
      // statement, nothing open can commit any more (a transaction block
      // is aborted by the failed prepare).
      out.error = std::move(err);
      out.server_error = conn.ok();
      return out;
    }
  if (PQenterPipelineMode(pg) != 1) {
    out.error = translate(nullptr, pg, "cannot enter pipeline mode");
    return out;
  }
  caf::error failure;
  size_t sent = 0;
  for (auto& c : calls) {
    auto ptrs = c.ps.pointers();
    auto lengths = c.ps.lengths();
    auto formats = c.ps.formats();
    if (PQsendQueryPrepared(pg, c.name, static_cast<int>(c.ps.size()),
                            ptrs.data(), lengths.data(), formats.data(),
                            c.binary ? 1 : 0)
        != 1) {
      failure = translate(nullptr, pg, "cannot send statement");
      break;
    }
    ++sent;
  }
  bool synced = PQpipelineSync(pg) == 1;
  if (!synced && !failure)
    failure = translate(nullptr, pg, "cannot sync pipeline");
  out.results.reserve(sent);
  for (size_t k = 0; k < sent; ++k) {
    result r{PQgetResult(pg)};
    if (r.get() == nullptr) {
      if (!failure)
        failure = translate(nullptr, pg, "result lost");
      break;
    }
    auto status = PQresultStatus(r.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && !failure) {
      failure = translate(r.get(), pg, calls[k].name);
      out.state = sqlstate(r.get());
      // An error the server reported for a statement before the commit
      // point: its transaction cannot commit any more.
      out.server_error = !out.state.empty() && !calls[k].commits;
    }
    out.results.push_back(std::move(r));
    result terminator{PQgetResult(pg)};
    static_cast<void>(terminator);
  }
  // Drain up to the sync point (two nulls in a row: nothing more comes).
  bool reached_sync = false;
  for (int nulls = 0; synced && nulls < 2 && PQstatus(pg) == CONNECTION_OK;) {
    result r{PQgetResult(pg)};
    if (r.get() == nullptr) {
      ++nulls;
      continue;
    }
    nulls = 0;
    auto status = PQresultStatus(r.get());
    if (status == PGRES_PIPELINE_SYNC) {
      reached_sync = true;
      break;
    }
    if (status == PGRES_FATAL_ERROR && !failure)
      failure = translate(r.get(), pg, "pipeline failed");
  }
  if (PQstatus(pg) == CONNECTION_OK)
    PQexitPipelineMode(pg);
  else if (!failure)
    failure = translate(nullptr, pg, "connection lost");
  if (!failure && !reached_sync)
    failure = translate(nullptr, pg, "pipeline did not finish");
  if (failure) {
    out.error = std::move(failure);
    out.in_doubt = sent > 0 && !out.server_error;
  }
  return out;
}

} // namespace es::detail::pg
