// The RabbitMQ module's error codes, URLs and registration.
#include "es/bus/type_ids.hpp"
#include "es/rabbitmq/rabbitmq.hpp"

#include <caf/actor_system_config.hpp>

#include <amqp.h>

#include <vector>

namespace es {

const char* to_string(rabbitmq_errc x) {
  switch (x) {
    case rabbitmq_errc::invalid_url: return "invalid_url";
    case rabbitmq_errc::connection_failed: return "connection_failed";
    case rabbitmq_errc::authentication_failed: return "authentication_failed";
    case rabbitmq_errc::timeout: return "timeout";
    case rabbitmq_errc::server_error: return "server_error";
    case rabbitmq_errc::publish_nacked: return "publish_nacked";
    case rabbitmq_errc::invalid_config: return "invalid_config";
  }
  return "unknown";
}

bool is_retryable(rabbitmq_errc x) {
  return x == rabbitmq_errc::connection_failed || x == rabbitmq_errc::timeout
         || x == rabbitmq_errc::publish_nacked;
}

caf::error make_rabbitmq_error(rabbitmq_errc code, std::string description) {
  return caf::make_error(code, std::move(description));
}

namespace detail {

const char* render_rabbitmq_errc(uint8_t code) {
  return to_string(static_cast<rabbitmq_errc>(code));
}

bool classify_rabbitmq_errc(uint8_t code) {
  return is_retryable(static_cast<rabbitmq_errc>(code));
}

} // namespace detail

void add_rabbitmq_module(caf::actor_system_config& cfg) {
  add_bus_module(cfg);
  cfg.add_error_category(
    caf::atom("es_amqp"),
    [](uint8_t code, caf::atom_value category, const caf::message& context) {
      return describe(caf::error{code, category, context});
    });
}

caf::expected<amqp_url> parse_amqp_url(std::string_view text) {
  auto bad = [](std::string why) {
    return make_rabbitmq_error(rabbitmq_errc::invalid_url,
                               "not an AMQP URL: " + std::move(why));
  };
  if (text.rfind("amqp://", 0) != 0 && text.rfind("amqps://", 0) != 0)
    return bad("it must start with amqp:// or amqps://");
  if (text.find_first_of("?#") != std::string_view::npos)
    return bad("query strings and fragments are not supported");
  // rabbitmq-c fills in "localhost" for a missing host: refuse that here.
  auto rest = text.substr(text.find("://") + 3);
  auto authority = rest.substr(0, rest.find('/'));
  if (auto at = authority.rfind('@'); at != std::string_view::npos)
    authority = authority.substr(at + 1);
  if (authority.empty() || authority.front() == ':')
    return bad("no host");
  // rabbitmq-c parses in place.
  std::vector<char> buf(text.begin(), text.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    return bad("malformed host, port, credentials or vhost");
  if (info.host == nullptr || *info.host == '\0')
    return bad("no host");
  if (info.port <= 0 || info.port > 65535)
    return bad("port out of range");
  amqp_url x;
  x.host = info.host;
  x.port = static_cast<uint16_t>(info.port);
  x.user = info.user != nullptr ? info.user : "";
  x.password = info.password != nullptr ? info.password : "";
  x.vhost = info.vhost != nullptr ? info.vhost : "/";
  x.tls = info.ssl != 0;
  return x;
}

std::string to_string(const amqp_url& x) {
  std::string vhost;
  for (char c : x.vhost)
    if (c == '/')
      vhost += "%2f";
    else
      vhost += c;
  return std::string{x.tls ? "amqps://" : "amqp://"} + x.user + ":***@" + x.host
         + ":" + std::to_string(x.port) + "/" + vhost;
}

} // namespace es
