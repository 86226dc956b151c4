#include "es/brokers/brokers.hpp"

#include "es/bus/type_ids.hpp"
#include "es/store/errors.hpp"

#ifdef ES_HAVE_REDIS
#  include "es/redis/redis.hpp"
#endif
#ifdef ES_HAVE_RABBITMQ
#  include "es/rabbitmq/rabbitmq.hpp"
#endif
#ifdef ES_HAVE_KAFKA
#  include "es/kafka/kafka.hpp"
#endif

#include <caf/actor_system_config.hpp>

#include <cstdio>

namespace es {

namespace {

bool starts_with(const std::string& x, const char* prefix) {
  return x.rfind(prefix, 0) == 0;
}

caf::error unsupported(const std::string& url) {
  auto broker = broker_of(url);
  if (broker.empty())
    return make_store_error(store_errc::invalid_argument,
                            "not a broker URL (redis://, amqp://, kafka://): "
                              + masked_url(url));
  return make_store_error(store_errc::invalid_argument,
                          "this build has no " + broker + " bridge");
}

std::string line(const char* fmt, long long a, long long b = 0,
                 long long c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), fmt, a, b, c);
  return buf;
}

#ifdef ES_HAVE_REDIS
redis_bus_config redis_config_of(const std::string& url,
                                 const broker_bus_settings& s) {
  redis_bus_config rc;
  rc.url = url;
  rc.stream_prefix = s.name;
  rc.consumer_group = s.group;
  rc.block = s.block;
  return rc;
}
#endif

#ifdef ES_HAVE_RABBITMQ
rabbitmq_bus_config rabbitmq_config_of(const std::string& url,
                                       const broker_bus_settings& s) {
  rabbitmq_bus_config rc;
  rc.url = url;
  rc.exchange_name = s.name;
  rc.consumer_group = s.group;
  rc.block = s.block;
  return rc;
}
#endif

#ifdef ES_HAVE_KAFKA
/// `kafka://host:port[,host:port...][?key=value&...]`: the bootstrap
/// servers, and librdkafka properties passed through as they are.
caf::expected<kafka_bus_config> kafka_config_of(const std::string& url,
                                                const broker_bus_settings& s) {
  auto rest = url.substr(8);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos)
    rest = rest.substr(0, slash);
  if (rest.empty() || rest.find('@') != std::string::npos)
    return make_kafka_error(kafka_errc::invalid_config,
                            "a Kafka URL is kafka://host:port[,host:port...]"
                            "[?property=value&...] (credentials go in the "
                            "SASL properties)");
  kafka_bus_config kc;
  kc.bootstrap_servers = rest;
  kc.topic_prefix = s.name;
  kc.consumer_group = s.group;
  kc.block = s.block;
  size_t start = 0;
  while (start < query.size()) {
    auto end = query.find('&', start);
    auto item = query.substr(start, end == std::string::npos ? std::string::npos
                                                             : end - start);
    start = end == std::string::npos ? query.size() : end + 1;
    auto eq = item.find('=');
    if (item.empty() || eq == std::string::npos || eq == 0)
      return make_kafka_error(kafka_errc::invalid_config,
                              "a Kafka URL's query is property=value pairs");
    kc.properties.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return kc;
}
#endif

} // namespace

std::string broker_of(const std::string& url) {
  if (starts_with(url, "redis://") || starts_with(url, "rediss://"))
    return "redis";
  if (starts_with(url, "amqp://") || starts_with(url, "amqps://"))
    return "rabbitmq";
  if (starts_with(url, "kafka://"))
    return "kafka";
  return {};
}

bool broker_supported(const std::string& url) {
  auto broker = broker_of(url);
#ifdef ES_HAVE_REDIS
  if (broker == "redis")
    return true;
#endif
#ifdef ES_HAVE_RABBITMQ
  if (broker == "rabbitmq")
    return true;
#endif
#ifdef ES_HAVE_KAFKA
  if (broker == "kafka")
    return true;
#endif
  return false;
}

caf::expected<event_bus_ptr> open_broker_bus(caf::actor_system& sys,
                                             const std::string& url,
                                             const broker_bus_settings& s) {
  auto broker = broker_of(url);
#ifdef ES_HAVE_REDIS
  if (broker == "redis")
    return make_redis_bus(sys, redis_config_of(url, s));
#endif
#ifdef ES_HAVE_RABBITMQ
  if (broker == "rabbitmq")
    return make_rabbitmq_bus(sys, rabbitmq_config_of(url, s));
#endif
#ifdef ES_HAVE_KAFKA
  if (broker == "kafka") {
    auto kc = kafka_config_of(url, s);
    if (!kc)
      return std::move(kc.error());
    return make_kafka_bus(sys, *kc);
  }
#endif
  static_cast<void>(sys);
  static_cast<void>(s);
  return unsupported(url);
}

caf::expected<std::vector<std::string>>
broker_bus_report(const std::string& url, const broker_bus_settings& s) {
  auto broker = broker_of(url);
  std::vector<std::string> out;
#ifdef ES_HAVE_REDIS
  if (broker == "redis") {
    auto info = read_redis_stream_info(redis_config_of(url, s));
    if (!info)
      return std::move(info.error());
    out.push_back("redis stream " + s.name + ":stream: "
                  + line("%lld entries, %lld dead letters", info->length,
                         info->dead_letters));
    for (const auto& g : info->groups)
      out.push_back(
        "  group " + g.name + ": "
        + line("%lld consumers, %lld pending", g.consumers, g.pending)
        + ", last delivered " + g.last_delivered_id);
    return out;
  }
#endif
#ifdef ES_HAVE_RABBITMQ
  if (broker == "rabbitmq") {
    auto info = read_rabbitmq_bus_info(rabbitmq_config_of(url, s));
    if (!info)
      return std::move(info.error());
    out.push_back("rabbitmq exchange " + s.name + ": "
                  + line("%lld dead letters", info->dead_letters));
    for (const auto& q : info->groups)
      out.push_back(
        "  queue " + q.name + ": "
        + line("%lld ready, %lld consumers", q.messages, q.consumers));
    return out;
  }
#endif
#ifdef ES_HAVE_KAFKA
  if (broker == "kafka") {
    auto kc = kafka_config_of(url, s);
    if (!kc)
      return std::move(kc.error());
    auto info = read_kafka_bus_info(*kc);
    if (!info)
      return std::move(info.error());
    out.push_back("kafka topic " + s.name + ".events: "
                  + line("%lld partitions, %lld messages, %lld dead letters",
                         info->partitions, info->messages, info->dead_letters));
    for (const auto& [group, lag] : info->lag)
      out.push_back("  group " + group + ": " + line("lag %lld", lag));
    return out;
  }
#endif
  static_cast<void>(s);
  return unsupported(url);
}

std::string masked_url(const std::string& url) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos)
    return url;
  auto at = url.find('@', scheme + 3);
  auto slash = url.find('/', scheme + 3);
  if (at == std::string::npos || (slash != std::string::npos && slash < at))
    return url;
  auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at)
    return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

void add_broker_modules(caf::actor_system_config& cfg) {
  add_bus_module(cfg);
#ifdef ES_HAVE_KAFKA
  add_kafka_module(cfg);
#endif
#ifdef ES_HAVE_REDIS
  add_redis_module(cfg);
#endif
#ifdef ES_HAVE_RABBITMQ
  add_rabbitmq_module(cfg);
#endif
}

} // namespace es
