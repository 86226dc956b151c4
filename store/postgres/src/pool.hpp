// A small connection pool with reconnect backoff.
#pragma once

#include <caf/expected.hpp>

#include "connection.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

namespace es::detail::pg {

/// Hands out connections to one thread at a time. Broken connections are
/// dropped on return; after a failed connect, new attempts wait for a
/// backoff that doubles up to the configured maximum (calls meanwhile fail
/// fast with the last error, which is retryable).
class pool {
public:
  /// `session_setup`: statements run on each new connection (see
  /// `connection::open`).
  pool(postgres_config cfg, size_t max_idle, std::string session_setup = {});

  /// Returns a connection to the pool when it goes out of scope.
  class lease {
  public:
    lease(pool* owner, std::unique_ptr<connection> conn)
      : owner_(owner), conn_(std::move(conn)) {
      // nop
    }
    lease(lease&&) = default;
    lease& operator=(lease&&) = default;
    ~lease() {
      if (conn_)
        owner_->give_back(std::move(conn_));
    }
    connection& operator*() const {
      return *conn_;
    }
    connection* operator->() const {
      return conn_.get();
    }

  private:
    pool* owner_;
    std::unique_ptr<connection> conn_;
  };

  caf::expected<lease> take();

  const postgres_config& config() const {
    return cfg_;
  }

private:
  void give_back(std::unique_ptr<connection> conn);

  postgres_config cfg_;
  size_t max_idle_;
  std::string session_setup_;
  std::mutex mtx_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
  caf::error last_error_;
};

} // namespace es::detail::pg
