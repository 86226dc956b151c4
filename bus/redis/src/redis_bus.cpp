// The Redis Streams bus: the shared broker bus actor (es/bus/detail/
// broker_bus.hpp) publishing with pipelined XADD, and one consumer actor per
// consumer group, under the bus's supervisor, that reads with XREADGROUP,
// hands events to the local subscribers, and acknowledges them once
// handled. All are detached: hiredis blocks.
#include "es/bus/detail/broker_bus.hpp"
#include "es/bus/detail/consumer.hpp"
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/type_ids.hpp"
#include "es/redis/redis.hpp"
#include "es/store/codec.hpp"
#include "es/store/log.hpp"
#include "es/supervision/actors.hpp"
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/retry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "connection.hpp"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>

namespace es {

namespace {

using detail::group_registry;
using detail::group_registry_ptr;
using detail::local_sub;
using detail::redis::connection;
using detail::redis::reply;

/// What every actor of one bus knows.
struct bus_setup {
  redis_bus_config cfg;
  redis_url url;
  std::string stream;
  std::string dlq;
  std::shared_ptr<detail::consumer_counters> counters
    = std::make_shared<detail::consumer_counters>();
};

using setup_ptr = std::shared_ptr<const bus_setup>;

caf::expected<connection> connect(const bus_setup& s) {
  return connection::open(s.url, s.cfg.connect_timeout, s.cfg.command_timeout);
}

caf::error unavailable(const std::string& what, const caf::error& why) {
  return caf::make_error(bus_errc::broker_unavailable,
                         what + ": " + describe(why));
}

/// Orders stream entry ids ("ms-seq").
std::pair<uint64_t, uint64_t> entry_order(const std::string& id) {
  auto dash = id.find('-');
  auto num = [](std::string_view s) {
    uint64_t x = 0;
    for (char c : s)
      if (c >= '0' && c <= '9')
        x = x * 10 + static_cast<uint64_t>(c - '0');
    return x;
  };
  if (dash == std::string::npos)
    return {num(id), 0};
  return {num(std::string_view{id}.substr(0, dash)),
          num(std::string_view{id}.substr(dash + 1))};
}

// -- the consumer of one group --------------------------------------------

/// One stream entry as read.
struct entry {
  std::string id;
  std::map<std::string, std::string> fields;
};

/// Parses the entries of XREADGROUP's or XAUTOCLAIM's answer.
std::vector<entry> parse_entries(const reply& list) {
  std::vector<entry> result;
  for (const auto& e : list.elements()) {
    if (!e.is_array() || e.size() < 2 || !e[0].is_string())
      continue;
    entry x;
    x.id = e[0].str();
    const auto& kv = e[1];
    for (size_t i = 0; i + 1 < kv.size(); i += 2)
      x.fields[kv[i].str()] = kv[i + 1].str();
    result.push_back(std::move(x));
  }
  return result;
}

struct consumer_state : detail::consumer_base {
  static inline const char* name = "es.redis_consumer";

  setup_ptr setup;
  std::string consumer;
  std::optional<connection> conn;
  bool group_ready = false;
  /// Whether this consumer's own pending entries (read before a crash or
  /// a lost connection, never acknowledged) were handled; `history_from`
  /// is where that pass goes on.
  bool history_done = false;
  std::string history_from = "0-0";
  std::chrono::steady_clock::time_point next_reclaim;
};

using consumer_actor = caf::stateful_actor<consumer_state>;

/// Opens the connection and creates the group (from the stream's start, so
/// a group created after some publishes misses none of them).
caf::error ensure_ready(consumer_state& st) {
  if (st.conn && st.conn->broken()) {
    st.conn.reset();
    st.group_ready = false;
    st.history_done = false;
    st.history_from = "0-0";
  }
  if (!st.conn) {
    auto c = connect(*st.setup);
    if (!c)
      return unavailable(
        "the consumer of group " + st.group + " cannot connect", c.error());
    st.conn.emplace(std::move(*c));
  }
  if (!st.group_ready) {
    auto r = st.conn->command(
      {"XGROUP", "CREATE", st.setup->stream, st.group, "0", "MKSTREAM"});
    if (!r)
      return unavailable("creating group " + st.group + " failed", r.error());
    if (r->is_error() && r->str().rfind("BUSYGROUP", 0) != 0)
      return detail::redis::to_error(*r, "XGROUP CREATE");
    st.group_ready = true;
  }
  return caf::none;
}

/// Moves an entry to the dead-letter stream (when enabled) with why.
std::vector<std::string>
dead_letter_command(const consumer_state& st, const entry& e,
                    const std::string& why, int64_t deliveries) {
  std::vector<std::string> cmd{"XADD", st.setup->dlq, "*"};
  cmd.insert(
    cmd.end(),
    {"original_id", e.id, "group", st.group, "consumer", st.consumer, "error",
     why, "deliveries", std::to_string(deliveries), "failed_at",
     format_timestamp(std::chrono::time_point_cast<timestamp::duration>(
       std::chrono::system_clock::now()))});
  for (const auto& [k, v] : e.fields)
    cmd.insert(cmd.end(), {"field:" + k, v});
  return cmd;
}

/// Handles `entries` (delivered `deliveries[id]` times so far) and
/// acknowledges what is done.
caf::error process(consumer_state& st, caf::actor_system& sys,
                   const std::vector<entry>& entries,
                   const std::map<std::string, int64_t>& deliveries) {
  if (entries.empty())
    return caf::none;
  const auto& cfg = st.setup->cfg;
  auto& counters = *st.setup->counters;
  std::vector<std::vector<std::string>> after; // DLQ entries and the XACK
  std::vector<std::string> ack{"XACK", st.setup->stream, st.group};
  auto times = [&](const std::string& id) {
    auto i = deliveries.find(id);
    return i == deliveries.end() ? int64_t{1} : i->second;
  };
  auto dead = [&](const entry& e, const std::string& why) {
    log(log_level::warning,
        "redis bus: group " + st.group + " gives up entry " + e.id + ": " + why,
        log_context{"bus"});
    if (cfg.enable_dlq) {
      after.push_back(dead_letter_command(st, e, why, times(e.id)));
      ack.push_back(e.id);
      ++counters.dead_lettered;
    }
    // Without a DLQ the entry stays pending: it is delivered again once a
    // consumer reclaims it.
  };
  // Entries that are not envelopes (another writer) and entries delivered
  // too often already (their consumers died handling them) go straight to
  // the dead letters; the rest to the local subscriptions.
  std::vector<std::string_view> bodies;
  for (const auto& e : entries) {
    auto body = e.fields.find("envelope");
    bodies.push_back(body == e.fields.end() ? std::string_view{}
                                            : std::string_view{body->second});
  }
  auto gives_up = detail::handle_envelopes(
    sys, st.subs, bodies, cfg.max_retries, counters,
    [&](size_t i) -> std::optional<std::string> {
      const auto& e = entries[i];
      if (e.fields.count("envelope") == 0)
        return "not an event envelope: no field \"envelope\"";
      if (times(e.id) > static_cast<int64_t>(cfg.max_retries) + 1)
        return "delivered " + std::to_string(times(e.id))
               + " times without being acknowledged";
      return std::nullopt;
    });
  for (size_t i = 0; i < entries.size(); ++i) {
    if (auto g = gives_up.find(i); g != gives_up.end())
      dead(entries[i], g->second);
    else
      ack.push_back(entries[i].id);
  }
  if (ack.size() > 3)
    after.push_back(std::move(ack));
  if (after.empty())
    return caf::none;
  auto r = st.conn->pipeline(after);
  if (!r)
    return unavailable("acknowledging failed (the entries come again)",
                       r.error());
  for (const auto& x : *r)
    if (x.is_error())
      return detail::redis::to_error(x, "XACK/XADD");
  return caf::none;
}

/// Delivery counts of the pending entries of this consumer.
caf::expected<std::map<std::string, int64_t>> pending_counts(consumer_state& st,
                                                             size_t count) {
  auto r = st.conn->command({"XPENDING", st.setup->stream, st.group, "-", "+",
                             std::to_string(count), st.consumer});
  if (!r)
    return std::move(r.error());
  if (r->is_error())
    return detail::redis::to_error(*r, "XPENDING");
  std::map<std::string, int64_t> result;
  for (const auto& x : r->elements())
    if (x.is_array() && x.size() >= 4)
      result[x[0].str()] = x[3].integer();
  return result;
}

/// One round: reclaim what dead consumers left (now and then), then read
/// new entries, handle and acknowledge them.
caf::error poll_once(consumer_actor* self) {
  auto& st = self->state;
  const auto& cfg = st.setup->cfg;
  if (auto err = ensure_ready(st))
    return err;
  auto batch = std::to_string(std::max<size_t>(1, cfg.batch_size));
  if (!st.history_done) {
    // What this consumer read before it was restarted or lost its
    // connection, and never acknowledged: handle it first, in order.
    auto r
      = st.conn->command({"XREADGROUP", "GROUP", st.group, st.consumer, "COUNT",
                          batch, "STREAMS", st.setup->stream, st.history_from});
    if (!r)
      return unavailable("reading the pending entries of group " + st.group
                           + " failed",
                         r.error());
    if (r->is_error()) {
      if (r->str().rfind("NOGROUP", 0) == 0)
        st.group_ready = false;
      return detail::redis::to_error(*r, "XREADGROUP");
    }
    auto own = r->size() > 0 && (*r)[0].size() >= 2 ? parse_entries((*r)[0][1])
                                                    : std::vector<entry>{};
    if (own.empty()) {
      st.history_done = true;
    } else {
      // Entries that stay pending (no DLQ) are not read again in this pass.
      st.history_from = own.back().id;
      auto counts = pending_counts(st, own.size() + 16);
      if (!counts)
        return unavailable("reading delivery counts failed", counts.error());
      return process(st, self->system(), own, *counts);
    }
  }
  auto now = std::chrono::steady_clock::now();
  if (now >= st.next_reclaim) {
    st.next_reclaim
      = now + std::max(cfg.max_pending_time / 2, std::chrono::milliseconds{10});
    auto r = st.conn->command(
      {"XAUTOCLAIM", st.setup->stream, st.group, st.consumer,
       std::to_string(cfg.max_pending_time.count()), "0-0", "COUNT", batch});
    if (!r)
      return unavailable("reclaiming pending entries failed", r.error());
    if (r->is_error())
      return detail::redis::to_error(*r, "XAUTOCLAIM");
    if (r->size() >= 2) {
      auto claimed = parse_entries((*r)[1]);
      if (!claimed.empty()) {
        auto counts = pending_counts(st, claimed.size() + 16);
        if (!counts)
          return unavailable("reading delivery counts failed", counts.error());
        if (auto err = process(st, self->system(), claimed, *counts))
          return err;
      }
    }
  }
  auto wait = cfg.block + cfg.command_timeout;
  auto r = st.conn->command(
    {"XREADGROUP", "GROUP", st.group, st.consumer, "COUNT", batch, "BLOCK",
     std::to_string(cfg.block.count()), "STREAMS", st.setup->stream, ">"},
    wait);
  if (!r)
    return unavailable("reading group " + st.group + " failed", r.error());
  if (r->is_error()) {
    // The group (or the stream) was deleted: create it again next time.
    if (r->str().rfind("NOGROUP", 0) == 0)
      st.group_ready = false;
    return detail::redis::to_error(*r, "XREADGROUP");
  }
  if (r->is_nil() || r->size() == 0)
    return caf::none;
  const auto& stream = (*r)[0];
  if (stream.size() < 2)
    return caf::none;
  return process(st, self->system(), parse_entries(stream[1]), {});
}

caf::behavior consumer_impl(consumer_actor* self, setup_ptr setup,
                            group_registry_ptr registry, std::string group,
                            std::string consumer) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.registry = std::move(registry);
  st.group = std::move(group);
  st.consumer = std::move(consumer);
  detail::consumer_hooks hooks;
  hooks.label = "redis bus";
  // Without local subscriptions the entries wait in the group.
  hooks.idle_pause = st.setup->cfg.block;
  hooks.backoff = st.setup->cfg.reconnect;
  hooks.poll = [self] {
    return poll_once(self);
  };
  return detail::consumer_loop(self, st, *st.setup->counters, std::move(hooks));
}

// -- the publisher ------------------------------------------------------------

std::string consumer_name(const redis_bus_config& cfg) {
  if (!cfg.consumer_name.empty())
    return cfg.consumer_name;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string{host} + "-" + std::to_string(getpid()) + "-"
         + uuid::random().to_string().substr(0, 8);
}

/// What the shared broker bus actor runs on Redis: pipelined XADD, a drain
/// check over XINFO GROUPS, and the consumers.
class redis_backend final : public detail::broker_backend {
public:
  redis_backend(setup_ptr setup, connection first)
    : setup_(std::move(setup)), consumer_(consumer_name(setup_->cfg)),
      conn_(std::move(first)) {
    // nop
  }

  caf::error publish(const recorded_events& events) override {
    auto err = publish_once(events);
    if (err && has_code(err, bus_errc::broker_unavailable)) {
      // Once more on a new connection; a batch the broker took in part is
      // published twice in part (consumers dedupe by event id).
      conn_.reset();
      err = publish_once(events);
    }
    return err;
  }

  caf::expected<bool> drained(const std::set<std::string>& groups) override {
    if (last_published_id_.empty())
      return true;
    if (auto err = ensure_connected())
      return err;
    auto r = conn_->command({"XINFO", "GROUPS", setup_->stream});
    if (!r)
      return std::move(r.error());
    if (r->is_error())
      return detail::redis::to_error(*r, "XINFO GROUPS");
    std::map<std::string, std::pair<int64_t, std::string>> known;
    for (const auto& g : r->elements()) {
      std::string name;
      int64_t pending = 0;
      std::string last;
      for (size_t i = 0; i + 1 < g.size(); i += 2) {
        const auto& key = g[i].str();
        if (key == "name")
          name = g[i + 1].str();
        else if (key == "pending")
          pending = g[i + 1].integer();
        else if (key == "last-delivered-id")
          last = g[i + 1].str();
      }
      known[name] = {pending, last};
    }
    auto target = entry_order(last_published_id_);
    for (const auto& group : groups) {
      auto i = known.find(group);
      if (i == known.end())
        return false;
      if (i->second.first > 0 || entry_order(i->second.second) < target)
        return false;
    }
    return true;
  }

  caf::actor spawn_consumer(caf::actor_system& sys, const std::string& group,
                            group_registry_ptr registry) override {
    return sys.spawn<caf::detached>(consumer_impl, setup_, std::move(registry),
                                    group, consumer_);
  }

  uint64_t reconnects() const override {
    return reconnects_;
  }

private:
  caf::error ensure_connected() {
    if (conn_ && conn_->broken())
      conn_.reset();
    if (!conn_) {
      auto c = connect(*setup_);
      if (!c)
        return unavailable("the publisher cannot connect", c.error());
      conn_.emplace(std::move(*c));
      // The first connection came with the constructor.
      ++reconnects_;
    }
    return caf::none;
  }

  caf::error publish_once(const recorded_events& events) {
    const auto& cfg = setup_->cfg;
    if (auto err = ensure_connected())
      return err;
    std::vector<std::vector<std::string>> cmds;
    cmds.reserve(events.size());
    for (const auto& ev : events) {
      auto body = encode_envelope(ev);
      if (!body)
        return std::move(body.error());
      std::vector<std::string> cmd{"XADD", setup_->stream};
      if (cfg.max_stream_length > 0)
        cmd.insert(cmd.end(),
                   {"MAXLEN", "~", std::to_string(cfg.max_stream_length)});
      cmd.push_back("*");
      for (auto& [k, v] : envelope_headers(ev))
        cmd.insert(cmd.end(), {std::move(k), std::move(v)});
      cmd.insert(cmd.end(), {"envelope", std::move(*body)});
      cmds.push_back(std::move(cmd));
    }
    auto r = conn_->pipeline(cmds);
    if (!r)
      return unavailable("publishing " + std::to_string(events.size())
                           + " events failed (some may be in the stream)",
                         r.error());
    for (const auto& x : *r) {
      if (x.is_error())
        return detail::redis::to_error(x, "XADD");
      last_published_id_ = x.str();
    }
    return caf::none;
  }

  setup_ptr setup_;
  /// This process's consumer name, the same for every group and restart.
  std::string consumer_;
  std::optional<connection> conn_;
  std::string last_published_id_;
  uint64_t reconnects_ = 0;
};

// -- dead letters and the facade --------------------------------------------

/// The dead-letter stream of one bus, over a connection of its own.
class redis_dead_letters final : public bus_dead_letters {
public:
  explicit redis_dead_letters(setup_ptr setup) : setup_(std::move(setup)) {
    // nop
  }

  caf::expected<std::vector<bus_dead_letter>>
  list(size_t limit, const std::string& after) override {
    std::lock_guard guard{mtx_};
    auto start = after.empty() ? std::string{"-"} : "(" + after;
    auto r = run({"XRANGE", setup_->dlq, start, "+", "COUNT",
                  std::to_string(std::max<size_t>(1, limit))});
    if (!r)
      return std::move(r.error());
    std::vector<bus_dead_letter> result;
    for (auto& e : parse_entries(*r))
      result.push_back(to_letter(e));
    return result;
  }

  caf::expected<int64_t> count() override {
    std::lock_guard guard{mtx_};
    auto r = run({"XLEN", setup_->dlq});
    if (!r)
      return std::move(r.error());
    return r->integer();
  }

  caf::expected<bool> replay(const std::string& id) override {
    std::lock_guard guard{mtx_};
    auto r = run({"XRANGE", setup_->dlq, id, id});
    if (!r)
      return std::move(r.error());
    auto entries = parse_entries(*r);
    if (entries.empty())
      return false;
    auto letter = to_letter(entries.front());
    if (!letter.event)
      return make_store_error(store_errc::invalid_argument,
                              "dead letter " + id
                                + " holds no event envelope; discard it");
    if (auto err = republish(entries.front(), id))
      return err;
    return true;
  }

  caf::expected<int64_t> replay_all() override {
    std::lock_guard guard{mtx_};
    int64_t replayed = 0;
    std::string after = "-";
    for (;;) {
      auto r = run({"XRANGE", setup_->dlq, after, "+", "COUNT", "100"});
      if (!r)
        return std::move(r.error());
      auto entries = parse_entries(*r);
      if (entries.empty())
        return replayed;
      for (auto& e : entries) {
        after = "(" + e.id;
        if (!to_letter(e).event)
          continue;
        if (auto err = republish(e, e.id))
          return err;
        ++replayed;
      }
    }
  }

  caf::expected<bool> discard(const std::string& id) override {
    std::lock_guard guard{mtx_};
    auto r = run({"XDEL", setup_->dlq, id});
    if (!r)
      return std::move(r.error());
    return r->integer() > 0;
  }

private:
  caf::expected<reply> run(std::vector<std::string> args) {
    if (conn_ && conn_->broken())
      conn_.reset();
    if (!conn_) {
      auto c = connect(*setup_);
      if (!c)
        return unavailable("the dead-letter queue cannot connect", c.error());
      conn_.emplace(std::move(*c));
    }
    auto what = args.front();
    auto r = conn_->command(std::move(args));
    if (!r)
      return unavailable(what + " on the dead-letter queue failed", r.error());
    if (r->is_error())
      return detail::redis::to_error(*r, what);
    return r;
  }

  static bus_dead_letter to_letter(const entry& e) {
    bus_dead_letter d;
    d.id = e.id;
    auto field = [&](const std::string& k) {
      auto i = e.fields.find(k);
      return i == e.fields.end() ? std::string{} : i->second;
    };
    d.group = field("group");
    d.error = field("error");
    d.failed_at = field("failed_at");
    auto n = field("deliveries");
    d.deliveries = n.empty() ? 0 : std::strtoll(n.c_str(), nullptr, 10);
    d.raw = field("field:envelope");
    if (auto ev = decode_envelope(d.raw))
      d.event = std::move(*ev);
    return d;
  }

  /// Adds the letter's original fields to the stream again and deletes it
  /// from the dead letters, in one MULTI/EXEC.
  caf::error republish(const entry& e, const std::string& id) {
    std::vector<std::string> add{"XADD", setup_->stream};
    if (setup_->cfg.max_stream_length > 0)
      add.insert(add.end(), {"MAXLEN", "~",
                             std::to_string(setup_->cfg.max_stream_length)});
    add.push_back("*");
    for (const auto& [k, v] : e.fields)
      if (k.rfind("field:", 0) == 0)
        add.insert(add.end(), {k.substr(6), v});
    auto r
      = conn_->pipeline({{"MULTI"}, add, {"XDEL", setup_->dlq, id}, {"EXEC"}});
    if (!r)
      return unavailable("replaying dead letter " + id + " failed", r.error());
    for (const auto& x : *r)
      if (x.is_error())
        return detail::redis::to_error(x, "replaying dead letter " + id);
    return caf::none;
  }

  setup_ptr setup_;
  std::mutex mtx_;
  std::optional<connection> conn_;
};

} // namespace

caf::expected<event_bus_ptr> make_redis_bus(caf::actor_system& sys,
                                            redis_bus_config cfg) {
  auto url = parse_redis_url(cfg.url);
  if (!url)
    return std::move(url.error());
  if (cfg.stream_prefix.empty() || cfg.consumer_group.empty())
    return make_redis_error(redis_errc::invalid_url,
                            "a Redis bus needs a stream prefix and a consumer "
                            "group");
  auto setup = std::make_shared<bus_setup>();
  setup->url = *url;
  setup->stream = cfg.stream_prefix + ":stream";
  setup->dlq = cfg.stream_prefix + ":dlq";
  setup->cfg = std::move(cfg);
  // Fail fast on a wrong address or password; the connection becomes the
  // publisher's.
  auto conn = connect(*setup);
  if (!conn)
    return std::move(conn.error());
  detail::broker_bus_options opts;
  opts.broker = "Redis";
  opts.default_group = setup->cfg.consumer_group;
  opts.breaker = setup->cfg.breaker;
  opts.consumer_restarts = setup->cfg.consumer_restarts;
  auto backend = std::make_shared<redis_backend>(setup, std::move(*conn));
  return detail::make_broker_bus(sys, std::move(backend), std::move(opts),
                                 setup->counters,
                                 std::make_shared<redis_dead_letters>(setup));
}

supervisor_actor redis_bus_supervisor(const event_bus_ptr& bus) {
  return detail::broker_bus_supervisor(bus, "Redis");
}

caf::expected<redis_stream_info>
read_redis_stream_info(const redis_bus_config& cfg) {
  auto url = parse_redis_url(cfg.url);
  if (!url)
    return std::move(url.error());
  bus_setup setup;
  setup.url = *url;
  setup.cfg = cfg;
  auto conn = connect(setup);
  if (!conn)
    return std::move(conn.error());
  auto stream = cfg.stream_prefix + ":stream";
  auto r = conn->pipeline({{"XLEN", stream},
                           {"XINFO", "GROUPS", stream},
                           {"XLEN", cfg.stream_prefix + ":dlq"}});
  if (!r)
    return std::move(r.error());
  redis_stream_info info;
  info.length = (*r)[0].integer();
  info.dead_letters = (*r)[2].integer();
  // A stream that does not exist yet has no groups (XINFO answers with an
  // error then).
  if ((*r)[1].is_array())
    for (const auto& g : (*r)[1].elements()) {
      redis_group_info x;
      for (size_t i = 0; i + 1 < g.size(); i += 2) {
        const auto& key = g[i].str();
        const auto& val = g[i + 1];
        if (key == "name")
          x.name = val.str();
        else if (key == "consumers")
          x.consumers = val.integer();
        else if (key == "pending")
          x.pending = val.integer();
        else if (key == "last-delivered-id")
          x.last_delivered_id = val.str();
      }
      info.groups.push_back(std::move(x));
    }
  return info;
}

} // namespace es
