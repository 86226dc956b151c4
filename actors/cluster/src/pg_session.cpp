#include "pg_session.hpp"

#include "es/store/errors.hpp"

#include <cstdlib>

namespace es::cluster::detail {

std::string text(const result_ptr& r, int row, int col) {
  return PQgetisnull(r.get(), row, col) ? std::string{}
                                        : PQgetvalue(r.get(), row, col);
}

double number(const result_ptr& r, int row, int col) {
  return PQgetisnull(r.get(), row, col)
           ? 0.0
           : std::strtod(PQgetvalue(r.get(), row, col), nullptr);
}

caf::error pg_session::connect(const std::string& dsn,
                               const std::string& app_name,
                               std::chrono::seconds connect_timeout,
                               std::chrono::milliseconds idle_timeout) {
  close();
  auto timeout = std::to_string(std::max<int64_t>(2, connect_timeout.count()));
  const char* keys[]
    = {"dbname", "application_name", "connect_timeout", nullptr};
  const char* values[]
    = {dsn.c_str(), app_name.c_str(), timeout.c_str(), nullptr};
  // expand_dbname = 1: `dsn` may be a whole connection string or URI.
  conn_ = PQconnectdbParams(keys, values, 1);
  if (PQstatus(conn_) != CONNECTION_OK) {
    auto why = std::string{PQerrorMessage(conn_)};
    close();
    return make_store_error(store_errc::connection_failed,
                            "cluster session: " + why);
  }
  std::string setup = "SET client_min_messages = warning";
  if (idle_timeout.count() > 0)
    setup
      += "; SET idle_session_timeout = " + std::to_string(idle_timeout.count());
  if (auto res = exec(setup); !res)
    return std::move(res.error());
  return caf::none;
}

void pg_session::close() {
  if (conn_ != nullptr)
    PQfinish(conn_);
  conn_ = nullptr;
}

caf::expected<result_ptr>
pg_session::exec(const std::string& sql,
                 const std::vector<std::string>& params) {
  if (conn_ == nullptr)
    return make_store_error(store_errc::connection_failed,
                            "cluster session is closed");
  std::vector<const char*> ptrs;
  for (const auto& p : params)
    ptrs.push_back(p.c_str());
  result_ptr r{params.empty()
                 ? PQexec(conn_, sql.c_str())
                 : PQexecParams(conn_, sql.c_str(),
                                static_cast<int>(ptrs.size()), nullptr,
                                ptrs.data(), nullptr, nullptr, 0)};
  auto status = PQresultStatus(r.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return r;
  auto why = std::string{PQresultErrorMessage(r.get())};
  if (why.empty())
    why = PQerrorMessage(conn_);
  while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
    why.pop_back();
  if (PQstatus(conn_) != CONNECTION_OK)
    return make_store_error(store_errc::connection_failed,
                            "cluster session: " + why);
  return make_store_error(store_errc::internal, "cluster query failed: " + why);
}

} // namespace es::cluster::detail
