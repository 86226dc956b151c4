// A fault-injecting proxy for the PostgreSQL wire protocol: a test puts it
// between libpq and the server and cuts connections at chosen protocol
// messages ("the server committed but the client never saw the reply").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace es::test {

/// One protocol message seen by the proxy.
struct pg_message {
  /// Id of the proxied connection, from 1 in accept order.
  uint64_t connection;
  /// Frontend -> backend when true.
  bool from_client;
  /// The message type byte ('Q', 'P', 'B', 'E', 'S', 'C', 'Z', ...); note
  /// that a byte means different things in the two directions ('S' is Sync
  /// from the client, ParameterStatus from the server). 0 for the untyped
  /// messages: the client's StartupMessage, SSLRequest, GSSENCRequest and
  /// CancelRequest (`body` starts with their int32 code) and the server's
  /// one-byte answer to SSLRequest / GSSENCRequest (`body` is that byte).
  char type;
  /// The payload after the length word; valid only during the rule call.
  std::string_view body;
};

/// What the proxy does with a message.
enum class pg_proxy_action {
  /// Pass it on.
  forward,
  /// Drop it and everything after it, deliver what was forwarded before,
  /// then close both sockets of the connection.
  cut_before,
  /// Pass it on, deliver it, drop everything after it, then close both
  /// sockets of the connection.
  cut_after,
};

/// Decides for every message. The proxy calls it from its threads, one call
/// at a time, in order per connection and direction, until the proxy is
/// destroyed or the rule replaced: what it captures must live that long
/// (clients that close still send messages after the test is done with
/// them). It must not throw (a throwing rule cuts the connection as
/// `cut_before`) and must not block.
using pg_proxy_rule = std::function<pg_proxy_action(const pg_message&)>;

/// Listens on 127.0.0.1 (ephemeral port) and forwards each accepted
/// connection to the upstream server, calling the rule for every message in
/// both directions.
///
/// Thread-safety: every member function may be called from any thread,
/// including from inside a rule.
///
/// Limits: plain TCP only. Should the server accept SSL or GSS encryption
/// (answer 'S' or 'G'), the proxy forwards that connection's bytes unparsed
/// from then on, and the rule sees none of them. A malformed message closes
/// the connection (not counted as a cut).
class pg_proxy {
public:
  /// Starts listening; throws std::runtime_error when it cannot resolve
  /// `upstream_host` (IPv4 preferred), std::system_error when it cannot
  /// listen. Connects upstream per accepted connection; a failure closes
  /// that connection.
  pg_proxy(std::string upstream_host, uint16_t upstream_port);

  /// Stops accepting, cuts all connections, joins all threads. Does not wait
  /// for the server or the clients.
  ~pg_proxy();

  pg_proxy(const pg_proxy&) = delete;
  pg_proxy& operator=(const pg_proxy&) = delete;

  /// The port the proxy listens on (127.0.0.1).
  uint16_t port() const;

  /// `base_dsn` (keyword/value or URI) with host and port pointing at the
  /// proxy. The result is a keyword/value string without `hostaddr` (which
  /// libpq would otherwise connect to instead of `host`). Throws
  /// std::invalid_argument when libpq cannot parse `base_dsn`.
  std::string dsn(const std::string& base_dsn) const;

  /// Replaces the rule. When this returns, no call of the previous rule is
  /// running (unless called from inside it) and none will start.
  void set_rule(pg_proxy_rule rule);

  /// Forwards everything from now on.
  void clear_rule();

  /// Closes every open proxied connection now, without delivering data still
  /// buffered in the proxy.
  void cut_all();

  /// Connections cut by rules or by cut_all; a connection counts once. The
  /// count moves before the sockets close, so a client that sees its
  /// connection lost sees it counted.
  size_t cuts() const;

  /// Connections accepted so far.
  size_t connections() const;

private:
  struct state;
  std::unique_ptr<state> state_;
};

/// A TCP server address.
struct pg_endpoint {
  std::string host;
  uint16_t port = 5432;
};

/// The server that `dsn` names (its first host; `hostaddr` before `host`,
/// then PGHOSTADDR, PGHOST, PGPORT). Throws std::invalid_argument for an
/// unparsable DSN or a Unix-domain socket.
pg_endpoint pg_endpoint_of(const std::string& dsn);

// -- reading messages ---------------------------------------------------------

/// The tag of a backend CommandComplete ("INSERT 0 1", "COMMIT"), else none.
std::optional<std::string_view> pg_command_tag(const pg_message& msg);

/// The SQLSTATE of a backend ErrorResponse, else none.
std::optional<std::string_view> pg_error_sqlstate(const pg_message& msg);

/// The SQL text of a frontend Query or Parse, else none.
std::optional<std::string_view> pg_query_text(const pg_message& msg);

/// The prepared statement a frontend Bind binds ("" for the unnamed one,
/// which PQsendQueryParams uses), else none.
std::optional<std::string_view> pg_bind_statement(const pg_message& msg);

// -- ready-made rules ---------------------------------------------------------

/// How often a ready-made rule cuts; `once` counts over all connections.
enum class pg_rule_shots { once, every_time };

namespace pg_rules {

/// Cuts before the backend's CommandComplete whose tag starts with `tag`.
/// With "COMMIT": the server has committed, the client never learns it.
pg_proxy_rule cut_before_command_complete(std::string tag,
                                          pg_rule_shots shots
                                          = pg_rule_shots::once);

/// Cuts before the first backend ReadyForQuery that follows, on the same
/// connection, a CommandComplete whose tag starts with `tag`. With "INSERT"
/// and an implicit-transaction pipeline: the server committed at the Sync.
pg_proxy_rule cut_before_ready_after(std::string tag,
                                     pg_rule_shots shots = pg_rule_shots::once);

/// Cuts before forwarding the frontend's Sync that follows, on the same
/// connection, a Bind of the prepared statement `statement` ("" for the
/// unnamed one). The server has the statement but never commits it.
pg_proxy_rule cut_before_sync_after_bind(std::string statement,
                                         pg_rule_shots shots
                                         = pg_rule_shots::once);

/// Cuts after forwarding a backend ErrorResponse whose SQLSTATE starts with
/// `sqlstate` ("23505", or a class such as "23").
pg_proxy_rule cut_after_error(std::string sqlstate,
                              pg_rule_shots shots = pg_rule_shots::once);

/// Cuts before forwarding the frontend's simple Query whose text starts,
/// after leading white space and ignoring ASCII case, with `prefix`.
pg_proxy_rule cut_before_query(std::string prefix,
                               pg_rule_shots shots = pg_rule_shots::once);

} // namespace pg_rules

} // namespace es::test
