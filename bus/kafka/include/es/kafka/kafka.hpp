// The Kafka module (es::kafka): the Kafka bus bridge (`make_kafka_bus`),
// the module's error codes and its registration with an actor system.
// librdkafka is linked privately: no public header names it.
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
#include <utility>
#include <vector>

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace es {

// -- errors -------------------------------------------------------------------

/// Error codes of the Kafka module. Append-only.
enum class kafka_errc : uint8_t {
  /// A setting librdkafka refused (the description names it), or an
  /// option of the bus that cannot work.
  invalid_config = 1,
  /// No broker could be reached in time.
  connection_failed,
  /// A produce was not acknowledged in time or failed; some of the
  /// messages may have been written.
  produce_failed,
  /// The cluster answered with an error (the description keeps it).
  server_error,
};

/// Returns the name of `x`, for example "produce_failed".
const char* to_string(kafka_errc x);

/// Returns whether retrying can succeed: `connection_failed` and
/// `produce_failed`.
bool is_retryable(kafka_errc x);

caf::error make_kafka_error(kafka_errc code, std::string description);

inline bool has_code(const caf::error& err, kafka_errc code) {
  return err && err.category() == caf::atom("es_kafka")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_kafka_errc(uint8_t code);
bool classify_kafka_errc(uint8_t code);

inline const bool kafka_errors_registered = register_error_category(
  caf::atom("es_kafka"), render_kafka_errc, classify_kafka_errc);

} // namespace detail

/// Registers the Kafka module's error category with `cfg`, and the bus
/// module's types and errors.
void add_kafka_module(caf::actor_system_config& cfg);

// -- the bus -----------------------------------------------------------------

/// A Kafka bus (`make_kafka_bus`). Events go to the topic
/// `<topic_prefix>.events`, keyed by aggregate id (so each aggregate's
/// events keep their order within a partition), with the envelope as value
/// (es/bus/envelope.hpp) and `envelope_headers` as headers. Dead letters go
/// to `<topic_prefix>.dlq`; replayed or discarded ones are marked in
/// `<topic_prefix>.dlq-done` (Kafka cannot delete a message).
struct kafka_bus_config {
  /// Comma-separated host:port list.
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string topic_prefix = "events";
  /// The group of subscriptions that name none; a Kafka consumer group
  /// per bus group. A new group reads the topic from its start.
  std::string consumer_group = "default";
  /// client.id of this process's clients; empty: "es-<host>-<pid>".
  std::string client_id;
  /// "all" (default), "1" or "0"; with "all" the producer is idempotent.
  std::string acks = "all";
  /// "none", "gzip", "snappy", "lz4" or "zstd".
  std::string compression_type = "none";
  /// Messages handed to the local subscriptions at once.
  size_t batch_size = 100;
  /// How long a consumer waits for the first message of a batch.
  std::chrono::milliseconds block{1000};
  /// Deliveries of an event to a failing handler after the first, before
  /// it is dead-lettered. Kafka does not count deliveries across consumer
  /// crashes: a message that kills its consumer comes back after each
  /// restart.
  uint32_t max_retries = 3;
  /// Dead-letter events whose handlers keep failing (and messages that are
  /// not envelopes); without it they are logged and skipped.
  bool enable_dlq = true;
  /// A consumer that does not poll for this long leaves its group.
  std::chrono::milliseconds max_poll_interval{300'000};
  /// A consumer (process) not heard of for this long is dropped from the
  /// group and its partitions move to the others.
  std::chrono::milliseconds session_timeout{10'000};
  /// How long creating the bus (and each look at the cluster's metadata,
  /// watermarks and offsets) waits for a broker to answer.
  std::chrono::milliseconds connect_timeout{5'000};
  /// How long a publish waits for the delivery reports, and librdkafka's
  /// message.timeout.ms: a publish fails after it, with nothing left
  /// queued to be sent later.
  std::chrono::milliseconds delivery_timeout{10'000};
  /// Passed to librdkafka as they are, for producers and consumers, after
  /// (so over) the bus's own settings: security ("security.protocol",
  /// "sasl.mechanisms", "sasl.username", "sasl.password",
  /// "ssl.ca.location", ...) and tuning.
  std::vector<std::pair<std::string, std::string>> properties;
  /// The breaker around the publisher (see `redis_bus_config::breaker`).
  circuit_breaker_config breaker{5, std::chrono::seconds(5), 1,
                                 std::chrono::seconds(30)};
  /// How the bus's supervisor restarts a consumer actor that crashed.
  restart_policy consumer_restarts{
    100, retry_config{0, std::chrono::milliseconds(100),
                      std::chrono::seconds(10), 2.0, 0.2}};
  /// The pause before a consumer tries again after a failure.
  retry_config reconnect{0, std::chrono::milliseconds(50),
                         std::chrono::seconds(5), 2.0, 0.2};
};

/// Creates the producer, checks that the cluster answers (failing at once
/// for a bad setting or no reachable broker), and returns a bus on the
/// topic. A publish returns once every message's delivery report arrived
/// (with acks=all: every in-sync replica has it), or with
/// `bus_errc::broker_unavailable` (retryable; some may have been written,
/// and consumers dedupe by event id). After `start`, one consumer per group
/// with local subscriptions polls batches, hands each to the group's local
/// subscriptions in partition order, and commits its offsets once every
/// handler finished; on a rebalance a consumer gives up its partitions
/// between batches, so what it finished is committed. A broker that refuses
/// that commit because the rebalance already began (librdkafka's mock
/// cluster does) hands the batch to the partitions' next owners again, and
/// the consumer stays in the group. The consumers run under a supervisor of
/// the bus; a breaker guards the publisher.
caf::expected<event_bus_ptr> make_kafka_bus(caf::actor_system& sys,
                                            kafka_bus_config cfg);

/// The supervisor of a Kafka bus's consumer actors (children named
/// "consumer:<group>"); an invalid handle when `bus` is not one.
supervisor_actor kafka_bus_supervisor(const event_bus_ptr& bus);

/// The state of a bus's topic, for operators.
struct kafka_bus_info {
  int32_t partitions = 0;
  /// Messages in the topic (high minus low watermarks).
  int64_t messages = 0;
  /// Per group of `groups`: messages not committed yet (lag).
  std::vector<std::pair<std::string, int64_t>> lag;
  /// Dead letters not replayed or discarded.
  int64_t dead_letters = 0;
};

/// Reads the topic's partitions and messages, the lag of `groups` (empty:
/// the configured group) and the dead letters of the bus `cfg` describes.
caf::expected<kafka_bus_info>
read_kafka_bus_info(const kafka_bus_config& cfg,
                    std::vector<std::string> groups = {});

} // namespace es

CAF_ERROR_CODE_ENUM(es::kafka_errc, "es_kafka")
