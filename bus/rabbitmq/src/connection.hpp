// A blocking connection to a RabbitMQ broker over rabbitmq-c, with one
// channel (1). Private to the module.
#pragma once

#include "es/rabbitmq/rabbitmq.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

// rabbitmq-c's connection state, declared as amqp.h does, so that users of
// this header need no rabbitmq-c header.
struct amqp_connection_state_t_;
struct amqp_rpc_reply_t_;

namespace es::detail::amqp {

/// A message as a consumer or a `get` received it.
struct message {
  uint64_t delivery_tag = 0;
  std::string body;
  std::string routing_key;
  std::string message_id;
  bool redelivered = false;
  /// The headers whose values are strings or integers (integers written
  /// in decimal).
  std::map<std::string, std::string> headers;
  /// Deliveries so far as the broker counts them (quorum queues send
  /// x-delivery-count, which is 0 on the first); -1 when it does not say.
  int64_t delivery_count = -1;
};

/// What to publish.
struct outgoing {
  std::string exchange;
  std::string routing_key;
  std::string body;
  std::string message_id;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// One connection, logged in, with channel 1 open. Calls block until the
/// broker answers or the command timeout passes: use it from a detached
/// actor or a thread of its own. Not thread-safe; movable.
///
/// Any failure of the transport, and any channel or connection close by
/// the broker, leaves the connection broken: later calls fail fast with
/// `connection_failed`; open a new one.
class connection {
public:
  /// Connects (`connect_timeout`), logs in with `heartbeat`, opens channel
  /// 1 and sets `command_timeout` as the limit of every later call. TLS
  /// for `amqps://` with `tls_ca_cert` and `tls_verify`. Errors:
  /// `connection_failed` naming host:port, `authentication_failed`,
  /// `timeout`, `invalid_config` (a CA file that cannot be read).
  [[nodiscard]] static caf::expected<connection>
  open(const amqp_url& url, const rabbitmq_bus_config& cfg);

  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  bool broken() const noexcept {
    return state_ == nullptr || broken_;
  }

  caf::error declare_exchange(const std::string& name, const std::string& type);

  /// Declares a durable queue (or only checks it, `passive`) and returns
  /// its ready messages and consumers. Arguments: "x-queue-type" when
  /// `queue_type` is not empty, "x-dead-letter-exchange" when `dlx` is not.
  caf::expected<std::pair<int64_t, int64_t>>
  declare_queue(const std::string& name, bool passive,
                const std::string& queue_type = {},
                const std::string& dlx = {});

  /// Deletes a queue or an exchange (missing ones too).
  caf::error delete_queue(const std::string& name);
  caf::error delete_exchange(const std::string& name);

  caf::error bind(const std::string& queue, const std::string& exchange,
                  const std::string& key);

  /// Puts the channel in confirm mode: every later publish is confirmed.
  caf::error confirm_select();

  caf::error qos(uint16_t prefetch_count);

  /// Starts consuming `queue` with acknowledgements.
  caf::error consume(const std::string& queue);

  /// Publishes a persistent message; with confirms on, `wait_confirms`
  /// waits for the broker to take it.
  caf::error publish(const outgoing& msg);

  /// Waits until the broker confirmed every message published so far; a
  /// nack is `publish_nacked` (the connection stays usable).
  caf::error wait_confirms();

  /// Up to `max` delivered messages: waits up to `first_wait` for the
  /// first, then takes what already arrived.
  caf::expected<std::vector<message>>
  receive(size_t max, std::chrono::milliseconds first_wait);

  /// Acknowledges every delivery up to `tag` (`multiple`) or only `tag`.
  caf::error ack(uint64_t tag, bool multiple);

  /// Returns a message to its queue (`requeue`) or drops it.
  caf::error reject(uint64_t tag, bool requeue);

  /// Gets one message of `queue` without consuming (basic.get, to be
  /// acknowledged or rejected); none when the queue is empty.
  caf::expected<std::optional<message>> get(const std::string& queue);

  /// Reads what the broker sent meanwhile without waiting, which answers
  /// heartbeats (rabbitmq-c services them only inside its calls) and
  /// notices a closed connection.
  caf::error service();

private:
  connection(amqp_connection_state_t_* state, std::chrono::milliseconds timeout,
             std::string where);

  /// Checks the answer of the last synchronous call named `what`.
  caf::error check(const char* what);

  /// Checks `reply`, the answer of the call named `what`.
  caf::error check_reply(const amqp_rpc_reply_t_& reply, const char* what);

  caf::error fail(rabbitmq_errc code, std::string text);

  amqp_connection_state_t_* state_ = nullptr;
  bool broken_ = false;
  std::chrono::milliseconds timeout_;
  std::string where_;
  uint64_t next_tag_ = 1;
  bool confirms_ = false;
  std::set<uint64_t> unconfirmed_;
  bool nacked_ = false;
};

} // namespace es::detail::amqp
