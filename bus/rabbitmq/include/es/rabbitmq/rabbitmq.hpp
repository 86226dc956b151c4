// The RabbitMQ module (es::rabbitmq): the RabbitMQ bus bridge
// (`make_rabbitmq_bus`), where the broker is (`amqp_url`), the module's
// error codes and its registration with an actor system. The connection
// layer over rabbitmq-c is private to the module.
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

/// Error codes of the RabbitMQ module. Append-only: codes keep their
/// numbers once released. Each error carries a one-line description.
enum class rabbitmq_errc : uint8_t {
  /// An AMQP URL is malformed.
  invalid_url = 1,
  /// The broker could not be reached, or the connection was lost; retrying
  /// on a new connection can succeed.
  connection_failed,
  /// The broker refused the credentials or the vhost (ACCESS_REFUSED,
  /// NOT_ALLOWED).
  authentication_failed,
  /// The broker did not answer in time; the connection is unusable after.
  timeout,
  /// The broker closed the channel or the connection over a command (for
  /// example PRECONDITION_FAILED: a queue declared with other arguments);
  /// the description keeps its code and text.
  server_error,
  /// The broker refused (nacked) a published message: it did not take it.
  publish_nacked,
  /// The configuration cannot work (an unknown exchange type, an empty
  /// exchange name, a TLS file that cannot be read).
  invalid_config,
};

/// Returns the name of `x`, for example "connection_failed".
const char* to_string(rabbitmq_errc x);

/// Returns whether retrying can succeed: `connection_failed`, `timeout`
/// and `publish_nacked`.
bool is_retryable(rabbitmq_errc x);

/// Builds an error of the RabbitMQ module with a description.
caf::error make_rabbitmq_error(rabbitmq_errc code, std::string description);

/// Returns whether `err` has the RabbitMQ category and the code `code`.
inline bool has_code(const caf::error& err, rabbitmq_errc code) {
  return err && err.category() == caf::atom("es_amqp")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_rabbitmq_errc(uint8_t code);
bool classify_rabbitmq_errc(uint8_t code);

inline const bool rabbitmq_errors_registered = register_error_category(
  caf::atom("es_amqp"), render_rabbitmq_errc, classify_rabbitmq_errc);

} // namespace detail

/// Registers the RabbitMQ module's error category with `cfg`, and the bus
/// module's types and errors, so errors that cross actors render by name.
void add_rabbitmq_module(caf::actor_system_config& cfg);

// -- broker address -----------------------------------------------------------

/// Where a broker is and how to log in, as parsed from a URL.
struct amqp_url {
  std::string host = "localhost";
  uint16_t port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  /// `amqps://`: TLS (port 5671 unless given).
  bool tls = false;
};

/// Parses `amqp[s]://[user[:password]@]host[:port][/vhost]` with
/// rabbitmq-c's parser (percent-escapes decoded; the vhost "/" is written
/// `%2f`; no path means "/"). Errors: `rabbitmq_errc::invalid_url` (never
/// showing the password).
[[nodiscard]] caf::expected<amqp_url> parse_amqp_url(std::string_view text);

/// Renders `x` with the password masked, for logs and errors.
std::string to_string(const amqp_url& x);

// -- the bus -----------------------------------------------------------------

/// A RabbitMQ bus (`make_rabbitmq_bus`). Events go to one durable exchange,
/// routing key `<aggregate_type>.<event_type>`, as persistent messages with
/// the envelope as body (es/bus/envelope.hpp), message id = event id and
/// `envelope_headers` as headers. Each consumer group is a durable queue
/// `<exchange_name>.<group>` bound to the exchange. Dead letters go to the
/// exchange `<exchange_name>.dlx` and its queue `<exchange_name>.dlq`.
struct rabbitmq_bus_config {
  /// `amqp[s]://user:password@host:port/vhost` (`parse_amqp_url`).
  std::string url = "amqp://guest:guest@localhost:5672/%2f";
  std::string exchange_name = "events";
  /// "topic", "direct", "fanout" or "headers".
  std::string exchange_type = "topic";
  /// The keys each group's queue is bound with. Empty: "#" for a topic
  /// exchange (everything), none needed for fanout and headers (everything);
  /// a direct exchange needs the routing keys listed.
  std::vector<std::string> binding_keys;
  /// The group of subscriptions that name none (`subscribe_options::group`).
  std::string consumer_group = "default";
  /// Groups whose queues the publisher declares when it connects, so that
  /// events published before any of their consumers ran wait in their
  /// queues (RabbitMQ drops a message no queue is bound for). Empty: the
  /// `consumer_group`.
  std::vector<std::string> declare_groups;
  /// "classic" or "quorum" (replicated; counts deliveries across consumer
  /// crashes, so a message that kills its consumers is dead-lettered after
  /// `max_retries`).
  std::string queue_type = "classic";
  /// Unacknowledged messages the broker hands a consumer at once; also the
  /// largest batch handed to the local subscriptions.
  uint16_t prefetch_count = 100;
  /// How long a consumer waits for the first message of a batch; a stop or
  /// an unsubscribe waits for the wait in progress.
  std::chrono::milliseconds block{1000};
  /// Deliveries of an event to a failing handler after the first, before
  /// the event is dead-lettered.
  uint32_t max_retries = 3;
  /// Dead-letter events whose handlers keep failing (and messages that are
  /// not envelopes). Without it such a message is acknowledged and dropped
  /// with an error in the log.
  bool enable_dlq = true;
  /// Heartbeat interval negotiated with the broker (0: none). Both the
  /// publisher and the consumers service it on a timer.
  std::chrono::seconds heartbeat{30};
  std::chrono::milliseconds connect_timeout{2'000};
  /// The limit of each broker call, publisher confirms included.
  std::chrono::milliseconds command_timeout{5'000};
  /// Publishes between two waits for the broker's confirms.
  size_t confirm_window = 1'000;
  /// With `amqps://`: the CA bundle to verify the broker with (empty: the
  /// system's default paths), and whether to verify its certificate and
  /// host name.
  std::string tls_ca_cert;
  bool tls_verify = true;
  /// The pause before reconnecting after the broker went away, growing
  /// with each failure in a row (its `max_retries` is not used).
  retry_config reconnect{0, std::chrono::milliseconds(50),
                         std::chrono::seconds(5), 2.0, 0.2};
  /// The breaker around the publisher's broker calls (see
  /// `redis_bus_config::breaker`).
  circuit_breaker_config breaker{5, std::chrono::seconds(5), 1,
                                 std::chrono::seconds(30)};
  /// How the bus's supervisor restarts a consumer actor that crashed.
  restart_policy consumer_restarts{
    100, retry_config{0, std::chrono::milliseconds(100),
                      std::chrono::seconds(10), 2.0, 0.2}};
};

/// Connects to the broker (failing at once for a bad URL or configuration,
/// an unreachable broker or wrong credentials), declares the exchange and
/// the queues of `declare_groups`, and returns a bus on them. A publish
/// returns once the broker confirmed every message (publisher confirms),
/// or with `bus_errc::broker_unavailable` (retryable; part of the batch may
/// have been taken, and consumers dedupe by event id). After `start`, one
/// consumer per group with local subscriptions reads batches of up to
/// `prefetch_count`, hands each to the group's local subscriptions in
/// queue order, and acknowledges it once every handler finished. The
/// consumers run under a supervisor of the bus; a breaker guards the
/// publisher. Delivery is at least once; each aggregate's events reach a
/// group in order while the group has one member.
caf::expected<event_bus_ptr> make_rabbitmq_bus(caf::actor_system& sys,
                                               rabbitmq_bus_config cfg);

/// The supervisor of a RabbitMQ bus's consumer actors (children named
/// "consumer:<group>"); an invalid handle when `bus` is not one.
supervisor_actor rabbitmq_bus_supervisor(const event_bus_ptr& bus);

/// One queue of a bus, as the broker reports it.
struct rabbitmq_queue_info {
  std::string name;
  /// Messages ready for delivery (not counting those delivered and not yet
  /// acknowledged).
  int64_t messages = 0;
  int64_t consumers = 0;
};

/// The state of a bus's queues, for operators.
struct rabbitmq_bus_info {
  /// The queues of `declare_groups` (and the default group).
  std::vector<rabbitmq_queue_info> groups;
  /// Messages in the dead-letter queue.
  int64_t dead_letters = 0;
};

/// Reads the queues of the bus `cfg` describes over a connection of its
/// own; queues that do not exist are reported with zero messages.
caf::expected<rabbitmq_bus_info>
read_rabbitmq_bus_info(const rabbitmq_bus_config& cfg);

} // namespace es

CAF_ERROR_CODE_ENUM(es::rabbitmq_errc, "es_amqp")
