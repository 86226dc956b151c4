#include "pool.hpp"

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

namespace es::detail::pg {

pool::pool(postgres_config cfg, size_t max_idle, std::string session_setup)
  : cfg_(std::move(cfg)), max_idle_(max_idle),
    session_setup_(std::move(session_setup)) {
  // nop
}

caf::expected<pool::lease> pool::take() {
  {
    std::lock_guard guard{mtx_};
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->ok())
        return lease{this, std::move(conn)};
    }
    if (std::chrono::steady_clock::now() < retry_after_)
      return make_store_error(store_errc::connection_failed,
                              "not reconnecting yet after: "
                                + error_description(last_error_));
  }
  auto conn = connection::open(cfg_, session_setup_);
  std::lock_guard guard{mtx_};
  if (!conn) {
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
  if (!conn->ok())
    return;
  // A connection left inside a transaction (after an error) is reset.
  if (PQtransactionStatus(conn->handle()) != PQTRANS_IDLE)
    static_cast<void>(conn->exec("ROLLBACK"));
  std::lock_guard guard{mtx_};
  if (idle_.size() < max_idle_)
    idle_.push_back(std::move(conn));
}

} // namespace es::detail::pg
