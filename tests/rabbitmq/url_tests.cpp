// AMQP URLs and the module's errors.
#include "es/rabbitmq/rabbitmq.hpp"

#include <catch2/catch.hpp>

using namespace es;
using Catch::Contains;

TEST_CASE("an AMQP URL names host, port, credentials and vhost",
          "[rabbitmq][url]") {
  auto x = parse_amqp_url("amqp://alice:s%40cret@broker.example:5673/orders");
  REQUIRE(x);
  CHECK(x->host == "broker.example");
  CHECK(x->port == 5673);
  CHECK(x->user == "alice");
  CHECK(x->password == "s@cret");
  CHECK(x->vhost == "orders");
  CHECK_FALSE(x->tls);
  auto root = parse_amqp_url("amqp://u:p@127.0.0.1:5672/%2f");
  REQUIRE(root);
  CHECK(root->vhost == "/");
  auto bare = parse_amqp_url("amqp://localhost");
  REQUIRE(bare);
  CHECK(bare->port == 5672);
  CHECK(bare->vhost == "/");
  CHECK(bare->user == "guest");
  auto tls = parse_amqp_url("amqps://u:p@broker.example");
  REQUIRE(tls);
  CHECK(tls->tls);
  CHECK(tls->port == 5671);
}

TEST_CASE("malformed AMQP URLs are refused with invalid_url",
          "[rabbitmq][url][bad-input]") {
  for (const char* text :
       {"", "http://localhost", "amqp://", "amqp://host:notaport/",
        "amqp://host:99999/", "amqp://host/vhost?heartbeat=5",
        "amqp://host/vhost#x", "amqp//host"}) {
    INFO(text);
    auto x = parse_amqp_url(text);
    REQUIRE_FALSE(x);
    CHECK(has_code(x.error(), rabbitmq_errc::invalid_url));
  }
}

TEST_CASE("an AMQP URL renders without its password", "[rabbitmq][url]") {
  auto x = parse_amqp_url("amqp://alice:top-secret@h:1/%2f");
  REQUIRE(x);
  auto text = to_string(*x);
  CHECK_THAT(text, !Contains("top-secret"));
  CHECK(text == "amqp://alice:***@h:1/%2f");
}

TEST_CASE("the module's errors render by name and say whether to retry",
          "[rabbitmq][errors]") {
  CHECK(describe(make_rabbitmq_error(rabbitmq_errc::server_error, "x"))
        == "es_amqp.server_error: x");
  CHECK(is_retryable(rabbitmq_errc::connection_failed));
  CHECK(is_retryable(rabbitmq_errc::publish_nacked));
  CHECK_FALSE(is_retryable(rabbitmq_errc::authentication_failed));
  CHECK_FALSE(is_retryable(rabbitmq_errc::invalid_config));
}
