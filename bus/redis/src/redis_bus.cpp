// The Redis Streams bus: a bus actor that publishes with pipelined XADD
// (behind a circuit breaker) and keeps the subscriptions, and one consumer
// actor per consumer group, under the bus's supervisor, that reads with
// XREADGROUP, hands events to the local subscribers, and acknowledges them
// once handled. All are detached: hiredis blocks.
#include "es/bus/detail/consumer.hpp"
#include "es/bus/detail/facade.hpp"
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

struct consumer_state {
  static inline const char* name = "es.redis_consumer";

  setup_ptr setup;
  group_registry_ptr registry;
  std::string group;
  std::string consumer;
  std::optional<connection> conn;
  bool group_ready = false;
  /// Whether this consumer's own pending entries (read before a crash or
  /// a lost connection, never acknowledged) were handled; `history_from`
  /// is where that pass goes on.
  bool history_done = false;
  std::string history_from = "0-0";
  std::vector<local_sub> subs;
  uint64_t subs_generation = 0;
  uint32_t failures_in_row = 0;
  std::chrono::steady_clock::time_point next_reclaim;
  std::mt19937_64 rng{std::random_device{}()};
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
    log(log_level::warning, "redis bus: group " + st.group + " gives up entry "
                              + e.id + ": " + why);
    if (cfg.enable_dlq) {
      after.push_back(dead_letter_command(st, e, why, times(e.id)));
      ack.push_back(e.id);
      ++counters.dead_lettered;
    }
    // Without a DLQ the entry stays pending: it is delivered again once a
    // consumer reclaims it.
  };
  // Decode; entries that are not envelopes (another writer) go straight
  // to the dead letters.
  recorded_events events;
  std::vector<const entry*> origin;
  for (const auto& e : entries) {
    auto body = e.fields.find("envelope");
    if (body == e.fields.end()) {
      dead(e, "not an event envelope: no field \"envelope\"");
      continue;
    }
    auto ev = decode_envelope(body->second);
    if (!ev) {
      dead(e, "not an event envelope: " + describe(ev.error()));
      continue;
    }
    if (times(e.id) > static_cast<int64_t>(cfg.max_retries) + 1) {
      // Delivered too often already: its consumers died while handling it.
      dead(e, "delivered " + std::to_string(times(e.id))
                + " times without being acknowledged");
      continue;
    }
    events.push_back(std::move(*ev));
    origin.push_back(&e);
  }
  // Hand the events to each subscription that wants some; a subscription
  // that reports errors gets the events once more one by one, to find the
  // failing ones, and each of those up to max_retries times.
  auto failed
    = detail::deliver_batch(sys, st.subs, events, cfg.max_retries, counters);
  for (size_t k = 0; k < events.size(); ++k) {
    if (auto f = failed.find(k); f != failed.end())
      dead(*origin[k], f->second);
    else
      ack.push_back(origin[k]->id);
  }
  counters.completed += 1;
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
  st.registry->started(st.group, caf::actor_cast<caf::actor>(self),
                       *st.setup->counters);
  self->send(self, caf::tick_atom_v);
  return {
    [self](caf::tick_atom) {
      auto& st = self->state;
      st.registry->refresh(st.group, st.subs_generation, st.subs);
      if (st.subs.empty()) {
        // Nobody to hand events to: leave them in the group.
        self->delayed_send(self, st.setup->cfg.block, caf::tick_atom_v);
        return;
      }
      if (auto err = poll_once(self)) {
        log(log_level::warning, "redis bus: " + describe(err));
        auto delay
          = backoff_delay(st.setup->cfg.reconnect, st.failures_in_row, st.rng);
        ++st.failures_in_row;
        self->delayed_send(self, delay, caf::tick_atom_v);
        return;
      }
      st.failures_in_row = 0;
      self->send(self, caf::tick_atom_v);
    },
  };
}

// -- the bus actor ----------------------------------------------------------

struct bus_sub {
  subscription_id id = 0;
  bus_subscriber_actor delivery;
  std::vector<std::string> types;
  std::string group;
};

struct waiting_drain {
  caf::response_promise rp;
};

struct redis_bus_state {
  static inline const char* name = "es.redis_bus";

  setup_ptr setup;
  group_registry_ptr registry = std::make_shared<group_registry>();
  supervisor_actor supervisor;
  /// This process's consumer name, the same for every group and restart.
  std::string consumer;
  std::optional<connection> conn;
  std::vector<bus_sub> subs;
  subscription_id next_id = 1;
  /// Groups whose consumer runs (or is being restarted).
  std::set<std::string> consumers;
  bool started = false;
  circuit_breaker breaker;
  uint64_t published = 0;
  uint64_t publish_failures = 0;
  uint64_t publishes_rejected = 0;
  std::string last_published_id;
  std::vector<caf::response_promise> drainers;
  bool drain_check_scheduled = false;

  ~redis_bus_state() {
    // The supervisor ends the consumers when it goes.
    caf::anon_send_exit(supervisor, caf::exit_reason::user_shutdown);
    for (auto& s : subs)
      caf::anon_send_exit(s.delivery, caf::exit_reason::user_shutdown);
  }
};

using redis_bus_actor = bus_actor::extend<caf::reacts_to<caf::tick_atom>>;
using redis_bus_pointer = redis_bus_actor::stateful_pointer<redis_bus_state>;

std::string consumer_name(const redis_bus_config& cfg) {
  if (!cfg.consumer_name.empty())
    return cfg.consumer_name;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string{host} + "-" + std::to_string(getpid()) + "-"
         + uuid::random().to_string().substr(0, 8);
}

std::string child_name(const std::string& group) {
  return "consumer:" + group;
}

/// Publishes the subscriptions of `group` to its consumer.
void share_subs(redis_bus_state& st, const std::string& group) {
  std::vector<local_sub> subs;
  for (const auto& s : st.subs)
    if (s.group == group)
      subs.push_back(local_sub{s.id, s.delivery, s.types});
  st.registry->set_subs(group, std::move(subs));
}

void ensure_consumer(redis_bus_pointer self, const std::string& group) {
  auto& st = self->state;
  if (!st.started || st.consumers.count(group) > 0)
    return;
  st.registry->reset_starts(group);
  auto factory = std::make_shared<child_factory>(
    [setup = st.setup, registry = st.registry, group,
     name = st.consumer](caf::actor_system& sys) {
      return sys.spawn<caf::detached>(consumer_impl, setup, registry, group,
                                      name);
    });
  self
    ->request(st.supervisor, caf::infinite, supervise_atom_v, child_name(group),
              std::move(factory))
    .then([](const caf::actor&) {},
          [group](caf::error& err) {
            log(log_level::error, "redis bus: cannot start the consumer of "
                                    + group + ": " + describe(err));
          });
  st.consumers.insert(group);
}

caf::error publish_once(redis_bus_state& st, const recorded_events& events) {
  const auto& cfg = st.setup->cfg;
  if (st.conn && st.conn->broken())
    st.conn.reset();
  if (!st.conn) {
    auto c = connect(*st.setup);
    if (!c)
      return unavailable("the publisher cannot connect", c.error());
    st.conn.emplace(std::move(*c));
  }
  std::vector<std::vector<std::string>> cmds;
  cmds.reserve(events.size());
  for (const auto& ev : events) {
    auto body = encode_envelope(ev);
    if (!body)
      return std::move(body.error());
    std::vector<std::string> cmd{"XADD", st.setup->stream};
    if (cfg.max_stream_length > 0)
      cmd.insert(cmd.end(),
                 {"MAXLEN", "~", std::to_string(cfg.max_stream_length)});
    cmd.push_back("*");
    for (auto& [k, v] : envelope_headers(ev))
      cmd.insert(cmd.end(), {std::move(k), std::move(v)});
    cmd.insert(cmd.end(), {"envelope", std::move(*body)});
    cmds.push_back(std::move(cmd));
  }
  auto r = st.conn->pipeline(cmds);
  if (!r)
    return unavailable("publishing " + std::to_string(events.size())
                         + " events failed (some may be in the stream)",
                       r.error());
  for (const auto& x : *r) {
    if (x.is_error())
      return detail::redis::to_error(x, "XADD");
    st.last_published_id = x.str();
  }
  return caf::none;
}

/// Whether every local group handled everything this bus published.
caf::expected<bool> drained(redis_bus_state& st) {
  if (st.last_published_id.empty() || st.consumers.empty())
    return true;
  if (st.conn && st.conn->broken())
    st.conn.reset();
  if (!st.conn) {
    auto c = connect(*st.setup);
    if (!c)
      return std::move(c.error());
    st.conn.emplace(std::move(*c));
  }
  auto r = st.conn->command({"XINFO", "GROUPS", st.setup->stream});
  if (!r)
    return std::move(r.error());
  if (r->is_error())
    return detail::redis::to_error(*r, "XINFO GROUPS");
  std::map<std::string, std::pair<int64_t, std::string>> groups;
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
    groups[name] = {pending, last};
  }
  auto target = entry_order(st.last_published_id);
  for (const auto& group : st.consumers) {
    auto i = groups.find(group);
    if (i == groups.end())
      return false;
    if (i->second.first > 0 || entry_order(i->second.second) < target)
      return false;
  }
  return st.setup->counters->in_flight.load() == 0;
}

void check_drains(redis_bus_pointer self) {
  auto& st = self->state;
  st.drain_check_scheduled = false;
  if (st.drainers.empty())
    return;
  auto done = drained(st);
  if (done && !*done) {
    st.drain_check_scheduled = true;
    self->delayed_send(self, std::chrono::milliseconds(10), caf::tick_atom_v);
    return;
  }
  for (auto& rp : st.drainers) {
    if (done)
      rp.deliver(caf::unit);
    else
      rp.deliver(unavailable("checking the groups failed", done.error()));
  }
  st.drainers.clear();
}

redis_bus_actor::behavior_type
redis_bus_impl(redis_bus_pointer self, setup_ptr setup,
               std::shared_ptr<connection> first, supervisor_actor supervisor) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.consumer = consumer_name(st.setup->cfg);
  st.breaker = circuit_breaker{st.setup->cfg.breaker};
  st.supervisor = std::move(supervisor);
  if (first)
    st.conn.emplace(std::move(*first));
  return {
    [self](caf::publish_atom, recorded_events& events) -> caf::result<void> {
      auto& st = self->state;
      if (events.empty())
        return caf::unit;
      caf::timespan wait{0};
      if (!st.breaker.allow(self->clock().now(), &wait)) {
        ++st.publishes_rejected;
        auto ms
          = std::chrono::duration_cast<std::chrono::milliseconds>(wait).count();
        return caf::make_error(
          bus_errc::broker_unavailable,
          "circuit open: Redis failed "
            + std::to_string(st.breaker.consecutive_failures())
            + " publishes in a row; nothing was published; retry_after_ms="
            + std::to_string(ms));
      }
      auto err = publish_once(st, events);
      if (err && has_code(err, bus_errc::broker_unavailable)) {
        // Once more on a new connection; a batch the broker took in part
        // is published twice in part (consumers dedupe by event id).
        st.conn.reset();
        err = publish_once(st, events);
      }
      if (err && has_code(err, bus_errc::broker_unavailable)) {
        ++st.publish_failures;
        st.breaker.record_failure(self->clock().now());
        return err;
      }
      // Other errors (an event that cannot be encoded, an error reply) are
      // not the broker being away.
      st.breaker.record_success();
      if (err)
        return err;
      st.published += events.size();
      return caf::unit;
    },
    [self](caf::subscribe_atom, bus_subscriber_actor& delivery,
           std::vector<std::string>& types, uint64_t,
           std::string& group) -> subscription_id {
      auto& st = self->state;
      bus_sub s{st.next_id++, std::move(delivery), std::move(types),
                group.empty() ? st.setup->cfg.consumer_group
                              : std::move(group)};
      st.subs.push_back(s);
      share_subs(st, s.group);
      ensure_consumer(self, s.group);
      return s.id;
    },
    [self](caf::unsubscribe_atom, subscription_id id) -> bool {
      auto& st = self->state;
      auto i
        = std::find_if(st.subs.begin(), st.subs.end(), [id](const auto& s) {
            return s.id == id;
          });
      if (i == st.subs.end())
        return false;
      auto group = i->group;
      caf::anon_send_exit(i->delivery, caf::exit_reason::user_shutdown);
      st.subs.erase(i);
      share_subs(st, group);
      return true;
    },
    [self](stats_atom) -> bus_stats {
      auto& st = self->state;
      bus_stats s;
      st.setup->counters->fill(s);
      s.events_published = st.published;
      s.subscribers = st.subs.size();
      s.publish_failures = st.publish_failures;
      s.publishes_rejected = st.publishes_rejected;
      s.broker_circuit = st.breaker.state(self->clock().now());
      return s;
    },
    [self](drain_atom) -> caf::result<void> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      st.drainers.push_back(rp);
      if (!st.drain_check_scheduled)
        check_drains(self);
      return rp;
    },
    [self](caf::tick_atom) {
      check_drains(self);
    },
    [self](start_atom) {
      auto& st = self->state;
      st.started = true;
      std::set<std::string> groups;
      for (const auto& s : st.subs)
        groups.insert(s.group);
      for (const auto& g : groups)
        ensure_consumer(self, g);
    },
    [self](stop_atom) -> caf::result<void> {
      auto& st = self->state;
      st.started = false;
      if (st.consumers.empty())
        return caf::unit;
      // The supervisor stops each consumer for good (no restart after it
      // answered); a consumer ends between rounds, so what it read is
      // handled and acknowledged. Then wait for the consumers to end.
      auto rp = self->make_response_promise();
      auto left = std::make_shared<size_t>(st.consumers.size());
      auto promise = std::make_shared<caf::response_promise>(rp);
      auto one_done = [promise, left] {
        if (--*left == 0)
          promise->deliver(caf::unit);
      };
      self->set_down_handler([one_done](caf::down_msg&) {
        one_done();
      });
      for (const auto& group : st.consumers)
        self
          ->request(st.supervisor, caf::infinite, stop_atom_v,
                    child_name(group))
          .then(
            [self, group, one_done](bool) {
              if (auto running = self->state.registry->running(group))
                self->monitor(running); // a dead one is reported at once
              else
                one_done();
            },
            [one_done](caf::error&) {
              one_done();
            });
      st.consumers.clear();
      return rp;
    },
  };
}

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

/// The bus facade plus the dead letters.
class redis_event_bus final : public event_bus {
public:
  redis_event_bus(event_bus_ptr inner, std::shared_ptr<bus_dead_letters> dlq,
                  supervisor_actor supervisor)
    : inner_(std::move(inner)), dlq_(std::move(dlq)),
      supervisor_(std::move(supervisor)) {
    // nop
  }

  const supervisor_actor& supervisor() const {
    return supervisor_;
  }

  bus_actor handle() const override {
    return inner_->handle();
  }

  caf::error publish(recorded_events events) override {
    return inner_->publish(std::move(events));
  }

  subscription_id subscribe(std::string event_type, event_handler_fn fn,
                            subscribe_options opts) override {
    return inner_->subscribe(std::move(event_type), std::move(fn),
                             std::move(opts));
  }

  subscription_id subscribe_all(std::shared_ptr<event_subscriber> sub,
                                subscribe_options opts) override {
    return inner_->subscribe_all(std::move(sub), std::move(opts));
  }

  subscription_id subscribe_to_all_events(event_handler_fn fn,
                                          subscribe_options opts) override {
    return inner_->subscribe_to_all_events(std::move(fn), std::move(opts));
  }

  subscription_id subscribe_actor(caf::actor target,
                                  std::vector<std::string> event_types,
                                  subscribe_options opts) override {
    return inner_->subscribe_actor(std::move(target), std::move(event_types),
                                   std::move(opts));
  }

  bool unsubscribe(subscription_id id) override {
    return inner_->unsubscribe(id);
  }

  bus_stats stats() override {
    return inner_->stats();
  }

  caf::error drain(std::chrono::milliseconds timeout) override {
    return inner_->drain(timeout);
  }

  caf::error start() override {
    return inner_->start();
  }

  caf::error stop(std::chrono::milliseconds timeout) override {
    return inner_->stop(timeout);
  }

  std::shared_ptr<bus_dead_letters> dead_letters() override {
    return dlq_;
  }

private:
  event_bus_ptr inner_;
  std::shared_ptr<bus_dead_letters> dlq_;
  supervisor_actor supervisor_;
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
  auto first = std::make_shared<connection>(std::move(*conn));
  auto supervisor = spawn_supervisor(sys, setup->cfg.consumer_restarts);
  auto bus = sys.spawn<caf::detached>(redis_bus_impl, setup_ptr{setup},
                                      std::move(first), supervisor);
  return event_bus_ptr{std::make_shared<redis_event_bus>(
    detail::make_bus_facade(sys, caf::actor_cast<bus_actor>(bus)),
    std::make_shared<redis_dead_letters>(setup), std::move(supervisor))};
}

supervisor_actor redis_bus_supervisor(const event_bus_ptr& bus) {
  if (auto* x = dynamic_cast<const redis_event_bus*>(bus.get()))
    return x->supervisor();
  return {};
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
