// The Kafka bus: the shared broker bus actor (es/bus/detail/broker_bus.hpp)
// producing keyed messages and waiting for their delivery reports, and one
// consumer actor per consumer group, under the bus's supervisor, that polls
// batches, hands them to the local subscribers and commits their offsets
// once handled. All are detached: librdkafka's calls block.
#include "es/bus/detail/broker_bus.hpp"
#include "es/bus/detail/consumer.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/kafka/kafka.hpp"
#include "es/store/codec.hpp"
#include "es/store/log.hpp"
#include "es/store/uuid.hpp"
#include "es/supervision/retry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace es {

namespace {

using detail::group_registry_ptr;
using detail::local_sub;

// -- librdkafka helpers -------------------------------------------------------

int ms(std::chrono::milliseconds x) {
  return static_cast<int>(std::max<int64_t>(0, x.count()));
}

/// Leaves the consumer's group (committing nothing more), waiting at most
/// `limit`: a plain close waits for a coordinator that may be gone.
void close_consumer(rd_kafka_t* rk, std::chrono::milliseconds limit) {
  auto* q = rd_kafka_queue_new(rk);
  if (auto* err = rd_kafka_consumer_close_queue(rk, q))
    rd_kafka_error_destroy(err);
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!rd_kafka_consumer_closed(rk)
         && std::chrono::steady_clock::now() < deadline)
    if (auto* ev = rd_kafka_queue_poll(q, 50))
      rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
}

/// Destroys a handle without the implicit (unbounded) consumer close; a
/// consumer is closed with `close_consumer` first.
struct kafka_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};

using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;

caf::error unavailable(const std::string& what, const caf::error& why) {
  return caf::make_error(bus_errc::broker_unavailable,
                         what + ": " + describe(why));
}

/// What every actor of one bus knows.
struct bus_setup {
  kafka_bus_config cfg;
  std::string topic;
  std::string dlq;
  std::string done;
  std::string client_id;
  std::shared_ptr<detail::consumer_counters> counters
    = std::make_shared<detail::consumer_counters>();
  /// Messages this process's consumers polled and did not commit yet.
  std::shared_ptr<std::atomic<int64_t>> held
    = std::make_shared<std::atomic<int64_t>>(0);
};

using setup_ptr = std::shared_ptr<const bus_setup>;

/// A configuration with the bus's common settings and `extra`.
caf::expected<rd_kafka_conf_t*>
make_conf(const bus_setup& s,
          std::vector<std::pair<std::string, std::string>> extra) {
  auto* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> all{
    {"bootstrap.servers", s.cfg.bootstrap_servers},
    {"client.id", s.client_id},
    {"socket.connection.setup.timeout.ms",
     std::to_string(std::max(1000, ms(s.cfg.connect_timeout)))}};
  // The caller's properties last: they win over the bus's own settings.
  all.insert(all.end(), extra.begin(), extra.end());
  all.insert(all.end(), s.cfg.properties.begin(), s.cfg.properties.end());
  char errstr[512];
  for (const auto& [k, v] : all)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return make_kafka_error(kafka_errc::invalid_config,
                              k + ": " + std::string{errstr});
    }
  return conf;
}

/// One produce call's messages, counted down by the delivery reports.
struct pending_batch {
  std::atomic<int64_t> left{0};
  std::mutex mtx;
  std::string first_error;
};

/// The delivery report: one per message, from `rd_kafka_poll`.
void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  auto* batch = static_cast<std::shared_ptr<pending_batch>*>(m->_private);
  if (batch == nullptr)
    return;
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::lock_guard guard{(*batch)->mtx};
    if ((*batch)->first_error.empty())
      (*batch)->first_error = rd_kafka_err2str(m->err);
  }
  --(*batch)->left;
  delete batch;
}

caf::expected<kafka_ptr> make_producer(const bus_setup& s) {
  std::vector<std::pair<std::string, std::string>> extra{
    {"acks", s.cfg.acks},
    {"compression.type", s.cfg.compression_type},
    {"message.timeout.ms", std::to_string(ms(s.cfg.delivery_timeout))}};
  if (s.cfg.acks == "all" || s.cfg.acks == "-1")
    extra.emplace_back("enable.idempotence", "true");
  auto conf = make_conf(s, std::move(extra));
  if (!conf)
    return std::move(conf.error());
  rd_kafka_conf_set_dr_msg_cb(*conf, on_delivery);
  char errstr[512];
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return make_kafka_error(kafka_errc::invalid_config, errstr);
  }
  return kafka_ptr{rk};
}

/// A message to produce.
struct outgoing {
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Produces `msgs` to `topic` and waits for every delivery report.
caf::error produce_all(rd_kafka_t* rk, const std::string& topic,
                       const std::vector<outgoing>& msgs,
                       std::chrono::milliseconds timeout) {
  auto batch = std::make_shared<pending_batch>();
  batch->left = static_cast<int64_t>(msgs.size());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& m : msgs) {
    auto* hdrs = rd_kafka_headers_new(m.headers.size());
    for (const auto& [k, v] : m.headers)
      rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()),
                          v.data(), static_cast<ssize_t>(v.size()));
    auto* opaque = new std::shared_ptr<pending_batch>(batch);
    for (;;) {
      auto err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()),
        RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        break; // the headers belong to librdkafka now
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL
          && std::chrono::steady_clock::now() < deadline) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      rd_kafka_headers_destroy(hdrs);
      delete opaque;
      --batch->left;
      std::lock_guard guard{batch->mtx};
      if (batch->first_error.empty())
        batch->first_error = rd_kafka_err2str(err);
      break;
    }
  }
  while (batch->left.load() > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    rd_kafka_poll(rk, std::min(100, ms(left)));
  }
  if (auto n = batch->left.load(); n > 0)
    return make_kafka_error(kafka_errc::produce_failed,
                            std::to_string(n) + " of "
                              + std::to_string(msgs.size()) + " messages to "
                              + topic
                              + " not acknowledged in time (they may still "
                                "be written)");
  std::lock_guard guard{batch->mtx};
  if (!batch->first_error.empty())
    return make_kafka_error(kafka_errc::produce_failed,
                            "producing to " + topic
                              + " failed: " + batch->first_error);
  return caf::none;
}

/// The partitions of `topic` (creating it where the cluster creates topics
/// on first use).
caf::expected<std::vector<int32_t>>
partitions_of(rd_kafka_t* rk, const std::string& topic,
              std::chrono::milliseconds timeout) {
  auto* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(rk, 0, rkt, &md, ms(timeout));
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return make_kafka_error(kafka_errc::connection_failed,
                            "no metadata for " + topic + ": "
                              + rd_kafka_err2str(err));
  std::vector<int32_t> result;
  rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (topic != t.topic)
      continue;
    topic_err = t.err;
    for (int j = 0; j < t.partition_cnt; ++j)
      result.push_back(t.partitions[j].id);
  }
  rd_kafka_metadata_destroy(md);
  // A topic nobody wrote to yet (where the cluster does not create topics
  // on a metadata request): no partitions, nothing in it.
  if (topic_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    return std::vector<int32_t>{};
  if (topic_err != RD_KAFKA_RESP_ERR_NO_ERROR && result.empty())
    return make_kafka_error(kafka_errc::server_error,
                            topic + ": " + rd_kafka_err2str(topic_err));
  std::sort(result.begin(), result.end());
  return result;
}

/// One message as polled.
struct incoming {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

incoming copy_message(const rd_kafka_message_t* m) {
  incoming x;
  x.topic = rd_kafka_topic_name(m->rkt);
  x.partition = m->partition;
  x.offset = m->offset;
  if (m->key != nullptr)
    x.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload != nullptr)
    x.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size)
                       == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i)
      x.headers[name] = value != nullptr
                          ? std::string{static_cast<const char*>(value), size}
                          : std::string{};
  }
  return x;
}

std::string now_text() {
  return format_timestamp(std::chrono::time_point_cast<timestamp::duration>(
    std::chrono::system_clock::now()));
}

// -- the consumer of one group --------------------------------------------

caf::expected<kafka_ptr> make_group_consumer(const bus_setup& s,
                                             const std::string& group) {
  auto conf = make_conf(
    s, {{"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        {"session.timeout.ms", std::to_string(ms(s.cfg.session_timeout))},
        {"max.poll.interval.ms", std::to_string(ms(s.cfg.max_poll_interval))}});
  if (!conf)
    return std::move(conf.error());
  char errstr[512];
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return make_kafka_error(kafka_errc::invalid_config, errstr);
  }
  rd_kafka_poll_set_consumer(rk);
  return kafka_ptr{rk};
}

struct consumer_state : detail::consumer_base {
  static inline const char* name = "es.kafka_consumer";

  setup_ptr setup;
  /// In the group, subscribed; closed (leaving the group, so that its
  /// partitions move at once) and made again after any failure, which
  /// also rewinds to the committed offsets.
  kafka_ptr consumer;
  kafka_ptr dlq_producer;

  void close() {
    if (consumer) {
      close_consumer(consumer.get(), setup->cfg.connect_timeout);
      consumer.reset();
    }
  }

  ~consumer_state() {
    close();
    if (dlq_producer)
      rd_kafka_flush(dlq_producer.get(), 1000);
  }
};

using consumer_actor = caf::stateful_actor<consumer_state>;

caf::error ensure_ready(consumer_state& st) {
  if (st.consumer)
    return caf::none;
  auto c = make_group_consumer(*st.setup, st.group);
  if (!c)
    return std::move(c.error());
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, st.setup->topic.c_str(),
                                    RD_KAFKA_PARTITION_UA);
  auto err = rd_kafka_subscribe(c->get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return make_kafka_error(kafka_errc::server_error,
                            "subscribing group " + st.group
                              + " failed: " + rd_kafka_err2str(err));
  st.consumer = std::move(*c);
  return caf::none;
}

/// Dead letters, produced to the DLQ topic and waited for.
caf::error produce_dead_letters(consumer_state& st,
                                const std::vector<outgoing>& letters) {
  if (letters.empty())
    return caf::none;
  if (!st.dlq_producer) {
    auto p = make_producer(*st.setup);
    if (!p)
      return std::move(p.error());
    st.dlq_producer = std::move(*p);
  }
  return produce_all(st.dlq_producer.get(), st.setup->dlq, letters,
                     st.setup->cfg.delivery_timeout);
}

outgoing dead_letter_of(const consumer_state& st, const incoming& m,
                        const std::string& why) {
  outgoing x;
  x.key = m.key;
  x.value = m.value;
  for (const auto& [k, v] : m.headers)
    if (k.rfind("x-es-", 0) != 0)
      x.headers.emplace_back(k, v);
  x.headers.emplace_back("x-es-dead-letter-id", uuid::random().to_string());
  x.headers.emplace_back("x-es-error", why);
  x.headers.emplace_back("x-es-group", st.group);
  x.headers.emplace_back("x-es-origin", m.topic + "/"
                                          + std::to_string(m.partition) + "/"
                                          + std::to_string(m.offset));
  x.headers.emplace_back("x-es-deliveries", "1");
  x.headers.emplace_back("x-es-failed-at", now_text());
  return x;
}

/// Whether a commit failed because the group's membership changed under it
/// (a rebalance is under way, or this member was dropped and rejoins).
bool rebalancing(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS
         || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
         || err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

/// Handles a batch, then commits the offsets after it.
caf::error process(consumer_actor* self, const std::vector<incoming>& batch) {
  auto& st = self->state;
  const auto& cfg = st.setup->cfg;
  auto& counters = *st.setup->counters;
  std::vector<outgoing> letters;
  auto dead = [&](const incoming& m, const std::string& why) {
    log(log_level::warning,
        "kafka bus: group " + st.group + " gives up " + m.topic + "/"
          + std::to_string(m.partition) + "/" + std::to_string(m.offset) + ": "
          + why,
        log_context{"bus"});
    if (cfg.enable_dlq) {
      letters.push_back(dead_letter_of(st, m, why));
      ++counters.dead_lettered;
    }
  };
  std::vector<std::string_view> bodies;
  for (const auto& m : batch)
    bodies.emplace_back(m.value);
  for (const auto& [i, why] : detail::handle_envelopes(
         self->system(), st.subs, bodies, cfg.max_retries, counters))
    dead(batch[i], why);
  if (auto err = produce_dead_letters(st, letters))
    return err;
  std::map<std::pair<std::string, int32_t>, int64_t> next;
  for (const auto& m : batch) {
    auto& x = next[{m.topic, m.partition}];
    x = std::max(x, m.offset + 1);
  }
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(next.size()));
  for (const auto& [tp, offset] : next)
    rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second)->offset
      = offset;
  auto err = rd_kafka_commit(st.consumer.get(), list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    return caf::none;
  if (rebalancing(err)) {
    // The group is moving partitions (a member joined or left). Leaving it
    // now, as after a failure, would start one more rebalance, in which
    // the other members' commits fail in turn. Staying is enough: whoever
    // owns these partitions next reads them from the committed offsets.
    log(log_level::info,
        "kafka bus: group " + st.group
          + " is rebalancing; its last batch comes again to the partitions' "
            "next owners ("
          + rd_kafka_err2str(err) + ")",
        log_context{"bus"});
    return caf::none;
  }
  return make_kafka_error(kafka_errc::server_error,
                          "committing the offsets of group " + st.group
                            + " failed (the batch comes again): "
                            + rd_kafka_err2str(err));
}

caf::error poll_once(consumer_actor* self) {
  auto& st = self->state;
  if (auto err = ensure_ready(st))
    return err;
  std::vector<incoming> batch;
  auto limit = std::max<size_t>(1, st.setup->cfg.batch_size);
  // Polls (and so takes part in a rebalance) only between batches, after
  // the previous one was committed.
  auto wait = ms(st.setup->cfg.block);
  while (batch.size() < limit) {
    auto* m
      = rd_kafka_consumer_poll(st.consumer.get(), batch.empty() ? wait : 0);
    if (m == nullptr)
      break;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      auto text = std::string{rd_kafka_message_errstr(m)};
      rd_kafka_message_destroy(m);
      char buf[256];
      if (rd_kafka_fatal_error(st.consumer.get(), buf, sizeof(buf))
          != RD_KAFKA_RESP_ERR_NO_ERROR)
        return make_kafka_error(kafka_errc::server_error,
                                "fatal consumer error: " + std::string{buf});
      log(log_level::warning,
          "kafka bus: group " + st.group + " consumer: " + text,
          log_context{"bus"});
      break;
    }
    batch.push_back(copy_message(m));
    rd_kafka_message_destroy(m);
  }
  if (batch.empty())
    return caf::none;
  auto& held = *st.setup->held;
  held += static_cast<int64_t>(batch.size());
  auto err = process(self, batch);
  held -= static_cast<int64_t>(batch.size());
  return err;
}

caf::behavior consumer_impl(consumer_actor* self, setup_ptr setup,
                            group_registry_ptr registry, std::string group) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.registry = std::move(registry);
  st.group = std::move(group);
  detail::consumer_hooks hooks;
  hooks.label = "kafka bus";
  hooks.idle_pause = st.setup->cfg.block;
  hooks.backoff = st.setup->cfg.reconnect;
  hooks.poll = [self] {
    return poll_once(self);
  };
  // Nobody to hand messages to: leave the group, so that the other members
  // take the partitions. After a failure: back to the committed offsets,
  // so what was polled comes again.
  hooks.idle = [self] {
    self->state.close();
  };
  hooks.failed = hooks.idle;
  return detail::consumer_loop(self, st, *st.setup->counters, std::move(hooks));
}

// -- the publisher ------------------------------------------------------------

/// Watermarks and committed offsets, for drains and operators.
class topic_observer {
public:
  explicit topic_observer(const bus_setup& s) : setup_(s) {
    // nop
  }

  /// Messages of `topic` not committed by `group`, summed over partitions.
  caf::expected<int64_t> lag(rd_kafka_t* rk, const std::string& topic,
                             const std::string& group) {
    auto parts = partitions_of(rk, topic, setup_.cfg.connect_timeout);
    if (!parts)
      return std::move(parts.error());
    auto& c = group_handles_[group];
    if (!c) {
      auto conf = make_conf(
        setup_, {{"group.id", group}, {"enable.auto.commit", "false"}});
      if (!conf)
        return std::move(conf.error());
      char errstr[512];
      auto* h = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, errstr, sizeof(errstr));
      if (h == nullptr) {
        rd_kafka_conf_destroy(*conf);
        return make_kafka_error(kafka_errc::invalid_config, errstr);
      }
      c.reset(h);
    }
    auto* list
      = rd_kafka_topic_partition_list_new(static_cast<int>(parts->size()));
    for (auto p : *parts)
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    auto err
      = rd_kafka_committed(c.get(), list, ms(setup_.cfg.connect_timeout));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_topic_partition_list_destroy(list);
      return make_kafka_error(kafka_errc::connection_failed,
                              "reading the offsets of group " + group + ": "
                                + rd_kafka_err2str(err));
    }
    int64_t total = 0;
    for (int i = 0; i < list->cnt; ++i) {
      int64_t lo = 0;
      int64_t hi = 0;
      auto werr = rd_kafka_query_watermark_offsets(
        rk, topic.c_str(), list->elems[i].partition, &lo, &hi,
        ms(setup_.cfg.connect_timeout));
      if (werr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(list);
        return make_kafka_error(kafka_errc::connection_failed,
                                "reading the watermarks of " + topic + ": "
                                  + rd_kafka_err2str(werr));
      }
      auto committed = list->elems[i].offset >= 0 ? list->elems[i].offset : lo;
      total += std::max<int64_t>(0, hi - committed);
    }
    rd_kafka_topic_partition_list_destroy(list);
    return total;
  }

private:
  const bus_setup& setup_;
  std::map<std::string, kafka_ptr> group_handles_;
};

class kafka_backend final : public detail::broker_backend {
public:
  kafka_backend(setup_ptr setup, kafka_ptr producer)
    : setup_(std::move(setup)), producer_(std::move(producer)),
      observer_(*setup_) {
    // nop
  }

  ~kafka_backend() override {
    rd_kafka_flush(producer_.get(), 1000);
  }

  caf::error publish(const recorded_events& events) override {
    std::vector<outgoing> msgs;
    msgs.reserve(events.size());
    for (const auto& ev : events) {
      auto body = encode_envelope(ev);
      if (!body)
        return std::move(body.error());
      msgs.push_back(outgoing{ev.aggregate_id.to_string(), std::move(*body),
                              envelope_headers(ev)});
    }
    if (auto err = produce_all(producer_.get(), setup_->topic, msgs,
                               setup_->cfg.delivery_timeout))
      return unavailable(
        "publishing " + std::to_string(events.size()) + " events failed", err);
    return caf::none;
  }

  caf::expected<bool> drained(const std::set<std::string>& groups) override {
    if (setup_->held->load() > 0)
      return false;
    for (const auto& g : groups) {
      auto lag = observer_.lag(producer_.get(), setup_->topic, g);
      if (!lag)
        return std::move(lag.error());
      if (*lag > 0)
        return false;
    }
    return setup_->held->load() == 0;
  }

  void idle() override {
    rd_kafka_poll(producer_.get(), 0);
  }

  caf::actor spawn_consumer(caf::actor_system& sys, const std::string& group,
                            group_registry_ptr registry) override {
    return sys.spawn<caf::detached>(consumer_impl, setup_, std::move(registry),
                                    group);
  }

private:
  setup_ptr setup_;
  kafka_ptr producer_;
  topic_observer observer_;
};

// -- dead letters -------------------------------------------------------------

/// Reads every message of `topic` from its start to its end, partition by
/// partition, with a consumer of no group.
caf::expected<std::vector<incoming>>
read_topic(const bus_setup& s, rd_kafka_t* meta, const std::string& topic) {
  auto parts = partitions_of(meta, topic, s.cfg.connect_timeout);
  if (!parts)
    return std::move(parts.error());
  std::vector<incoming> result;
  // A group of its own only so that the consumer API works; it assigns
  // partitions itself and commits nothing.
  auto conf
    = make_conf(s, {{"group.id", "es-reader-" + uuid::random().to_string()},
                    {"enable.partition.eof", "true"},
                    {"enable.auto.commit", "false"}});
  if (!conf)
    return std::move(conf.error());
  char errstr[512];
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return make_kafka_error(kafka_errc::invalid_config, errstr);
  }
  kafka_ptr reader{rk};
  rd_kafka_poll_set_consumer(rk);
  auto* list
    = rd_kafka_topic_partition_list_new(static_cast<int>(parts->size()));
  size_t waiting = 0;
  for (auto p : *parts) {
    int64_t lo = 0;
    int64_t hi = 0;
    if (rd_kafka_query_watermark_offsets(meta, topic.c_str(), p, &lo, &hi,
                                         ms(s.cfg.connect_timeout))
          == RD_KAFKA_RESP_ERR_NO_ERROR
        && hi > lo) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = lo;
      ++waiting;
    }
  }
  if (waiting > 0)
    rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  auto deadline = std::chrono::steady_clock::now() + s.cfg.delivery_timeout;
  while (waiting > 0 && std::chrono::steady_clock::now() < deadline) {
    auto* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
      --waiting;
    else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
      result.push_back(copy_message(m));
    rd_kafka_message_destroy(m);
  }
  close_consumer(rk, s.cfg.connect_timeout);
  if (waiting > 0)
    return make_kafka_error(kafka_errc::connection_failed,
                            "reading " + topic + " did not finish in time");
  std::stable_sort(
    result.begin(), result.end(), [](const auto& a, const auto& b) {
      return a.partition < b.partition
             || (a.partition == b.partition && a.offset < b.offset);
    });
  return result;
}

/// The dead letters: the DLQ topic minus the ids marked done.
class kafka_dead_letters final : public bus_dead_letters {
public:
  explicit kafka_dead_letters(setup_ptr setup) : setup_(std::move(setup)) {
    // nop
  }

  caf::expected<std::vector<bus_dead_letter>>
  list(size_t limit, const std::string& after) override {
    std::lock_guard guard{mtx_};
    auto open = open_letters();
    if (!open)
      return std::move(open.error());
    std::vector<bus_dead_letter> result;
    bool past = after.empty();
    for (const auto& m : *open) {
      auto letter = to_letter(m);
      if (!past) {
        past = letter.id == after;
        continue;
      }
      result.push_back(std::move(letter));
      if (result.size() >= std::max<size_t>(1, limit))
        break;
    }
    return result;
  }

  caf::expected<int64_t> count() override {
    std::lock_guard guard{mtx_};
    auto open = open_letters();
    if (!open)
      return std::move(open.error());
    return static_cast<int64_t>(open->size());
  }

  caf::expected<bool> replay(const std::string& id) override {
    std::lock_guard guard{mtx_};
    auto open = open_letters();
    if (!open)
      return std::move(open.error());
    for (const auto& m : *open) {
      if (header(m, "x-es-dead-letter-id") != id)
        continue;
      if (auto err = replay_one(m, id))
        return err;
      return true;
    }
    return false;
  }

  caf::expected<int64_t> replay_all() override {
    std::lock_guard guard{mtx_};
    auto open = open_letters();
    if (!open)
      return std::move(open.error());
    int64_t n = 0;
    for (const auto& m : *open) {
      if (!decode_envelope(m.value))
        continue;
      if (auto err = replay_one(m, header(m, "x-es-dead-letter-id")))
        return err;
      ++n;
    }
    return n;
  }

  caf::expected<bool> discard(const std::string& id) override {
    std::lock_guard guard{mtx_};
    auto open = open_letters();
    if (!open)
      return std::move(open.error());
    for (const auto& m : *open)
      if (header(m, "x-es-dead-letter-id") == id) {
        if (auto err = mark_done(id))
          return err;
        return true;
      }
    return false;
  }

private:
  static std::string header(const incoming& m, const std::string& k) {
    auto i = m.headers.find(k);
    return i == m.headers.end() ? std::string{} : i->second;
  }

  caf::error ensure_producer() {
    if (producer_)
      return caf::none;
    auto p = make_producer(*setup_);
    if (!p)
      return std::move(p.error());
    producer_ = std::move(*p);
    return caf::none;
  }

  caf::expected<std::vector<incoming>> open_letters() {
    if (auto err = ensure_producer())
      return err;
    auto letters = read_topic(*setup_, producer_.get(), setup_->dlq);
    if (!letters)
      return unavailable("reading the dead letters failed", letters.error());
    auto done = read_topic(*setup_, producer_.get(), setup_->done);
    if (!done)
      return unavailable("reading the dead letters failed", done.error());
    std::set<std::string> ids;
    for (const auto& m : *done)
      ids.insert(m.value);
    std::vector<incoming> result;
    for (auto& m : *letters)
      if (ids.count(header(m, "x-es-dead-letter-id")) == 0)
        result.push_back(std::move(m));
    return result;
  }

  caf::error mark_done(const std::string& id) {
    if (auto err
        = produce_all(producer_.get(), setup_->done, {outgoing{id, id, {}}},
                      setup_->cfg.delivery_timeout))
      return unavailable("marking dead letter " + id + " done failed", err);
    return caf::none;
  }

  caf::error replay_one(const incoming& m, const std::string& id) {
    if (!decode_envelope(m.value))
      return make_store_error(store_errc::invalid_argument,
                              "dead letter " + id
                                + " holds no event envelope; discard it");
    outgoing x;
    x.key = m.key;
    x.value = m.value;
    for (const auto& [k, v] : m.headers)
      if (k.rfind("x-es-", 0) != 0)
        x.headers.emplace_back(k, v);
    if (auto err = produce_all(producer_.get(), setup_->topic, {x},
                               setup_->cfg.delivery_timeout))
      return unavailable("replaying dead letter " + id + " failed", err);
    return mark_done(id);
  }

  static bus_dead_letter to_letter(const incoming& m) {
    bus_dead_letter d;
    d.id = header(m, "x-es-dead-letter-id");
    d.group = header(m, "x-es-group");
    d.error = header(m, "x-es-error");
    d.failed_at = header(m, "x-es-failed-at");
    auto n = header(m, "x-es-deliveries");
    d.deliveries = n.empty() ? 0 : std::strtoll(n.c_str(), nullptr, 10);
    d.raw = m.value;
    if (auto ev = decode_envelope(d.raw))
      d.event = std::move(*ev);
    return d;
  }

  setup_ptr setup_;
  std::mutex mtx_;
  kafka_ptr producer_;
};

caf::expected<std::shared_ptr<bus_setup>> make_setup(kafka_bus_config cfg) {
  auto invalid = [](std::string why) {
    return make_kafka_error(kafka_errc::invalid_config, std::move(why));
  };
  if (cfg.bootstrap_servers.empty())
    return invalid("a Kafka bus needs bootstrap servers");
  if (cfg.topic_prefix.empty() || cfg.consumer_group.empty())
    return invalid("a Kafka bus needs a topic prefix and a consumer group");
  auto s = std::make_shared<bus_setup>();
  s->topic = cfg.topic_prefix + ".events";
  s->dlq = cfg.topic_prefix + ".dlq";
  s->done = cfg.topic_prefix + ".dlq-done";
  if (cfg.client_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    s->client_id = "es-" + std::string{host} + "-" + std::to_string(getpid());
  } else {
    s->client_id = cfg.client_id;
  }
  s->cfg = std::move(cfg);
  return s;
}

} // namespace

caf::expected<event_bus_ptr> make_kafka_bus(caf::actor_system& sys,
                                            kafka_bus_config cfg) {
  auto setup = make_setup(std::move(cfg));
  if (!setup)
    return std::move(setup.error());
  auto producer = make_producer(**setup);
  if (!producer)
    return std::move(producer.error());
  // Fail fast when no broker answers; this also creates the topic where
  // the cluster creates topics on first use.
  if (auto parts = partitions_of(producer->get(), (*setup)->topic,
                                 (*setup)->cfg.connect_timeout);
      !parts)
    return std::move(parts.error());
  detail::broker_bus_options opts;
  opts.broker = "Kafka";
  opts.default_group = (*setup)->cfg.consumer_group;
  opts.breaker = (*setup)->cfg.breaker;
  opts.consumer_restarts = (*setup)->cfg.consumer_restarts;
  opts.idle_interval = std::chrono::milliseconds(500);
  auto backend = std::make_shared<kafka_backend>(*setup, std::move(*producer));
  return detail::make_broker_bus(sys, std::move(backend), std::move(opts),
                                 (*setup)->counters,
                                 std::make_shared<kafka_dead_letters>(*setup));
}

supervisor_actor kafka_bus_supervisor(const event_bus_ptr& bus) {
  return detail::broker_bus_supervisor(bus, "Kafka");
}

caf::expected<kafka_bus_info>
read_kafka_bus_info(const kafka_bus_config& cfg,
                    std::vector<std::string> groups) {
  auto setup = make_setup(cfg);
  if (!setup)
    return std::move(setup.error());
  auto& s = **setup;
  auto producer = make_producer(s);
  if (!producer)
    return std::move(producer.error());
  auto* rk = producer->get();
  auto parts = partitions_of(rk, s.topic, s.cfg.connect_timeout);
  if (!parts)
    return std::move(parts.error());
  kafka_bus_info info;
  info.partitions = static_cast<int32_t>(parts->size());
  for (auto p : *parts) {
    int64_t lo = 0;
    int64_t hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, s.topic.c_str(), p, &lo, &hi,
                                         ms(s.cfg.connect_timeout))
        == RD_KAFKA_RESP_ERR_NO_ERROR)
      info.messages += hi - lo;
  }
  if (groups.empty())
    groups.push_back(s.cfg.consumer_group);
  topic_observer observer{s};
  for (const auto& g : groups) {
    auto lag = observer.lag(rk, s.topic, g);
    if (!lag)
      return std::move(lag.error());
    info.lag.emplace_back(g, *lag);
  }
  kafka_dead_letters dlq{*setup};
  auto n = dlq.count();
  if (!n)
    return std::move(n.error());
  info.dead_letters = *n;
  return info;
}

} // namespace es
