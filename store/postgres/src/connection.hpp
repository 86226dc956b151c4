// A thin RAII layer over libpq connections and results.
#pragma once

#include "es/postgres/postgres.hpp"
#include "es/store/event.hpp"
#include "es/store/uuid.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace es::detail::pg {

/// Translates a failed result (by SQLSTATE) or a broken connection into a
/// store error: 40001/40P01 -> serialization_failure, 57014 -> timeout,
/// class 08 and shutdown codes -> connection_failed (all retryable),
/// 28xxx -> authentication_failed, 3D000 -> unknown_database, 42501 ->
/// permission_denied, 22xxx -> invalid_argument, others -> internal.
caf::error translate(const PGresult* res, PGconn* conn, std::string_view what);

/// Returns the SQLSTATE of a failed result, or an empty string.
std::string sqlstate(const PGresult* res);

/// Owns a PGresult. Accessors for binary-format results.
class result {
public:
  result() = default;
  explicit result(PGresult* r) : r_(r) {
    // nop
  }
  result(result&& other) noexcept : r_(other.r_) {
    other.r_ = nullptr;
  }
  result& operator=(result&& other) noexcept {
    std::swap(r_, other.r_);
    return *this;
  }
  ~result() {
    if (r_ != nullptr)
      PQclear(r_);
  }

  PGresult* get() const noexcept {
    return r_;
  }

  int rows() const {
    return PQntuples(r_);
  }

  bool is_null(int row, int col) const {
    return PQgetisnull(r_, row, col) != 0;
  }

  int64_t int8(int row, int col) const;
  int32_t int4(int row, int col) const;
  int16_t int2(int row, int col) const;
  bool boolean(int row, int col) const;
  uuid uuid_at(int row, int col) const;
  std::optional<uuid> opt_uuid(int row, int col) const;
  /// A timestamptz in binary format.
  timestamp time_at(int row, int col) const;
  std::string text(int row, int col) const;
  std::string_view view(int row, int col) const;

private:
  PGresult* r_ = nullptr;
};

/// Builds the text parameters of one statement.
class params {
public:
  void add(std::string value) {
    values_.push_back(std::move(value));
    nulls_.push_back(false);
    binary_.push_back(false);
  }
  void add(int64_t x) {
    add(std::to_string(x));
  }
  void add(const uuid& x) {
    add(x.to_string());
  }
  void add(const std::optional<uuid>& x) {
    if (x)
      add(*x);
    else
      add_null();
  }
  void add(bool x) {
    add(std::string{x ? "t" : "f"});
  }
  void add_null() {
    values_.emplace_back();
    nulls_.push_back(true);
    binary_.push_back(false);
  }

  /// Adds a value in PostgreSQL's binary format.
  void add_binary(std::string bytes) {
    values_.push_back(std::move(bytes));
    nulls_.push_back(false);
    binary_.push_back(true);
  }

  /// Adds a one-dimensional array in binary format. Elements are already
  /// in the binary format of the element type `element_oid` (for example
  /// 16 bytes for uuid, 8 big-endian bytes for int8, raw bytes for text);
  /// `nullopt` elements become NULL. No quoting, no parsing on the server.
  void add_binary_array(uint32_t element_oid,
                        const std::vector<std::optional<std::string_view>>& xs);

  /// Adds an array literal from already formatted elements; `nullopt`
  /// elements become NULL. Elements are quoted and escaped.
  void add_array(const std::vector<std::optional<std::string_view>>& xs);

  size_t size() const {
    return values_.size();
  }

  /// Pointers for libpq; valid until the next `add`.
  std::vector<const char*> pointers() const;

  /// Lengths for libpq (used for binary values only).
  std::vector<int> lengths() const;

  /// Formats for libpq: 1 for binary values, 0 for text.
  std::vector<int> formats() const;

private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  std::vector<bool> binary_;
};

/// Element type OIDs of the binary arrays the store sends.
inline constexpr uint32_t int4_oid = 23;
inline constexpr uint32_t int8_oid = 20;
inline constexpr uint32_t text_oid = 25;
inline constexpr uint32_t uuid_oid = 2950;
inline constexpr uint32_t timestamptz_oid = 1184;

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's binary epoch.
inline constexpr int64_t pg_epoch_offset_us = 946'684'800'000'000;

/// Binary encodings of single values (network byte order).
std::string binary_int4(int32_t x);
std::string binary_int8(int64_t x);
std::string binary_uuid(const uuid& x);

/// One libpq connection with its prepared statements. Not thread-safe.
class connection {
public:
  /// Connects and applies session settings. Errors: `connection_failed`,
  /// `authentication_failed`, `unknown_database`.
  /// `extra_setup` holds more statements for the session (each ending with
  /// a semicolon).
  static caf::expected<std::unique_ptr<connection>>
  open(const postgres_config& cfg, std::string_view extra_setup = {});

  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  PGconn* handle() const noexcept {
    return conn_;
  }

  /// Whether the connection is still usable.
  bool ok() const {
    return PQstatus(conn_) == CONNECTION_OK;
  }

  /// Runs a simple query (may hold several statements).
  caf::expected<result> exec(const std::string& sql);

  /// Runs a named statement, preparing it on first use on this connection.
  caf::expected<result> run(const char* name, const std::string& sql,
                            const params& ps, bool binary_result);

  /// Prepares (once) and returns whether `name` is ready.
  caf::error ensure_prepared(const char* name, const std::string& sql,
                             int nparams);

  /// The server's backend process id (kept after the connection broke,
  /// when libpq no longer tells it).
  int backend_pid() const {
    return backend_pid_;
  }

  /// A key of this connection, chosen when it opened: names its writes in
  /// `es_write_marks`.
  const uuid& key() const noexcept {
    return key_;
  }

  /// When the backend started (`pg_stat_activity.backend_start` as text):
  /// with the process id, identifies this session even after it ended.
  const std::string& backend_start() const noexcept {
    return backend_start_;
  }

private:
  explicit connection(PGconn* c) : conn_(c) {
    // nop
  }

  PGconn* conn_;
  int backend_pid_ = 0;
  uuid key_ = uuid::random();
  std::string backend_start_;
  std::unordered_set<std::string> prepared_;
};

// -- pipelines
// -----------------------------------------------------------------

/// One statement of a pipeline.
struct call {
  const char* name;
  const std::string* sql;
  params ps;
  bool binary = true;
  /// This statement is the commit point (`COMMIT`).
  bool commits = false;
};

/// How a pipeline ended.
struct pipeline_result {
  /// One result per statement that answered.
  std::vector<result> results;
  /// The first error, if any.
  caf::error error;
  /// SQLSTATE of the server's first error, if it reported one.
  std::string state;
  /// The server failed a statement before the commit point: the
  /// transaction of the pipeline (its implicit one, or the explicit one it
  /// runs in) cannot commit.
  bool server_error = false;
  /// The pipeline failed after something was sent and without such an
  /// error: if it carried a commit point, the commit may have happened.
  bool in_doubt = false;

  explicit operator bool() const {
    return !error;
  }
};

/// Sends all calls and one sync and collects their results. A statement
/// the server fails makes it skip the rest (`server_error`); a pipeline
/// that breaks once something was sent is `in_doubt`, unless the server
/// failed a statement before the commit point first. A failed `COMMIT`
/// is in doubt too: the commit may have happened before the error.
pipeline_result pipeline(connection& conn, std::vector<call>& calls);

} // namespace es::detail::pg
