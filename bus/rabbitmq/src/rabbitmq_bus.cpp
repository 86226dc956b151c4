// The RabbitMQ bus: the shared broker bus actor (es/bus/detail/
// broker_bus.hpp) publishing persistent messages with publisher confirms,
// and one consumer actor per consumer group, under the bus's supervisor,
// that consumes the group's durable queue, hands batches to the local
// subscribers and acknowledges them once handled. All are detached:
// rabbitmq-c blocks.
#include "es/bus/detail/broker_bus.hpp"
#include "es/bus/detail/consumer.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/rabbitmq/rabbitmq.hpp"
#include "es/store/codec.hpp"
#include "es/store/log.hpp"
#include "es/store/uuid.hpp"
#include "es/supervision/retry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "connection.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <random>
#include <set>

namespace es {

namespace {

using detail::group_registry_ptr;
using detail::local_sub;
using detail::amqp::connection;
using detail::amqp::message;
using detail::amqp::outgoing;

/// What every actor of one bus knows.
struct bus_setup {
  rabbitmq_bus_config cfg;
  amqp_url url;
  std::string dlx;
  std::string dlq;
  std::shared_ptr<detail::consumer_counters> counters
    = std::make_shared<detail::consumer_counters>();
  /// Messages this process's consumers received and did not acknowledge
  /// (or give back) yet.
  std::shared_ptr<std::atomic<int64_t>> held
    = std::make_shared<std::atomic<int64_t>>(0);

  std::string queue_of(const std::string& group) const {
    return cfg.exchange_name + "." + group;
  }
};

using setup_ptr = std::shared_ptr<const bus_setup>;

caf::error unavailable(const std::string& what, const caf::error& why) {
  return caf::make_error(bus_errc::broker_unavailable,
                         what + ": " + describe(why));
}

caf::expected<connection> connect(const bus_setup& s) {
  return connection::open(s.url, s.cfg);
}

std::vector<std::string> binding_keys(const rabbitmq_bus_config& cfg) {
  if (!cfg.binding_keys.empty())
    return cfg.binding_keys;
  if (cfg.exchange_type == "topic")
    return {"#"};
  return {""};
}

/// Declares the exchange, the dead-letter exchange and queue.
caf::error declare_exchanges(connection& conn, const bus_setup& s) {
  if (auto err
      = conn.declare_exchange(s.cfg.exchange_name, s.cfg.exchange_type))
    return err;
  if (!s.cfg.enable_dlq)
    return caf::none;
  if (auto err = conn.declare_exchange(s.dlx, "fanout"))
    return err;
  if (auto r = conn.declare_queue(s.dlq, false, "classic"); !r)
    return std::move(r.error());
  return conn.bind(s.dlq, s.dlx, "");
}

/// Declares the durable queue of `group` and binds it to the exchange.
caf::error declare_group(connection& conn, const bus_setup& s,
                         const std::string& group) {
  auto queue = s.queue_of(group);
  if (auto r = conn.declare_queue(queue, false, s.cfg.queue_type,
                                  s.cfg.enable_dlq ? s.dlx : std::string{});
      !r)
    return std::move(r.error());
  for (const auto& key : binding_keys(s.cfg))
    if (auto err = conn.bind(queue, s.cfg.exchange_name, key))
      return err;
  return caf::none;
}

std::vector<std::string> declared_groups(const rabbitmq_bus_config& cfg) {
  std::vector<std::string> groups = cfg.declare_groups;
  if (groups.empty())
    groups.push_back(cfg.consumer_group);
  return groups;
}

std::string now_text() {
  return format_timestamp(std::chrono::time_point_cast<timestamp::duration>(
    std::chrono::system_clock::now()));
}

// -- the consumer of one group --------------------------------------------

struct consumer_state : detail::consumer_base {
  static inline const char* name = "es.rabbitmq_consumer";

  setup_ptr setup;
  /// Consuming the group's queue; dropped (so the broker hands its
  /// unacknowledged messages out again) after any failure.
  std::optional<connection> conn;
  /// Publishes dead letters, with confirms.
  std::optional<connection> dlq_conn;
};

using consumer_actor = caf::stateful_actor<consumer_state>;

caf::error ensure_ready(consumer_state& st) {
  if (st.conn && st.conn->broken())
    st.conn.reset();
  if (st.conn)
    return caf::none;
  auto c = connect(*st.setup);
  if (!c)
    return unavailable("the consumer of group " + st.group + " cannot connect",
                       c.error());
  auto& s = *st.setup;
  if (auto err = declare_exchanges(*c, s))
    return err;
  if (auto err = declare_group(*c, s, st.group))
    return err;
  if (auto err = c->qos(std::max<uint16_t>(1, s.cfg.prefetch_count)))
    return err;
  if (auto err = c->consume(s.queue_of(st.group)))
    return err;
  st.conn.emplace(std::move(*c));
  return caf::none;
}

/// Publishes dead letters to the dead-letter exchange and waits for the
/// broker's confirms.
caf::error publish_dead_letters(consumer_state& st,
                                const std::vector<outgoing>& letters) {
  if (letters.empty())
    return caf::none;
  if (st.dlq_conn && st.dlq_conn->broken())
    st.dlq_conn.reset();
  if (!st.dlq_conn) {
    auto c = connect(*st.setup);
    if (!c)
      return unavailable("the dead-letter publisher cannot connect", c.error());
    if (auto err = declare_exchanges(*c, *st.setup))
      return err;
    if (auto err = c->confirm_select())
      return err;
    st.dlq_conn.emplace(std::move(*c));
  }
  for (const auto& x : letters)
    if (auto err = st.dlq_conn->publish(x))
      return err;
  return st.dlq_conn->wait_confirms();
}

/// A dead letter of `m`: its body and headers, why, and where it came from.
outgoing dead_letter_of(const consumer_state& st, const message& m,
                        const std::string& why) {
  outgoing x;
  x.exchange = st.setup->dlx;
  x.routing_key = m.routing_key;
  x.body = m.body;
  x.message_id = uuid::random().to_string();
  for (const auto& [k, v] : m.headers)
    if (k.rfind("x-es-", 0) != 0 && k.rfind("x-death", 0) != 0)
      x.headers.emplace_back(k, v);
  auto deliveries
    = m.delivery_count >= 0 ? m.delivery_count + 1 : (m.redelivered ? 2 : 1);
  x.headers.emplace_back("x-es-error", why);
  x.headers.emplace_back("x-es-group", st.group);
  x.headers.emplace_back("x-es-routing-key", m.routing_key);
  x.headers.emplace_back("x-es-original-id", m.message_id);
  x.headers.emplace_back("x-es-deliveries", std::to_string(deliveries));
  x.headers.emplace_back("x-es-failed-at", now_text());
  return x;
}

/// Handles a batch and acknowledges it.
caf::error process(consumer_actor* self, std::vector<message>& batch) {
  auto& st = self->state;
  const auto& cfg = st.setup->cfg;
  auto& counters = *st.setup->counters;
  std::vector<outgoing> letters;
  auto dead = [&](const message& m, const std::string& why) {
    log(log_level::warning,
        "rabbitmq bus: group " + st.group + " gives up message " + m.message_id
          + ": " + why,
        log_context{"bus"});
    if (cfg.enable_dlq) {
      letters.push_back(dead_letter_of(st, m, why));
      ++counters.dead_lettered;
    } else {
      log(log_level::error,
          "rabbitmq bus: enable_dlq is off; message " + m.message_id
            + " of group " + st.group + " is dropped",
          log_context{"bus"});
    }
  };
  std::vector<std::string_view> bodies;
  for (const auto& m : batch)
    bodies.emplace_back(m.body);
  auto gives_up = detail::handle_envelopes(
    self->system(), st.subs, bodies, cfg.max_retries, counters,
    [&](size_t i) -> std::optional<std::string> {
      // Delivered too often already (a quorum queue counts): its
      // consumers died while handling it.
      const auto& m = batch[i];
      if (m.delivery_count > static_cast<int64_t>(cfg.max_retries))
        return "delivered " + std::to_string(m.delivery_count + 1)
               + " times without being acknowledged";
      return std::nullopt;
    });
  for (const auto& [i, why] : gives_up)
    dead(batch[i], why);
  if (auto err = publish_dead_letters(st, letters))
    return err;
  // Every message of the batch is handled or dead-lettered: one ack for
  // all of them (delivery tags grow on the channel).
  return st.conn->ack(batch.back().delivery_tag, true);
}

caf::error poll_once(consumer_actor* self) {
  auto& st = self->state;
  if (auto err = ensure_ready(st))
    return err;
  auto batch = st.conn->receive(
    std::max<size_t>(1, st.setup->cfg.prefetch_count), st.setup->cfg.block);
  if (!batch)
    return unavailable("reading the queue of group " + st.group + " failed",
                       batch.error());
  if (batch->empty())
    return caf::none;
  auto& held = *st.setup->held;
  held += static_cast<int64_t>(batch->size());
  auto err = process(self, *batch);
  held -= static_cast<int64_t>(batch->size());
  return err;
}

caf::behavior consumer_impl(consumer_actor* self, setup_ptr setup,
                            group_registry_ptr registry, std::string group) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.registry = std::move(registry);
  st.group = std::move(group);
  detail::consumer_hooks hooks;
  hooks.label = "rabbitmq bus";
  hooks.idle_pause = st.setup->cfg.block;
  hooks.backoff = st.setup->cfg.reconnect;
  hooks.poll = [self] {
    auto err = poll_once(self);
    if (!err && self->state.dlq_conn)
      static_cast<void>(self->state.dlq_conn->service());
    return err;
  };
  // Nobody to hand messages to: stop consuming, so that the queue keeps
  // them (or other members take them).
  hooks.idle = [self] {
    self->state.conn.reset();
  };
  // A new connection: the broker hands what this one held out again.
  hooks.failed = [self] {
    self->state.conn.reset();
    self->state.dlq_conn.reset();
  };
  return detail::consumer_loop(self, st, *st.setup->counters, std::move(hooks));
}

// -- the publisher ------------------------------------------------------------

class rabbitmq_backend final : public detail::broker_backend {
public:
  rabbitmq_backend(setup_ptr setup, connection first)
    : setup_(std::move(setup)), conn_(std::move(first)) {
    // nop
  }

  caf::error publish(const recorded_events& events) override {
    auto err = publish_once(events);
    if (err && has_code(err, bus_errc::broker_unavailable)) {
      // Once more on a new connection; what the broker took in part is
      // published twice in part (consumers dedupe by event id).
      conn_.reset();
      err = publish_once(events);
    }
    return err;
  }

  caf::expected<bool> drained(const std::set<std::string>& groups) override {
    if (setup_->held->load() > 0)
      return false;
    if (auto err = ensure_connected())
      return err;
    for (const auto& group : groups) {
      auto r = conn_->declare_queue(setup_->queue_of(group), true);
      if (!r) {
        conn_.reset();
        return std::move(r.error());
      }
      if (r->first > 0)
        return false;
    }
    // A batch taken between the two looks is held again.
    return setup_->held->load() == 0;
  }

  caf::error prepare_group(const std::string& group) override {
    if (auto err = ensure_connected())
      return err;
    if (auto err = declare_group(*conn_, *setup_, group)) {
      conn_.reset();
      return err;
    }
    return caf::none;
  }

  uint64_t reconnects() const override {
    return reconnects_;
  }

  void idle() override {
    if (conn_ && !conn_->broken())
      static_cast<void>(conn_->service());
  }

  caf::actor spawn_consumer(caf::actor_system& sys, const std::string& group,
                            group_registry_ptr registry) override {
    return sys.spawn<caf::detached>(consumer_impl, setup_, std::move(registry),
                                    group);
  }

  /// Connects, declares the topology and turns confirms on.
  static caf::expected<connection> open(const bus_setup& s) {
    auto c = connect(s);
    if (!c)
      return std::move(c.error());
    if (auto err = declare_exchanges(*c, s))
      return err;
    for (const auto& g : declared_groups(s.cfg))
      if (auto err = declare_group(*c, s, g))
        return err;
    if (auto err = c->confirm_select())
      return err;
    return c;
  }

private:
  caf::error ensure_connected() {
    if (conn_ && conn_->broken())
      conn_.reset();
    if (!conn_) {
      auto c = open(*setup_);
      if (!c)
        return unavailable("the publisher cannot connect", c.error());
      conn_.emplace(std::move(*c));
      // The first connection came with the constructor.
      ++reconnects_;
    }
    return caf::none;
  }

  caf::error publish_once(const recorded_events& events) {
    if (auto err = ensure_connected())
      return err;
    const auto& cfg = setup_->cfg;
    size_t in_window = 0;
    for (const auto& ev : events) {
      auto body = encode_envelope(ev);
      if (!body)
        return std::move(body.error());
      outgoing x;
      x.exchange = cfg.exchange_name;
      x.routing_key = ev.aggregate_type + "." + ev.event_type;
      x.body = std::move(*body);
      x.message_id = ev.event_id.to_string();
      x.headers = envelope_headers(ev);
      if (auto err = conn_->publish(x))
        return unavailable("publishing failed (some events may be taken)", err);
      if (++in_window >= std::max<size_t>(1, cfg.confirm_window)) {
        in_window = 0;
        if (auto err = conn_->wait_confirms())
          return unavailable("the broker did not confirm every event", err);
      }
    }
    if (auto err = conn_->wait_confirms())
      return unavailable("the broker did not confirm every event", err);
    return caf::none;
  }

  setup_ptr setup_;
  std::optional<connection> conn_;
  uint64_t reconnects_ = 0;
};

// -- dead letters -------------------------------------------------------------

/// The dead-letter queue of one bus, over a connection of its own. Listing
/// takes messages with basic.get and gives them back (requeue), which keeps
/// their order; replay and discard acknowledge the one they act on.
class rabbitmq_dead_letters final : public bus_dead_letters {
public:
  explicit rabbitmq_dead_letters(setup_ptr setup) : setup_(std::move(setup)) {
    // nop
  }

  caf::expected<std::vector<bus_dead_letter>>
  list(size_t limit, const std::string& after) override {
    std::lock_guard guard{mtx_};
    std::vector<bus_dead_letter> result;
    bool past = after.empty();
    auto err = scan([&](const message& m) {
      if (!past) {
        past = m.message_id == after;
        return visit::keep;
      }
      result.push_back(to_letter(m));
      return result.size() >= std::max<size_t>(1, limit) ? visit::stop
                                                         : visit::keep;
    });
    if (err)
      return err;
    return result;
  }

  caf::expected<int64_t> count() override {
    std::lock_guard guard{mtx_};
    if (auto err = ensure_connected())
      return err;
    auto r = conn_->declare_queue(setup_->dlq, true);
    if (!r) {
      conn_.reset();
      return unavailable("counting the dead letters failed", r.error());
    }
    return r->first;
  }

  caf::expected<bool> replay(const std::string& id) override {
    std::lock_guard guard{mtx_};
    bool found = false;
    caf::error failure;
    auto err = scan([&](const message& m) {
      if (m.message_id != id)
        return visit::keep;
      found = true;
      if (!decode_envelope(m.body)) {
        failure = make_store_error(store_errc::invalid_argument,
                                   "dead letter " + id
                                     + " holds no event envelope; discard it");
        return visit::stop;
      }
      if (auto e = republish(m)) {
        failure = std::move(e);
        return visit::stop;
      }
      return visit::take_and_stop;
    });
    if (err)
      return err;
    if (failure)
      return failure;
    return found;
  }

  caf::expected<int64_t> replay_all() override {
    std::lock_guard guard{mtx_};
    int64_t replayed = 0;
    caf::error failure;
    auto err = scan([&](const message& m) {
      if (!decode_envelope(m.body))
        return visit::keep;
      if (auto e = republish(m)) {
        failure = std::move(e);
        return visit::stop;
      }
      ++replayed;
      return visit::take;
    });
    if (err)
      return err;
    if (failure)
      return failure;
    return replayed;
  }

  caf::expected<bool> discard(const std::string& id) override {
    std::lock_guard guard{mtx_};
    bool found = false;
    auto err = scan([&](const message& m) {
      if (m.message_id != id)
        return visit::keep;
      found = true;
      return visit::take_and_stop;
    });
    if (err)
      return err;
    return found;
  }

private:
  enum class visit { keep, stop, take, take_and_stop };

  caf::error ensure_connected() {
    if (conn_ && conn_->broken())
      conn_.reset();
    if (!conn_) {
      auto c = connect(*setup_);
      if (!c)
        return unavailable("the dead-letter queue cannot connect", c.error());
      if (auto err = declare_exchanges(*c, *setup_))
        return unavailable("declaring the dead-letter queue failed", err);
      if (auto err = c->confirm_select())
        return unavailable("the dead-letter queue cannot confirm", err);
      conn_.emplace(std::move(*c));
    }
    return caf::none;
  }

  /// Gets the queue's messages one by one, oldest first, and asks `f` what
  /// to do with each: keep (give back when done), take (acknowledge: it
  /// leaves the queue), stop. Every message kept is given back before it
  /// returns, in order, on a connection that then closes, so that nothing
  /// stays held.
  template <class F>
  caf::error scan(F f) {
    if (auto err = ensure_connected())
      return err;
    std::vector<uint64_t> kept;
    caf::error result;
    for (;;) {
      auto m = conn_->get(setup_->dlq);
      if (!m) {
        result = unavailable("reading the dead letters failed", m.error());
        break;
      }
      if (!*m)
        break;
      auto what = f(**m);
      if (what == visit::take || what == visit::take_and_stop) {
        if (auto err = conn_->ack((*m)->delivery_tag, false)) {
          result = unavailable("removing a dead letter failed", err);
          break;
        }
      } else {
        kept.push_back((*m)->delivery_tag);
      }
      if (what == visit::stop || what == visit::take_and_stop)
        break;
    }
    // Closing the connection gives every unacknowledged message back in
    // its place; rejecting them one by one would too, but a failure half
    // way would leave some held until the close anyway.
    conn_.reset();
    return result;
  }

  /// Publishes the letter's event again to the exchange, as it was first
  /// published, and waits for the confirm.
  caf::error republish(const message& m) {
    outgoing x;
    x.exchange = setup_->cfg.exchange_name;
    auto rk = m.headers.find("x-es-routing-key");
    x.routing_key = rk != m.headers.end() ? rk->second : m.routing_key;
    x.body = m.body;
    auto id = m.headers.find("x-es-original-id");
    x.message_id = id != m.headers.end() ? id->second : std::string{};
    for (const auto& [k, v] : m.headers)
      if (k.rfind("x-es-", 0) != 0 && k.rfind("x-death", 0) != 0)
        x.headers.emplace_back(k, v);
    if (auto err = conn_->publish(x))
      return unavailable("replaying a dead letter failed", err);
    if (auto err = conn_->wait_confirms())
      return unavailable("replaying a dead letter failed", err);
    return caf::none;
  }

  static bus_dead_letter to_letter(const message& m) {
    bus_dead_letter d;
    d.id = m.message_id;
    auto header = [&](const std::string& k) {
      auto i = m.headers.find(k);
      return i == m.headers.end() ? std::string{} : i->second;
    };
    d.group = header("x-es-group");
    d.error = header("x-es-error");
    d.failed_at = header("x-es-failed-at");
    auto n = header("x-es-deliveries");
    d.deliveries = n.empty() ? 0 : std::strtoll(n.c_str(), nullptr, 10);
    d.raw = m.body;
    if (auto ev = decode_envelope(d.raw))
      d.event = std::move(*ev);
    return d;
  }

  setup_ptr setup_;
  std::mutex mtx_;
  std::optional<connection> conn_;
};

} // namespace

caf::expected<event_bus_ptr> make_rabbitmq_bus(caf::actor_system& sys,
                                               rabbitmq_bus_config cfg) {
  auto url = parse_amqp_url(cfg.url);
  if (!url)
    return std::move(url.error());
  auto invalid = [](std::string why) {
    return make_rabbitmq_error(rabbitmq_errc::invalid_config, std::move(why));
  };
  if (cfg.exchange_name.empty() || cfg.consumer_group.empty())
    return invalid("a RabbitMQ bus needs an exchange name and a consumer "
                   "group");
  static const std::set<std::string> types{"topic", "direct", "fanout",
                                           "headers"};
  if (types.count(cfg.exchange_type) == 0)
    return invalid("unknown exchange type \"" + cfg.exchange_type
                   + "\" (topic, direct, fanout or headers)");
  if (cfg.exchange_type == "direct" && cfg.binding_keys.empty())
    return invalid("a direct exchange needs binding_keys: the routing keys "
                   "(<aggregate_type>.<event_type>) each group receives");
  if (cfg.queue_type != "classic" && cfg.queue_type != "quorum")
    return invalid("unknown queue type \"" + cfg.queue_type
                   + "\" (classic or quorum)");
  auto setup = std::make_shared<bus_setup>();
  setup->url = *url;
  setup->dlx = cfg.exchange_name + ".dlx";
  setup->dlq = cfg.exchange_name + ".dlq";
  setup->cfg = std::move(cfg);
  // Fail fast on a wrong address, credentials or topology; the connection
  // becomes the publisher's.
  auto conn = rabbitmq_backend::open(*setup);
  if (!conn)
    return std::move(conn.error());
  detail::broker_bus_options opts;
  opts.broker = "RabbitMQ";
  opts.default_group = setup->cfg.consumer_group;
  opts.breaker = setup->cfg.breaker;
  opts.consumer_restarts = setup->cfg.consumer_restarts;
  if (setup->cfg.heartbeat.count() > 0)
    opts.idle_interval = std::chrono::duration_cast<std::chrono::milliseconds>(
                           setup->cfg.heartbeat)
                         / 2;
  auto backend = std::make_shared<rabbitmq_backend>(setup, std::move(*conn));
  return detail::make_broker_bus(
    sys, std::move(backend), std::move(opts), setup->counters,
    std::make_shared<rabbitmq_dead_letters>(setup));
}

supervisor_actor rabbitmq_bus_supervisor(const event_bus_ptr& bus) {
  return detail::broker_bus_supervisor(bus, "RabbitMQ");
}

caf::expected<rabbitmq_bus_info>
read_rabbitmq_bus_info(const rabbitmq_bus_config& cfg) {
  auto url = parse_amqp_url(cfg.url);
  if (!url)
    return std::move(url.error());
  bus_setup s;
  s.url = *url;
  s.cfg = cfg;
  rabbitmq_bus_info info;
  // A passive declare of a missing queue closes the channel: one
  // connection per look.
  auto look
    = [&](const std::string& queue) -> caf::expected<rabbitmq_queue_info> {
    auto c = connect(s);
    if (!c)
      return std::move(c.error());
    rabbitmq_queue_info q;
    q.name = queue;
    auto r = c->declare_queue(queue, true);
    if (r) {
      q.messages = r->first;
      q.consumers = r->second;
    } else if (!has_code(r.error(), rabbitmq_errc::server_error)) {
      return std::move(r.error());
    }
    return q;
  };
  for (const auto& g : declared_groups(cfg)) {
    auto q = look(s.queue_of(g));
    if (!q)
      return std::move(q.error());
    info.groups.push_back(std::move(*q));
  }
  auto dlq = look(cfg.exchange_name + ".dlq");
  if (!dlq)
    return std::move(dlq.error());
  info.dead_letters = dlq->messages;
  return info;
}

} // namespace es
