#include "kafka_baseline.hpp"

#include "es/bus/envelope.hpp"
#include "es/store/uuid.hpp"

#include "bus_scenarios.hpp"
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <vector>

namespace es::bench {

namespace {

std::atomic<int64_t> delivered{0};
std::atomic<int64_t> failed{0};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    ++failed;
  ++delivered;
}

} // namespace

run_result run_raw_kafka_produce(const bench_params& params,
                                 const std::string& bootstrap) {
  auto events = make_bench_events(params.events);
  struct raw_message {
    std::string key;
    std::string value;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::vector<raw_message> msgs;
  msgs.reserve(events.size());
  for (const auto& ev : events)
    msgs.push_back(raw_message{ev.aggregate_id.to_string(),
                               *encode_envelope(ev), envelope_headers(ev)});
  auto topic = "esbench-raw-" + uuid::random().to_string() + ".events";
  char errstr[512];
  auto* conf = rd_kafka_conf_new();
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
         {"bootstrap.servers", bootstrap},
         {"acks", "all"},
         {"enable.idempotence", "true"}})
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
      fail("esbench: " + std::string{errstr});
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr)
    fail("esbench: " + std::string{errstr});
  // Connected, with the topic's metadata, before the clock.
  auto* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    fail("esbench: the Kafka cluster does not answer");
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  run_result r;
  r.backend = "raw-librdkafka";
  r.scenario = "bus-publish";
  r.events = params.events;
  r.writers = 1;
  r.batch = params.batch;
  r.note = "(acks=all idempotent produce, delivery reports per batch, "
           "pre-encoded, one producer)";
  delivered = 0;
  failed = 0;
  auto batch = static_cast<size_t>(std::max(1, params.batch));
  int64_t sent = 0;
  auto start = clock::now();
  for (size_t i = 0; i < msgs.size(); i += batch) {
    auto t = clock::now();
    auto end = std::min(msgs.size(), i + batch);
    for (size_t j = i; j < end; ++j) {
      auto& m = msgs[j];
      auto* hdrs = rd_kafka_headers_new(m.headers.size());
      for (const auto& [k, v] : m.headers)
        rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()),
                            v.data(), static_cast<ssize_t>(v.size()));
      while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                               RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
                               RD_KAFKA_V_VALUE(m.value.data(), m.value.size()),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END)
             == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
      ++sent;
    }
    while (delivered.load() < sent)
      rd_kafka_poll(rk, 100);
    r.latencies_us.push_back(micros_since(t));
  }
  r.seconds = micros_since(start) / 1e6;
  if (failed.load() > 0)
    fail("esbench: raw produce failed");
  rd_kafka_destroy(rk);
  return r;
}

} // namespace es::bench
