#include "pool.hpp"

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

namespace es::detail::pg {

pool::pool(postgres_config cfg, size_t max_idle, std::string session_setup,
           size_t max_open)
  : cfg_(std::move(cfg)), max_idle_(max_idle),
    session_setup_(std::move(session_setup)), max_open_(max_open) {
  // nop
}

pool::usage_info pool::usage() const {
  std::lock_guard guard{mtx_};
  return usage_info{idle_.size() + in_use_, in_use_, waiting_, timed_out_};
}

void pool::release_slot() {
  --in_use_;
  if (max_open_ > 0)
    freed_.notify_one();
}

caf::expected<pool::lease> pool::take() {
  {
    std::unique_lock guard{mtx_};
    if (max_open_ > 0 && in_use_ >= max_open_) {
      ++waiting_;
      auto got = freed_.wait_for(guard, cfg_.read_wait_timeout, [this] {
        return in_use_ < max_open_;
      });
      --waiting_;
      if (!got) {
        ++timed_out_;
        return make_store_error(
          store_errc::pool_exhausted,
          "all " + std::to_string(max_open_)
            + " read connections stayed in use for "
            + std::to_string(cfg_.read_wait_timeout.count())
            + " ms (read_connections, read_wait_timeout)");
      }
    }
    // The slot is this caller's from here: given back by the lease, or
    // below when no connection comes of it.
    ++in_use_;
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->ok())
        return lease{this, std::move(conn)};
    }
    if (std::chrono::steady_clock::now() < retry_after_) {
      release_slot();
      return make_store_error(store_errc::connection_failed,
                              "not reconnecting yet after: "
                                + error_description(last_error_));
    }
  }
  auto conn = connection::open(cfg_, session_setup_);
  std::lock_guard guard{mtx_};
  if (!conn) {
    release_slot();
    // Only failures that a retry can cure start a backoff.
    if (is_retryable(conn.error())) {
      backoff_ = backoff_.count() == 0
                   ? cfg_.reconnect_backoff
                   : std::min(backoff_ * 2, cfg_.max_reconnect_backoff);
      retry_after_ = std::chrono::steady_clock::now() + backoff_;
      last_error_ = conn.error();
    }
    return std::move(conn.error());
  }
  backoff_ = std::chrono::milliseconds{0};
  retry_after_ = {};
  return lease{this, std::move(*conn)};
}

void pool::give_back(std::unique_ptr<connection> conn) {
  // A connection left inside a transaction (after an error) is reset.
  if (conn->ok() && PQtransactionStatus(conn->handle()) != PQTRANS_IDLE)
    static_cast<void>(conn->exec("ROLLBACK"));
  std::lock_guard guard{mtx_};
  release_slot();
  if (conn->ok() && idle_.size() < max_idle_)
    idle_.push_back(std::move(conn));
}

} // namespace es::detail::pg
