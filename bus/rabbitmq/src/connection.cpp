#include "connection.hpp"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <algorithm>
#include <fstream>
#include <utility>

namespace es::detail::amqp {

namespace {

constexpr amqp_channel_t channel = 1;

timeval to_timeval(std::chrono::milliseconds x) {
  auto ms = std::max<int64_t>(0, x.count());
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

amqp_bytes_t bytes(const std::string& x) {
  amqp_bytes_t result;
  result.len = x.size();
  result.bytes = const_cast<char*>(x.data());
  return result;
}

std::string str(amqp_bytes_t x) {
  if (x.bytes == nullptr)
    return {};
  return std::string{static_cast<const char*>(x.bytes), x.len};
}

/// A string table entry (the strings must outlive the table's use).
amqp_table_entry_t entry(const std::string& key, const std::string& value) {
  amqp_table_entry_t e;
  e.key = bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

/// Reads the string and integer headers of `props`.
void read_headers(const amqp_basic_properties_t& props, message& out) {
  if ((props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0)
    out.message_id = str(props.message_id);
  if ((props._flags & AMQP_BASIC_HEADERS_FLAG) == 0)
    return;
  for (int i = 0; i < props.headers.num_entries; ++i) {
    const auto& e = props.headers.entries[i];
    auto key = str(e.key);
    std::string value;
    bool number = true;
    int64_t n = 0;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        value = str(e.value.value.bytes);
        number = false;
        break;
      case AMQP_FIELD_KIND_I8: n = e.value.value.i8; break;
      case AMQP_FIELD_KIND_U8: n = e.value.value.u8; break;
      case AMQP_FIELD_KIND_I16: n = e.value.value.i16; break;
      case AMQP_FIELD_KIND_U16: n = e.value.value.u16; break;
      case AMQP_FIELD_KIND_I32: n = e.value.value.i32; break;
      case AMQP_FIELD_KIND_U32: n = e.value.value.u32; break;
      case AMQP_FIELD_KIND_I64: n = e.value.value.i64; break;
      case AMQP_FIELD_KIND_U64:
        n = static_cast<int64_t>(e.value.value.u64);
        break;
      default: continue; // tables, arrays, floats: not ours
    }
    if (number) {
      value = std::to_string(n);
      if (key == "x-delivery-count")
        out.delivery_count = n;
    }
    out.headers[key] = std::move(value);
  }
}

} // namespace

connection::connection(amqp_connection_state_t_* state,
                       std::chrono::milliseconds timeout, std::string where)
  : state_(state), timeout_(timeout), where_(std::move(where)) {
  // nop
}

connection::connection(connection&& other) noexcept
  : state_(std::exchange(other.state_, nullptr)), broken_(other.broken_),
    timeout_(other.timeout_), where_(std::move(other.where_)),
    next_tag_(other.next_tag_), confirms_(other.confirms_),
    unconfirmed_(std::move(other.unconfirmed_)), nacked_(other.nacked_) {
  // nop
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    this->~connection();
    new (this) connection(std::move(other));
  }
  return *this;
}

connection::~connection() {
  if (state_ == nullptr)
    return;
  if (!broken_) {
    // Polite close with a short limit; a dead broker must not hold us.
    auto tv = to_timeval(std::chrono::milliseconds(500));
    amqp_set_rpc_timeout(state_, &tv);
    amqp_channel_close(state_, channel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(state_);
  state_ = nullptr;
}

caf::expected<connection> connection::open(const amqp_url& url,
                                           const rabbitmq_bus_config& cfg) {
  auto where = url.host + ":" + std::to_string(url.port);
  auto* state = amqp_new_connection();
  if (state == nullptr)
    return make_rabbitmq_error(rabbitmq_errc::connection_failed,
                               "out of memory opening a connection to "
                                 + where);
  connection conn{state, cfg.command_timeout, where};
  amqp_socket_t* sock = nullptr;
  if (url.tls) {
    sock = amqp_ssl_socket_new(state);
    if (sock != nullptr) {
      if (!cfg.tls_ca_cert.empty()) {
        if (!std::ifstream{cfg.tls_ca_cert})
          return make_rabbitmq_error(rabbitmq_errc::invalid_config,
                                     "cannot read the CA file "
                                       + cfg.tls_ca_cert);
        if (amqp_ssl_socket_set_cacert(sock, cfg.tls_ca_cert.c_str())
            != AMQP_STATUS_OK)
          return make_rabbitmq_error(rabbitmq_errc::invalid_config,
                                     "the CA file " + cfg.tls_ca_cert
                                       + " holds no usable certificate");
      }
      amqp_ssl_socket_set_verify_peer(sock, cfg.tls_verify ? 1 : 0);
      amqp_ssl_socket_set_verify_hostname(sock, cfg.tls_verify ? 1 : 0);
    }
  } else {
    sock = amqp_tcp_socket_new(state);
  }
  if (sock == nullptr)
    return conn.fail(rabbitmq_errc::connection_failed,
                     "cannot create a socket for " + where);
  auto tv = to_timeval(cfg.connect_timeout);
  if (auto rc = amqp_socket_open_noblock(sock, url.host.c_str(), url.port, &tv);
      rc != AMQP_STATUS_OK)
    return conn.fail(
      rc == AMQP_STATUS_TIMEOUT ? rabbitmq_errc::timeout
                                : rabbitmq_errc::connection_failed,
      "cannot connect to RabbitMQ at " + where + ": " + amqp_error_string2(rc));
  amqp_set_handshake_timeout(state, &tv);
  auto rpc = to_timeval(cfg.command_timeout);
  amqp_set_rpc_timeout(state, &rpc);
  auto heartbeat = static_cast<int>(cfg.heartbeat.count());
  auto login = amqp_login(state, url.vhost.c_str(), 0, 131072, heartbeat,
                          AMQP_SASL_METHOD_PLAIN, url.user.c_str(),
                          url.password.c_str());
  if (auto err = conn.check_reply(login, "login"))
    return err;
  amqp_channel_open(state, channel);
  if (auto err = conn.check("channel.open"))
    return err;
  return conn;
}

caf::error connection::fail(rabbitmq_errc code, std::string text) {
  broken_ = true;
  return make_rabbitmq_error(code, std::move(text));
}

caf::error connection::check(const char* what) {
  return check_reply(amqp_get_rpc_reply(state_), what);
}

caf::error connection::check_reply(const amqp_rpc_reply_t& r,
                                   const char* what) {
  auto prefix = std::string{"RabbitMQ at "} + where_ + ": " + what + ": ";
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return caf::none;
    case AMQP_RESPONSE_NONE:
      return fail(rabbitmq_errc::connection_failed, prefix + "no answer");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return fail(r.library_error == AMQP_STATUS_TIMEOUT
                    ? rabbitmq_errc::timeout
                    : rabbitmq_errc::connection_failed,
                  prefix + amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION: break;
  }
  if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
    auto text = prefix + "connection closed: " + std::to_string(m->reply_code)
                + " " + str(m->reply_text);
    // Closing is done: answer it so the broker lets go of the socket.
    amqp_connection_close_ok_t ok;
    amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    if (m->reply_code == AMQP_ACCESS_REFUSED
        || m->reply_code == AMQP_NOT_ALLOWED)
      return fail(rabbitmq_errc::authentication_failed, std::move(text));
    return fail(rabbitmq_errc::server_error, std::move(text));
  }
  if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
    auto text = prefix + "channel closed: " + std::to_string(m->reply_code)
                + " " + str(m->reply_text);
    if (m->reply_code == AMQP_ACCESS_REFUSED)
      return fail(rabbitmq_errc::authentication_failed, std::move(text));
    return fail(rabbitmq_errc::server_error, std::move(text));
  }
  return fail(rabbitmq_errc::server_error, prefix + "unexpected answer");
}

caf::error connection::declare_exchange(const std::string& name,
                                        const std::string& type) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_exchange_declare(state_, channel, bytes(name), bytes(type), 0, 1, 0, 0,
                        amqp_empty_table);
  return check("exchange.declare");
}

caf::expected<std::pair<int64_t, int64_t>>
connection::declare_queue(const std::string& name, bool passive,
                          const std::string& queue_type,
                          const std::string& dlx) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  static const std::string type_key = "x-queue-type";
  static const std::string dlx_key = "x-dead-letter-exchange";
  amqp_table_entry_t entries[2];
  int n = 0;
  if (!queue_type.empty())
    entries[n++] = entry(type_key, queue_type);
  if (!dlx.empty())
    entries[n++] = entry(dlx_key, dlx);
  amqp_table_t args;
  args.num_entries = n;
  args.entries = entries;
  auto* ok = amqp_queue_declare(state_, channel, bytes(name), passive ? 1 : 0,
                                1, 0, 0, passive ? amqp_empty_table : args);
  if (auto err = check("queue.declare"))
    return err;
  return std::make_pair(static_cast<int64_t>(ok->message_count),
                        static_cast<int64_t>(ok->consumer_count));
}

caf::error connection::delete_queue(const std::string& name) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_queue_delete(state_, channel, bytes(name), 0, 0);
  return check("queue.delete");
}

caf::error connection::delete_exchange(const std::string& name) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_exchange_delete(state_, channel, bytes(name), 0);
  return check("exchange.delete");
}

caf::error connection::bind(const std::string& queue,
                            const std::string& exchange,
                            const std::string& key) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_queue_bind(state_, channel, bytes(queue), bytes(exchange), bytes(key),
                  amqp_empty_table);
  return check("queue.bind");
}

caf::error connection::confirm_select() {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_confirm_select(state_, channel);
  if (auto err = check("confirm.select"))
    return err;
  confirms_ = true;
  return caf::none;
}

caf::error connection::qos(uint16_t prefetch_count) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_basic_qos(state_, channel, 0, prefetch_count, 0);
  return check("basic.qos");
}

caf::error connection::consume(const std::string& queue) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_basic_consume(state_, channel, bytes(queue), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  return check("basic.consume");
}

caf::error connection::publish(const outgoing& msg) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  static const std::string json = "application/json";
  std::vector<amqp_table_entry_t> entries;
  entries.reserve(msg.headers.size());
  for (const auto& [k, v] : msg.headers)
    entries.push_back(entry(k, v));
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG
                 | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = bytes(json);
  props.delivery_mode = 2; // persistent
  props.headers.num_entries = static_cast<int>(entries.size());
  props.headers.entries = entries.data();
  if (!msg.message_id.empty()) {
    props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = bytes(msg.message_id);
  }
  auto rc
    = amqp_basic_publish(state_, channel, bytes(msg.exchange),
                         bytes(msg.routing_key), 0, 0, &props, bytes(msg.body));
  if (rc != AMQP_STATUS_OK)
    return fail(rabbitmq_errc::connection_failed,
                "RabbitMQ at " + where_
                  + ": publish: " + amqp_error_string2(rc));
  if (confirms_)
    unconfirmed_.insert(next_tag_++);
  return caf::none;
}

caf::error connection::wait_confirms() {
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (!unconfirmed_.empty()) {
    if (broken())
      return fail(rabbitmq_errc::connection_failed, "the connection is broken");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return fail(rabbitmq_errc::timeout,
                  "RabbitMQ at " + where_ + ": no confirm for "
                    + std::to_string(unconfirmed_.size())
                    + " messages in time");
    amqp_frame_t frame;
    auto tv = to_timeval(left);
    auto rc = amqp_simple_wait_frame_noblock(state_, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
      continue;
    if (rc != AMQP_STATUS_OK)
      return fail(rabbitmq_errc::connection_failed,
                  "RabbitMQ at " + where_
                    + ": waiting for confirms: " + amqp_error_string2(rc));
    if (frame.frame_type != AMQP_FRAME_METHOD)
      continue;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        if (a->multiple)
          unconfirmed_.erase(unconfirmed_.begin(),
                             unconfirmed_.upper_bound(a->delivery_tag));
        else
          unconfirmed_.erase(a->delivery_tag);
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto* a = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        if (a->multiple)
          unconfirmed_.erase(unconfirmed_.begin(),
                             unconfirmed_.upper_bound(a->delivery_tag));
        else
          unconfirmed_.erase(a->delivery_tag);
        nacked_ = true;
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        auto* m
          = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
        return fail(rabbitmq_errc::server_error,
                    "RabbitMQ at " + where_
                      + ": channel closed: " + std::to_string(m->reply_code)
                      + " " + str(m->reply_text));
      }
      case AMQP_CONNECTION_CLOSE_METHOD: {
        auto* m
          = static_cast<amqp_connection_close_t*>(frame.payload.method.decoded);
        return fail(rabbitmq_errc::connection_failed,
                    "RabbitMQ at " + where_
                      + ": connection closed: " + std::to_string(m->reply_code)
                      + " " + str(m->reply_text));
      }
      default: break;
    }
  }
  if (std::exchange(nacked_, false))
    return make_rabbitmq_error(rabbitmq_errc::publish_nacked,
                               "RabbitMQ at " + where_
                                 + " refused (nacked) published messages");
  return caf::none;
}

caf::expected<std::vector<message>>
connection::receive(size_t max, std::chrono::milliseconds first_wait) {
  std::vector<message> result;
  while (result.size() < max) {
    if (broken())
      return fail(rabbitmq_errc::connection_failed, "the connection is broken");
    amqp_maybe_release_buffers(state_);
    amqp_envelope_t env;
    auto tv
      = to_timeval(result.empty() ? first_wait : std::chrono::milliseconds{0});
    auto r = amqp_consume_message(state_, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      message m;
      m.delivery_tag = env.delivery_tag;
      m.redelivered = env.redelivered != 0;
      m.routing_key = str(env.routing_key);
      m.body = str(env.message.body);
      read_headers(env.message.properties, m);
      amqp_destroy_envelope(&env);
      result.push_back(std::move(m));
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
        && r.library_error == AMQP_STATUS_TIMEOUT)
      break;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
        && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // Something else than a delivery: read it.
      amqp_frame_t frame;
      auto zero = to_timeval(std::chrono::milliseconds{0});
      auto rc = amqp_simple_wait_frame_noblock(state_, &frame, &zero);
      if (rc == AMQP_STATUS_TIMEOUT)
        continue;
      if (rc != AMQP_STATUS_OK)
        return fail(rabbitmq_errc::connection_failed,
                    "RabbitMQ at " + where_ + ": " + amqp_error_string2(rc));
      if (frame.frame_type == AMQP_FRAME_METHOD) {
        switch (frame.payload.method.id) {
          case AMQP_CHANNEL_CLOSE_METHOD:
          case AMQP_CONNECTION_CLOSE_METHOD:
            return fail(rabbitmq_errc::connection_failed,
                        "RabbitMQ at " + where_
                          + " closed the channel or the connection");
          case AMQP_BASIC_CANCEL_METHOD:
            return fail(rabbitmq_errc::server_error,
                        "RabbitMQ at " + where_
                          + " cancelled the consumer (queue deleted?)");
          default: break;
        }
      }
      continue;
    }
    return fail(rabbitmq_errc::connection_failed,
                "RabbitMQ at " + where_ + ": receiving: "
                  + (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                       ? std::string{amqp_error_string2(r.library_error)}
                       : std::string{"the broker closed the channel"}));
  }
  return result;
}

caf::error connection::ack(uint64_t tag, bool multiple) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  if (auto rc = amqp_basic_ack(state_, channel, tag, multiple ? 1 : 0);
      rc != AMQP_STATUS_OK)
    return fail(rabbitmq_errc::connection_failed,
                "RabbitMQ at " + where_ + ": ack: " + amqp_error_string2(rc));
  return caf::none;
}

caf::error connection::reject(uint64_t tag, bool requeue) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  if (auto rc = amqp_basic_reject(state_, channel, tag, requeue ? 1 : 0);
      rc != AMQP_STATUS_OK)
    return fail(rabbitmq_errc::connection_failed,
                "RabbitMQ at " + where_
                  + ": reject: " + amqp_error_string2(rc));
  return caf::none;
}

caf::expected<std::optional<message>>
connection::get(const std::string& queue) {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  amqp_maybe_release_buffers(state_);
  auto r = amqp_basic_get(state_, channel, bytes(queue), 0);
  if (auto err = check_reply(r, "basic.get"))
    return err;
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
    return std::optional<message>{};
  auto* ok = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded);
  message m;
  m.delivery_tag = ok->delivery_tag;
  m.redelivered = ok->redelivered != 0;
  m.routing_key = str(ok->routing_key);
  amqp_message_t msg;
  auto rr = amqp_read_message(state_, channel, &msg, 0);
  if (auto err = check_reply(rr, "reading a message"))
    return err;
  m.body = str(msg.body);
  read_headers(msg.properties, m);
  amqp_destroy_message(&msg);
  return std::optional<message>{std::move(m)};
}

caf::error connection::service() {
  if (broken())
    return fail(rabbitmq_errc::connection_failed, "the connection is broken");
  for (;;) {
    amqp_frame_t frame;
    auto zero = to_timeval(std::chrono::milliseconds{0});
    auto rc = amqp_simple_wait_frame_noblock(state_, &frame, &zero);
    if (rc == AMQP_STATUS_TIMEOUT)
      return caf::none;
    if (rc != AMQP_STATUS_OK)
      return fail(rabbitmq_errc::connection_failed,
                  "RabbitMQ at " + where_ + ": " + amqp_error_string2(rc));
    if (frame.frame_type == AMQP_FRAME_METHOD
        && (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD
            || frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
      return fail(rabbitmq_errc::connection_failed,
                  "RabbitMQ at " + where_
                    + " closed the channel or the connection");
  }
}

} // namespace es::detail::amqp
