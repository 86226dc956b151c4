// A librdkafka mock cluster for a test: N brokers on loopback that speak
// the Kafka protocol over TCP (separate processes can use them too), with
// brokers taken down and up by the test. Debian has no Kafka broker; this
// is the cluster the Kafka tests run against.
#pragma once

#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <string>

namespace es::test {

class mock_cluster {
public:
  explicit mock_cluster(int brokers = 3) {
    char errstr[256];
    auto* conf = rd_kafka_conf_new();
    // The handle only hosts the cluster; it never produces.
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    REQUIRE(rk_ != nullptr);
    cluster_ = rd_kafka_mock_cluster_new(rk_, brokers);
    REQUIRE(cluster_ != nullptr);
  }

  ~mock_cluster() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(rk_);
  }

  mock_cluster(const mock_cluster&) = delete;
  mock_cluster& operator=(const mock_cluster&) = delete;

  std::string bootstrap() const {
    return rd_kafka_mock_cluster_bootstraps(cluster_);
  }

  /// Creates `topic` with `partitions` partitions (replication 1).
  void topic(const std::string& name, int partitions) {
    REQUIRE(rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1)
            == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  /// Takes broker `id` (-1: all) down: its connections drop, new ones are
  /// refused.
  void down(int id = -1) {
    REQUIRE(rd_kafka_mock_broker_set_down(cluster_, id)
            == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  void up(int id = -1) {
    REQUIRE(rd_kafka_mock_broker_set_up(cluster_, id)
            == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

} // namespace es::test
