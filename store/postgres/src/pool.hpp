// A small connection pool with reconnect backoff.
#pragma once

#include <caf/expected.hpp>

#include "connection.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace es::detail::pg {

/// Hands out connections to one thread at a time. Broken connections are
/// dropped on return; after a failed connect, new attempts wait for a
/// backoff that doubles up to the configured maximum (calls meanwhile fail
/// fast with the last error, which is retryable).
///
/// With `max_open`, at most that many connections are in use (or being
/// opened) at once: `take` waits for one to come back up to
/// `read_wait_timeout`, then fails with `pool_exhausted`. A thread must not
/// hold two leases of a bounded pool.
class pool {
public:
  /// `session_setup`: statements run on each new connection (see
  /// `connection::open`). `max_open` 0: no bound.
  pool(postgres_config cfg, size_t max_idle, std::string session_setup = {},
       size_t max_open = 0);

  /// What the pool holds now.
  struct usage_info {
    /// Connections open: idle plus in use.
    size_t open = 0;
    size_t in_use = 0;
    /// Callers waiting for a connection.
    size_t waiting = 0;
    /// Callers that gave up waiting, since the start.
    uint64_t timed_out = 0;
  };

  usage_info usage() const;

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

  /// Called with `mtx_` held: one connection fewer in use.
  void release_slot();

  postgres_config cfg_;
  size_t max_idle_;
  std::string session_setup_;
  size_t max_open_;
  mutable std::mutex mtx_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<connection>> idle_;
  size_t in_use_ = 0;
  size_t waiting_ = 0;
  uint64_t timed_out_ = 0;
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
  caf::error last_error_;
};

} // namespace es::detail::pg
