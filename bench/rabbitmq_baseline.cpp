#include "rabbitmq_baseline.hpp"

#include "es/bus/envelope.hpp"
#include "es/store/uuid.hpp"

#include "bus_scenarios.hpp"
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <vector>

namespace es::bench {

namespace {

amqp_bytes_t bytes(const std::string& x) {
  return amqp_bytes_t{x.size(), const_cast<char*>(x.data())};
}

/// A raw connection with channel 1 open; exits the bench on failure.
amqp_connection_state_t connect(const std::string& url) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    fail("esbench: bad --amqp-url");
  auto conn = amqp_new_connection();
  auto* sock = amqp_tcp_socket_new(conn);
  if (sock == nullptr
      || amqp_socket_open(sock, info.host, info.port) != AMQP_STATUS_OK)
    fail("esbench: cannot connect to RabbitMQ");
  auto r = amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                      info.user, info.password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    fail("esbench: RabbitMQ refused the login");
  amqp_channel_open(conn, 1);
  if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
    fail("esbench: cannot open a RabbitMQ channel");
  return conn;
}

void close(amqp_connection_state_t conn) {
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

void must(amqp_connection_state_t conn, const char* what) {
  if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
    fail(std::string{"esbench: RabbitMQ refused "} + what);
}

/// One message, encoded before the clock.
struct raw_message {
  std::string routing_key;
  std::string body;
  std::string message_id;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<amqp_table_entry_t> entries;
};

} // namespace

run_result run_raw_rabbitmq_publish(const bench_params& params,
                                    const std::string& url) {
  auto events = make_bench_events(params.events);
  auto name = "esbench." + uuid::random().to_string();
  auto queue = name + ".default";
  std::vector<raw_message> msgs(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    auto& m = msgs[i];
    const auto& ev = events[i];
    m.routing_key = ev.aggregate_type + "." + ev.event_type;
    m.body = *encode_envelope(ev);
    m.message_id = ev.event_id.to_string();
    m.headers = envelope_headers(ev);
    for (const auto& [k, v] : m.headers) {
      amqp_table_entry_t e;
      e.key = bytes(k);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes(v);
      m.entries.push_back(e);
    }
  }
  static const std::string json = "application/json";
  auto conn = connect(url);
  amqp_exchange_declare(conn, 1, bytes(name), amqp_cstring_bytes("topic"), 0, 1,
                        0, 0, amqp_empty_table);
  must(conn, "exchange.declare");
  amqp_queue_declare(conn, 1, bytes(queue), 0, 1, 0, 0, amqp_empty_table);
  must(conn, "queue.declare");
  amqp_queue_bind(conn, 1, bytes(queue), bytes(name), amqp_cstring_bytes("#"),
                  amqp_empty_table);
  must(conn, "queue.bind");
  amqp_confirm_select(conn, 1);
  must(conn, "confirm.select");
  run_result r;
  r.backend = "raw-rabbitmq-c";
  r.scenario = "bus-publish";
  r.events = params.events;
  r.writers = 1;
  r.batch = params.batch;
  r.note = "(persistent publishes with confirms per batch, pre-encoded, "
           "one connection)";
  auto batch = static_cast<size_t>(std::max(1, params.batch));
  uint64_t sent = 0;
  uint64_t confirmed = 0;
  auto start = clock::now();
  for (size_t i = 0; i < msgs.size(); i += batch) {
    auto t = clock::now();
    auto end = std::min(msgs.size(), i + batch);
    for (size_t j = i; j < end; ++j) {
      auto& m = msgs[j];
      amqp_basic_properties_t props;
      props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG
                     | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG
                     | AMQP_BASIC_MESSAGE_ID_FLAG;
      props.content_type = bytes(json);
      props.delivery_mode = 2;
      props.message_id = bytes(m.message_id);
      props.headers.num_entries = static_cast<int>(m.entries.size());
      props.headers.entries = m.entries.data();
      if (amqp_basic_publish(conn, 1, bytes(name), bytes(m.routing_key), 0, 0,
                             &props, bytes(m.body))
          != AMQP_STATUS_OK)
        fail("esbench: raw publish failed");
      ++sent;
    }
    while (confirmed < sent) {
      amqp_frame_t frame;
      if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK)
        fail("esbench: raw confirm wait failed");
      if (frame.frame_type != AMQP_FRAME_METHOD)
        continue;
      if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD)
        fail("esbench: the broker nacked a raw publish");
      if (frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
        continue;
      auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      confirmed = a->multiple ? a->delivery_tag : confirmed + 1;
    }
    r.latencies_us.push_back(micros_since(t));
  }
  r.seconds = micros_since(start) / 1e6;
  amqp_queue_delete(conn, 1, bytes(queue), 0, 0);
  amqp_exchange_delete(conn, 1, bytes(name), 0);
  close(conn);
  return r;
}

void drop_rabbitmq_bus(const std::string& url, const std::string& name) {
  auto conn = connect(url);
  for (const auto& q : {name + ".default", name + ".dlq"})
    amqp_queue_delete(conn, 1, bytes(q), 0, 0);
  for (const auto& e : {name, name + ".dlx"})
    amqp_exchange_delete(conn, 1, bytes(e), 0);
  close(conn);
}

} // namespace es::bench
