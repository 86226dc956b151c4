// The whole path between processes over RabbitMQ: PostgreSQL outbox, relay,
// RabbitMQ, a consumer group; a broker restart in the middle loses nothing
// (tests/common/relay_restart.hpp).
#include "rabbitmq_fixture.hpp"
#include "relay_restart.hpp"

#include <cstdlib>

using namespace es;
using namespace es::test;

TEST_CASE("relayed through RabbitMQ, every committed event is handled once, "
          "across a broker restart",
          "[rabbitmq][postgres][relay][restart]") {
  const char* restart = std::getenv("ES_TEST_RABBITMQ_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("ES_TEST_RABBITMQ_RESTART is not set (scripts/test sets it to "
         "`scripts/rabbitmq restart`)");
  auto url = test_amqp_url_text();
  test_topology topology;
  topology.groups({"default"});
  relay_across_broker_restart(url, topology.exchange(), restart);
}
