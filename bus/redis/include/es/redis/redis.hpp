// The Redis module (es::redis): the Redis Streams bus bridge
// (`make_redis_bus`), where the server is (`redis_url`), the module's error
// codes and its registration with an actor system. The connection layer
// over hiredis is private to the module.
#pragma once

#include "es/bus/event_bus.hpp"
#include "es/store/errors.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/retry.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace es {

// -- errors -------------------------------------------------------------------

/// Error codes of the Redis module. Append-only: codes keep their numbers
/// once released. Each error carries a one-line description as context.
enum class redis_errc : uint8_t {
  /// A Redis URL is malformed (scheme, host, port, database or escapes).
  invalid_url = 1,
  /// The URL asks for TLS (`rediss://`), which the linked hiredis (0.14,
  /// without hiredis_ssl) cannot do.
  tls_unsupported,
  /// The server could not be reached, or the connection was lost; retrying
  /// on a new connection can succeed.
  connection_failed,
  /// The server refused the credentials (AUTH failed, or a command was
  /// refused with NOAUTH/WRONGPASS).
  authentication_failed,
  /// A command got no answer in time; the connection is unusable afterwards
  /// (a late answer would be taken for the next command's), but retrying on
  /// a new connection can succeed.
  timeout,
  /// The server's answer could not be parsed (or hiredis ran out of memory).
  protocol_error,
  /// The server answered with an error reply; the description keeps its
  /// message, for example "ERR value is not an integer or out of range".
  server_error,
};

/// Returns the name of `x`, for example "connection_failed".
const char* to_string(redis_errc x);

/// Returns whether retrying can succeed: `connection_failed` and `timeout`.
bool is_retryable(redis_errc x);

/// Builds an error of the Redis module with a human-readable description.
caf::error make_redis_error(redis_errc code, std::string description);

/// Returns whether `err` has the Redis category and the code `code`.
inline bool has_code(const caf::error& err, redis_errc code) {
  return err && err.category() == caf::atom("es_redis")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_redis_errc(uint8_t code);
bool classify_redis_errc(uint8_t code);

inline const bool redis_errors_registered = register_error_category(
  caf::atom("es_redis"), render_redis_errc, classify_redis_errc);

} // namespace detail

/// Registers the Redis module's error category with `cfg`, and the bus
/// module's types and errors (and, through it, the store's and the
/// supervision module's), so errors that cross actors render by name.
void add_redis_module(caf::actor_system_config& cfg);

// -- server address -----------------------------------------------------------

/// Where a Redis server is and how to log in, as parsed from a URL.
struct redis_url {
  /// A host name or an IP address (IPv6 without the brackets of the URL).
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  /// A Redis 6 ACL user; empty logs in as the default user.
  std::string username;
  /// Empty: no AUTH (unless a username is set).
  std::string password;
  /// The logical database (SELECT).
  int db = 0;
  /// The URL asked for TLS (`rediss://`). Opening a connection refuses it
  /// with `tls_unsupported` (hiredis 0.14 has no TLS).
  bool tls = false;
};

/// Parses `redis://[[user]:password@]host[:port][/db]` (or `rediss://`, which
/// sets `tls`). User and password may be percent-encoded (`%40` for '@');
/// an IPv6 host is written in brackets (`redis://[::1]:6380`). Omitted parts
/// keep the defaults of `redis_url` (an empty host too); user info without
/// a colon is a user name. Query strings and fragments are refused. Errors:
/// `redis_errc::invalid_url`, whose description names the problem (never
/// the password).
[[nodiscard]] caf::expected<redis_url> parse_redis_url(std::string_view text);

/// Renders `x` as a URL with the password masked ("redis://:***@host:port/0"),
/// for logs and error messages.
std::string to_string(const redis_url& x);

// -- the bus -----------------------------------------------------------------

/// A Redis Streams bus (`make_redis_bus`). One stream per bus,
/// `<stream_prefix>:stream`, holds the envelopes (es/bus/envelope.hpp; the
/// entry's fields carry `envelope_headers` too); dead letters go to
/// `<stream_prefix>:dlq`.
struct redis_bus_config {
  /// `redis://[[user]:password@]host[:port][/db]` (`parse_redis_url`).
  std::string url = "redis://127.0.0.1:6379/0";
  std::string stream_prefix = "events";
  /// The group of subscriptions that name none (`subscribe_options::group`).
  /// A group created by this bus reads the stream from its start, so it
  /// misses nothing published before it existed.
  std::string consumer_group = "default";
  /// This process's name within its groups; empty: host, pid and a random
  /// suffix, so that a restarted process is a new consumer (what the old
  /// one left pending is reclaimed after `max_pending_time`).
  std::string consumer_name;
  /// Entries read (and reclaimed) at once.
  size_t batch_size = 100;
  /// How long a read waits for new entries (XREADGROUP BLOCK); a stop or an
  /// unsubscribe waits for the read in progress.
  std::chrono::milliseconds block{1000};
  /// Deliveries of an event to a failing handler after the first, before
  /// the event is dead-lettered; also the number of times an entry may be
  /// delivered to consumers that died before acknowledging it.
  uint32_t max_retries = 3;
  /// Dead-letter events whose handlers keep failing (and entries that are
  /// not envelopes). Without it they stay pending and come back after
  /// `max_pending_time`, again and again.
  bool enable_dlq = true;
  /// Entries pending longer than this (their consumer died) are reclaimed
  /// by another member of the group (XAUTOCLAIM).
  std::chrono::milliseconds max_pending_time{60'000};
  /// Approximate cap of the stream's length (XADD MAXLEN ~); 0: none.
  /// Entries trimmed before a group read them are lost to that group.
  size_t max_stream_length = 0;
  std::chrono::milliseconds connect_timeout{2'000};
  /// The limit of each command but blocking reads (which get `block` more).
  std::chrono::milliseconds command_timeout{5'000};
  /// The pause before reconnecting after the server went away, growing
  /// with each failure in a row (its `max_retries` is not used).
  retry_config reconnect{0, std::chrono::milliseconds(50),
                         std::chrono::seconds(5), 2.0, 0.2};
  /// The breaker around the publisher's broker calls: after
  /// `failure_threshold` failed publishes in a row it opens, and publishes
  /// are refused at once (`bus_errc::broker_unavailable`, "circuit open")
  /// for `recovery_timeout`, instead of each waiting for a connect timeout;
  /// then one test publish decides. Its `call_timeout` is not used (the
  /// command timeouts bound each call).
  circuit_breaker_config breaker{5, std::chrono::seconds(5), 1,
                                 std::chrono::seconds(30)};
  /// How the bus's supervisor restarts a consumer actor that crashed. A
  /// restarted consumer keeps its name and first handles what it had read
  /// and not acknowledged.
  restart_policy consumer_restarts{
    100, retry_config{0, std::chrono::milliseconds(100),
                      std::chrono::seconds(10), 2.0, 0.2}};
};

/// Connects to Redis (failing at once for a bad URL, an unreachable server
/// or wrong credentials) and returns a bus on its stream. Publishing (a
/// pipelined XADD per batch) returns once Redis has every event, or with
/// `bus_errc::broker_unavailable` (retryable; part of the batch may be in
/// the stream, and consumers dedupe by event id). After `start`, one
/// consumer per group with local subscriptions reads batches, hands each to
/// the group's local subscriptions in stream order, and acknowledges it
/// once every handler finished; see `redis_bus_config` for failures and
/// dead letters. The consumers run under a supervisor of the bus
/// (`redis_bus_supervisor`), and a breaker guards the publisher
/// (`redis_bus_config::breaker`; `stats()` reports it). Delivery is at least
/// once: an event may come again after a crash, a reconnect or a reclaim. Each
/// aggregate's events reach a group in order while the group has one member;
/// members of a group share the entries as Redis hands them out.
caf::expected<event_bus_ptr> make_redis_bus(caf::actor_system& sys,
                                            redis_bus_config cfg);

/// The supervisor of a Redis bus's consumer actors (one child per group,
/// named "consumer:<group>"), for operators and tests; an invalid handle
/// when `bus` is not a Redis bus.
supervisor_actor redis_bus_supervisor(const event_bus_ptr& bus);

/// One consumer group of a bus's stream.
struct redis_group_info {
  std::string name;
  int64_t consumers = 0;
  /// Entries delivered to a consumer and not acknowledged yet.
  int64_t pending = 0;
  std::string last_delivered_id;
};

/// The state of a bus's stream, for operators.
struct redis_stream_info {
  /// Entries in the stream (trimmed ones not counted).
  int64_t length = 0;
  std::vector<redis_group_info> groups;
  /// Entries in the dead-letter stream.
  int64_t dead_letters = 0;
};

/// Reads the stream's length, its groups and the number of dead letters of
/// the bus `cfg` describes, over a connection of its own.
caf::expected<redis_stream_info>
read_redis_stream_info(const redis_bus_config& cfg);

} // namespace es

CAF_ERROR_CODE_ENUM(es::redis_errc, "es_redis")
