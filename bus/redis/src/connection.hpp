// A blocking connection to a Redis server over hiredis's synchronous API.
#pragma once

#include "es/redis/redis.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "reply.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

// hiredis's context, declared here so that users of this header need no
// hiredis header (hiredis.h declares it the same way).
struct redisContext;

namespace es::detail::redis {

/// One connection to a Redis server, logged in and on its database. Calls
/// block the calling thread until the server answers or the timeout passes:
/// use a connection from a detached actor or a thread of its own, never on
/// CAF's cooperative scheduler. Not thread-safe; movable, not copyable.
///
/// Failures of the transport (`connection_failed`, `timeout`,
/// `protocol_error`) leave the connection broken: hiredis cannot resume a
/// context after an I/O error, and after a timeout a late answer would be
/// taken for the next command's. Every later call then fails fast with
/// `connection_failed`; open a new connection. The server's error replies
/// do not break anything: they arrive as replies of kind `error`.
///
/// Writing to a connection the server closed raises SIGPIPE; calls block
/// SIGPIPE in the calling thread while they run and discard one they
/// caused, so the process needs no SIGPIPE handler (libpq does the same).
class connection {
public:
  /// Connects to `url.host:url.port` within `connect_timeout`, sets
  /// `command_timeout` as the limit of every later call (zero: none), logs
  /// in (AUTH, or the Redis 6 ACL form AUTH user password when the URL names
  /// a user) and selects `url.db`; login and SELECT share one round trip.
  /// Errors: `tls_unsupported` for `rediss://`, `connection_failed` (naming
  /// host:port) when the server is unreachable or hangs up,
  /// `authentication_failed` with the server's message when it refuses the
  /// credentials (or wants some and the URL has none), `timeout`, and
  /// `server_error` (for example a database index out of range).
  [[nodiscard]] static caf::expected<connection>
  open(const redis_url& url, std::chrono::milliseconds connect_timeout,
       std::chrono::milliseconds command_timeout);

  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  /// Sends one command (`args[0]` is its name; arguments are binary-safe)
  /// and waits for its reply. An error reply is a reply of kind `error`, not
  /// a `caf::error`. `timeout` replaces the command timeout for this call
  /// only, which blocking reads need: hiredis applies the socket timeout to
  /// them like to any command, so `XREAD BLOCK 5000` under a 1 s command
  /// timeout would fail with `timeout` (pass more than the BLOCK time; zero
  /// waits without limit). Errors: `connection_failed` (also for a broken
  /// connection), `timeout`, `protocol_error` (also for an empty `args`).
  /// After a transport error the command may or may not have run.
  [[nodiscard]] caf::expected<reply>
  command(std::vector<std::string> args,
          std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  /// Sends all commands and then reads one reply per command, in order: one
  /// round trip whatever their number. Error replies are replies, as for
  /// `command`; the other commands still run. Errors as for `command`,
  /// after which any of the commands may or may not have run. An empty
  /// `commands` sends nothing.
  [[nodiscard]] caf::expected<std::vector<reply>>
  pipeline(const std::vector<std::vector<std::string>>& commands);

  /// Whether a transport error ended this connection (or it was moved
  /// from): every call fails with `connection_failed`.
  bool broken() const noexcept {
    return broken_ || ctx_ == nullptr;
  }

  /// The server as "host:port" ("[::1]:6379" for IPv6), for messages.
  const std::string& endpoint() const noexcept {
    return endpoint_;
  }

  /// The limit of each call unless it passes its own (zero: none).
  std::chrono::milliseconds command_timeout() const noexcept {
    return command_timeout_;
  }

private:
  connection(redisContext* ctx, std::string endpoint,
             std::chrono::milliseconds command_timeout);

  /// Sets the socket timeout; on failure breaks the connection.
  [[nodiscard]] caf::error set_timeout(std::chrono::milliseconds timeout);

  /// Translates the context's error after a failed call of `what` (a
  /// command name; never its arguments, which may hold a password) and
  /// `saved_errno` into an error, and breaks the connection.
  caf::error fail(const std::string& what, int saved_errno);

  /// The error of a call on a broken connection.
  caf::error broken_error() const;

  redisContext* ctx_ = nullptr;
  std::string endpoint_;
  std::chrono::milliseconds command_timeout_;
  /// The socket timeout in effect (the command's or a call's own).
  std::chrono::milliseconds current_timeout_;
  bool broken_ = false;
  /// What broke the connection, for the errors of later calls.
  std::string broken_reason_;
};

} // namespace es::detail::redis
