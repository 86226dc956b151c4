// A PostgreSQL session of the cluster module (text-format queries), shared
// by the lease keeper and the status reader.
#pragma once

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace es::cluster::detail {

struct result_deleter {
  void operator()(PGresult* r) const {
    PQclear(r);
  }
};

using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// Field `col` of row `row` as text; empty for NULL.
std::string text(const result_ptr& r, int row, int col);

/// Field `col` of row `row` as a number; 0 for NULL.
double number(const result_ptr& r, int row, int col);

class pg_session {
public:
  pg_session() = default;
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  ~pg_session() {
    close();
  }

  bool open() const {
    return conn_ != nullptr;
  }

  /// Connects (waiting at most `connect_timeout`) and, when `idle_timeout`
  /// is positive, sets `idle_session_timeout`: the server then ends the
  /// session when it sits idle that long. Errors: `connection_failed`.
  caf::error connect(const std::string& dsn, const std::string& app_name,
                     std::chrono::seconds connect_timeout,
                     std::chrono::milliseconds idle_timeout = {});

  void close();

  /// Runs `sql` with text parameters; without parameters `sql` may be a
  /// script of several statements. Errors: `connection_failed` when the
  /// session broke, `internal` for a failed statement.
  caf::expected<result_ptr> exec(const std::string& sql,
                                 const std::vector<std::string>& params = {});

private:
  PGconn* conn_ = nullptr;
};

} // namespace es::cluster::detail
