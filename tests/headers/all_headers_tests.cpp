// Includes every module's all.hpp and fwd.hpp in one program: the headers
// compile together, in any order, and each module's error category is
// registered and renders its own codes (an operator reads these names).
#include "es/actors/all.hpp"
#include "es/brokers/all.hpp"
#include "es/bus/all.hpp"
#include "es/projections/all.hpp"
#include "es/shred/all.hpp"
#include "es/sqlite/all.hpp"
#include "es/store/all.hpp"
#include "es/supervision/all.hpp"
#include "es/testing/all.hpp"
#ifdef ES_HAVE_POSTGRES
#  include "es/postgres/all.hpp"
#endif
#ifdef ES_HAVE_REDIS
#  include "es/redis/all.hpp"
#endif
#ifdef ES_HAVE_RABBITMQ
#  include "es/rabbitmq/all.hpp"
#endif
#ifdef ES_HAVE_KAFKA
#  include "es/kafka/all.hpp"
#endif
#ifdef ES_HAVE_OPS
#  include "es/ops/all.hpp"
#endif

#include "es/actors/fwd.hpp"
#include "es/bus/fwd.hpp"
#include "es/projections/fwd.hpp"
#include "es/store/fwd.hpp"
#include "es/supervision/fwd.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace es;

TEST_CASE("each module's errors render with its own category", "[headers]") {
  auto text = [](const caf::error& err) {
    return describe(err);
  };
  CHECK(text(make_store_error(store_errc::lease_held, "x"))
        == "es_store.lease_held: x");
  CHECK(text(caf::make_error(supervision_errc::circuit_open, std::string{"x"},
                             int64_t{5}))
          .rfind("es_superv.circuit_open: x", 0)
        == 0);
  CHECK(text(caf::make_error(bus_errc::handler_failed, std::string{"x"}))
        == "es_bus.handler_failed: x");
  CHECK(text(caf::make_error(actors_errc::handler_failed, std::string{"x"}))
        == "es_actors.handler_failed: x");
  CHECK(text(caf::make_error(projections_errc::projection_stopped,
                             std::string{"x"}))
        == "es_proj.projection_stopped: x");
  CHECK(text(make_shred_error(shred_errc::decryption_failed, "x"))
        == "es_shred.decryption_failed: x");
#ifdef ES_HAVE_REDIS
  CHECK(text(make_redis_error(redis_errc::connection_failed, "x"))
        == "es_redis.connection_failed: x");
#endif
#ifdef ES_HAVE_RABBITMQ
  CHECK(text(make_rabbitmq_error(rabbitmq_errc::publish_nacked, "x"))
        == "es_amqp.publish_nacked: x");
  CHECK(is_retryable(make_rabbitmq_error(rabbitmq_errc::timeout, "")));
  CHECK_FALSE(
    is_retryable(make_rabbitmq_error(rabbitmq_errc::server_error, "")));
#endif
#ifdef ES_HAVE_KAFKA
  CHECK(text(make_kafka_error(kafka_errc::produce_failed, "x"))
        == "es_kafka.produce_failed: x");
  CHECK(is_retryable(make_kafka_error(kafka_errc::connection_failed, "")));
  CHECK_FALSE(is_retryable(make_kafka_error(kafka_errc::invalid_config, "")));
#endif
}

TEST_CASE("a broker URL names its bridge, and its password is masked",
          "[headers]") {
  CHECK(broker_of("redis://:pw@h:1/0") == "redis");
  CHECK(broker_of("amqps://u:pw@h/%2f") == "rabbitmq");
  CHECK(broker_of("kafka://h:1,h:2") == "kafka");
  CHECK(broker_of("http://h").empty());
  CHECK(masked_url("amqp://u:secret@h:1/%2f") == "amqp://u:***@h:1/%2f");
  CHECK(masked_url("redis://:secret@h:1/0") == "redis://:***@h:1/0");
  CHECK(masked_url("redis://h:1/0") == "redis://h:1/0");
}

TEST_CASE("retryable codes are retryable across modules", "[headers]") {
  CHECK(is_retryable(make_store_error(store_errc::commit_outcome_unknown, "")));
  CHECK(is_retryable(
    caf::make_error(projections_errc::not_caught_up, std::string{})));
  CHECK(is_retryable(
    caf::make_error(projections_errc::not_running, std::string{})));
  CHECK_FALSE(is_retryable(
    caf::make_error(projections_errc::projection_stopped, std::string{})));
  CHECK_FALSE(is_retryable(
    caf::make_error(projections_errc::handler_failed, std::string{})));
}

TEST_CASE("the classifier sees a thrown projection handler as a bug, "
          "whatever its message",
          "[headers]") {
  error_classifier classifier;
  auto c = classifier.classify(caf::make_error(
    projections_errc::handler_failed, std::string{"handler threw: timeout"}));
  CHECK(c.category == error_category::unknown);
  CHECK(c.severity == error_severity::critical);
  CHECK_FALSE(c.retryable);
}
