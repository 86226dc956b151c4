// Helpers of the tests against a real RabbitMQ broker: its URL from
// ES_TEST_AMQP_URL (scripts/rabbitmq dsn), connections that FAIL with
// instructions when it is missing, and exchanges and queues unique to a
// test, deleted after.
#pragma once

#include "es/rabbitmq/rabbitmq.hpp"
#include "es/store/errors.hpp"
#include "es/store/uuid.hpp"

#include "connection.hpp"
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

namespace es::test {

inline constexpr const char* rabbitmq_instructions
  = "start the test broker with `scripts/rabbitmq start` and export "
    "ES_TEST_AMQP_URL=\"$(scripts/rabbitmq dsn)\" (scripts/test does both)";

/// The test broker's URL as text; FAILs (never skips) when it is not set
/// or bad.
inline std::string test_amqp_url_text() {
  const char* text = std::getenv("ES_TEST_AMQP_URL");
  if (text == nullptr || *text == '\0')
    FAIL("ES_TEST_AMQP_URL is not set: " << rabbitmq_instructions);
  if (auto url = parse_amqp_url(text); !url)
    FAIL("ES_TEST_AMQP_URL is not an AMQP URL ("
         << describe(url.error()) << "): " << rabbitmq_instructions);
  return text;
}

inline amqp_url test_amqp_url() {
  return *parse_amqp_url(test_amqp_url_text());
}

/// A connection to the test broker; FAILs with instructions when it cannot
/// be reached.
inline detail::amqp::connection connect_test_rabbitmq() {
  rabbitmq_bus_config cfg;
  cfg.url = test_amqp_url_text();
  auto conn = detail::amqp::connection::open(test_amqp_url(), cfg);
  if (!conn)
    FAIL("cannot use the RabbitMQ test broker at "
         << to_string(test_amqp_url()) << ": " << describe(conn.error()) << "; "
         << rabbitmq_instructions);
  return std::move(*conn);
}

/// The names of one test's bus: an exchange unique to the test, whose
/// queues (`<exchange>.<group>`, `.dlq`) and exchanges (`.dlx`) are deleted
/// when the test ends.
class test_topology {
public:
  test_topology() : exchange_("es-test." + uuid::random().to_string()) {
    // nop
  }

  ~test_topology() {
    const char* text = std::getenv("ES_TEST_AMQP_URL");
    if (text == nullptr)
      return;
    auto url = parse_amqp_url(text);
    if (!url)
      return;
    rabbitmq_bus_config cfg;
    for (const auto& q : queues_) {
      // A failed delete closes the channel: a connection per name.
      if (auto conn = detail::amqp::connection::open(*url, cfg))
        static_cast<void>(conn->delete_queue(q));
    }
    for (const auto& e : {exchange_, exchange_ + ".dlx"})
      if (auto conn = detail::amqp::connection::open(*url, cfg))
        static_cast<void>(conn->delete_exchange(e));
  }

  test_topology(const test_topology&) = delete;
  test_topology& operator=(const test_topology&) = delete;

  const std::string& exchange() const {
    return exchange_;
  }

  /// The queue of `group`, deleted at the end.
  std::string queue(const std::string& group) {
    queues_.push_back(exchange_ + "." + group);
    return queues_.back();
  }

  /// Registers every queue a bus with these groups may create.
  void groups(std::initializer_list<std::string> names) {
    for (const auto& g : names)
      queue(g);
    queue("dlq");
  }

private:
  std::string exchange_;
  std::vector<std::string> queues_;
};

} // namespace es::test
