// The broker buses by URL (es::brokers): one call that opens the bus a URL
// names, whichever bridges this build has, for programs that take the bus
// as configuration (`--bus=redis://...`, `--bus=amqp://...`).
#pragma once

#include "es/bus/event_bus.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace es {

/// What every broker bus needs beyond its URL.
struct broker_bus_settings {
  /// The bus's name at the broker: the Redis stream prefix, the RabbitMQ
  /// exchange, the Kafka topic prefix.
  std::string name = "events";
  /// The consumer group of subscriptions that name none.
  std::string group = "default";
  /// How long a consumer waits for the first message of a batch.
  std::chrono::milliseconds block{1000};
};

/// The broker a URL names: "redis" (redis://, rediss://), "rabbitmq"
/// (amqp://, amqps://), "kafka" (kafka://host:port[,host:port...], the
/// bootstrap servers), or empty for any other scheme.
std::string broker_of(const std::string& url);

/// Whether this build has the bridge for `url`'s broker.
bool broker_supported(const std::string& url);

/// Opens the bus `url` names with the bridge's defaults and `settings`.
/// Errors: `store_errc::invalid_argument` for a scheme no bridge of this
/// build speaks, and the bridge's own errors (a bad URL, an unreachable
/// broker, wrong credentials).
caf::expected<event_bus_ptr>
open_broker_bus(caf::actor_system& sys, const std::string& url,
                const broker_bus_settings& settings);

/// A few lines on the state of the bus at the broker, for status commands
/// (queue or stream lengths, groups, dead letters), over a connection of
/// its own.
caf::expected<std::vector<std::string>>
broker_bus_report(const std::string& url, const broker_bus_settings& settings);

/// The URL with its password masked, for logs.
std::string masked_url(const std::string& url);

/// Registers the modules of every bridge of this build with `cfg`.
void add_broker_modules(caf::actor_system_config& cfg);

} // namespace es
