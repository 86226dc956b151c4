// The whole path between processes over Redis: PostgreSQL outbox, relay,
// Redis, a consumer group; a Redis restart in the middle loses nothing
// (tests/common/relay_restart.hpp).
#include "redis_fixture.hpp"
#include "relay_restart.hpp"

#include <cstdlib>

using namespace es;
using namespace es::test;

TEST_CASE("relayed through Redis, every committed event is handled once, "
          "across a Redis restart",
          "[redis][postgres][relay][restart]") {
  const char* restart = std::getenv("ES_TEST_REDIS_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("ES_TEST_REDIS_RESTART is not set (scripts/test sets it to "
         "`scripts/redis restart`)");
  static_cast<void>(test_redis_url()); // FAILs with instructions
  test_keys keys;
  auto name = keys("relay");
  keys("relay:stream");
  keys("relay:dlq");
  relay_across_broker_restart(std::getenv("ES_TEST_REDIS_URL"), name, restart);
}
