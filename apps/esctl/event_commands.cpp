// esctl streams, stream, event, events and follow: reading the log without
// knowing the application's event types (payloads stay JSON text).
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"

#include "commands.hpp"
#include "output.hpp"
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

namespace esctl {

namespace {

/// Parses a UUID given on the command line; prints why not.
std::optional<es::uuid> parse_uuid_arg(const std::string& what,
                                       const std::string& text) {
  auto id = es::uuid::parse(text);
  if (!id) {
    fail(exit_usage,
         what + " '" + text + "' is not a UUID (8-4-4-4-12 hex digits)");
    return std::nullopt;
  }
  return *id;
}

/// The feed filter of `sel`; false (after printing why) for a bad tenant.
bool make_filter(const event_selection& sel, es::event_filter& filter) {
  if (!sel.type.empty())
    filter.aggregate_types.push_back(sel.type);
  if (!sel.tenant.empty()) {
    auto t = parse_uuid_arg("--tenant", sel.tenant);
    if (!t)
      return false;
    filter.tenant_id = *t;
  }
  return true;
}

std::string stream_text(const es::recorded_event& ev) {
  return ev.aggregate_type + "/" + ev.aggregate_id.to_string();
}

std::string event_line(const es::recorded_event& ev) {
  return num(ev.global_position) + "  " + stream_text(ev) + "  v"
         + num(ev.aggregate_version) + "  " + ev.event_type + "  " + ev.payload;
}

} // namespace

int list_streams(context& ctx, const event_selection& sel) {
  const auto kind = ctx.st.location().kind;
  std::optional<es::uuid> tenant;
  if (!sel.tenant.empty()) {
    tenant = parse_uuid_arg("--tenant", sel.tenant);
    if (!tenant)
      return exit_usage;
  }
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  std::string sql
    = "SELECT aggregate_type, " + uuid_text_sql(kind, "aggregate_id")
      + ", MAX(aggregate_version), MAX(" + uuid_text_sql(kind, "tenant_id")
      + "), " + micros_sql(kind, "MAX(occurred_at)")
      + " FROM events WHERE 1 = 1";
  std::vector<es::sql_value> params;
  if (!sel.type.empty()) {
    params.emplace_back(sel.type);
    sql += " AND aggregate_type = ?" + num(static_cast<int64_t>(params.size()));
  }
  if (tenant) {
    params.emplace_back(uuid_sql_param(kind, *tenant));
    sql += " AND " + uuid_text_sql(kind, "tenant_id") + " = ?"
           + num(static_cast<int64_t>(params.size()));
  }
  sql += " GROUP BY aggregate_type, aggregate_id"
         " ORDER BY MIN(global_position) LIMIT "
         + num(sel.limit);
  auto rows = query(**db, sql, params);
  if (!rows)
    return fail(rows.error());
  auto time_of = [](const es::sql_value& v) -> std::optional<es::timestamp> {
    if (auto us = es::sql_int(v))
      return es::timestamp{std::chrono::microseconds{*us}};
    return std::nullopt;
  };
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("streams");
    w.StartArray();
    for (const auto& r : *rows) {
      w.StartObject();
      w.Key("aggregate_type");
      write_string(w, es::sql_text(r[0]));
      w.Key("aggregate_id");
      write_uuid(w, uuid_from_sql(r[1]));
      w.Key("version");
      w.Int64(es::sql_int(r[2]).value_or(0));
      w.Key("tenant_id");
      write_uuid(w, uuid_from_sql(r[3]));
      w.Key("last_occurred_at");
      write_time(w, time_of(r[4]));
      w.EndObject();
    }
    w.EndArray();
    w.Key("count");
    w.Uint64(rows->size());
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  table t{{"TYPE", "ID", "VERSION", "TENANT", "LAST EVENT AT"}};
  t.right(2);
  for (const auto& r : *rows)
    t.add({es::sql_text(r[0]), uuid_or_dash(uuid_from_sql(r[1])),
           num(es::sql_int(r[2]).value_or(0)),
           uuid_or_dash(uuid_from_sql(r[3])), time_or_dash(time_of(r[4]))});
  t.print();
  return exit_ok;
}

int show_stream(context& ctx, const std::string& type, const std::string& id,
                int64_t from, int64_t to) {
  auto aggregate = parse_uuid_arg("stream id", id);
  if (!aggregate)
    return exit_usage;
  if (to > 0 && from > to)
    return fail(exit_usage,
                "--from " + num(from) + " lies after --to " + num(to));
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  es::stream_id stream{type, *aggregate};
  auto version = (*store)->stream_version(stream);
  if (!version)
    return fail(version.error());
  if (*version == 0)
    return fail(exit_not_found,
                "stream " + es::to_string(stream) + " has no events");
  es::read_stream_options opts;
  opts.from_version = from;
  opts.to_version = to;
  es::recorded_events events;
  auto err = es::for_each_in_stream(**store, stream, opts,
                                    [&](es::recorded_event& ev) {
                                      events.push_back(std::move(ev));
                                      return caf::error{};
                                    });
  if (err)
    return fail(err);
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("aggregate_type");
    write_string(w, type);
    w.Key("aggregate_id");
    write_uuid(w, *aggregate);
    w.Key("version");
    w.Int64(*version);
    w.Key("events");
    w.StartArray();
    for (const auto& ev : events)
      write_event(w, ev);
    w.EndArray();
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("stream %s, version %lld\n", es::to_string(stream).c_str(),
              static_cast<long long>(*version));
  table t{{"VERSION", "POSITION", "EVENT TYPE", "OCCURRED AT", "PAYLOAD"}};
  t.right(0).right(1);
  for (const auto& ev : events)
    t.add({num(ev.aggregate_version), num(ev.global_position),
           ev.event_type + " v" + num(ev.event_version),
           es::format_timestamp(ev.occurred_at), shorten(ev.payload, 60)});
  t.print();
  return exit_ok;
}

int show_event(context& ctx, const std::string& id) {
  auto event_id = parse_uuid_arg("event id", id);
  if (!event_id)
    return exit_usage;
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  auto found = (*store)->find_event(*event_id);
  if (!found)
    return fail(found.error());
  if (!*found)
    return fail(exit_not_found, "no event " + event_id->to_string());
  const auto& ev = **found;
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    write_event(w, ev);
    print_json(buf);
    return exit_ok;
  }
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-18s%s\n", key, value.c_str());
  };
  line("event id", ev.event_id.to_string());
  line("event type", ev.event_type + " v" + num(ev.event_version));
  line("stream", stream_text(ev));
  line("version", num(ev.aggregate_version));
  line("position", num(ev.global_position));
  line("tenant", uuid_or_dash(ev.tenant_id));
  line("occurred at", es::format_timestamp(ev.occurred_at));
  line("correlation id", uuid_or_dash(ev.correlation_id));
  line("causation id", uuid_or_dash(ev.causation_id));
  line("actor", ev.actor_id.empty() ? "-" : ev.actor_id);
  line("metadata", ev.metadata.empty() ? "-" : ev.metadata);
  line("payload", ev.payload);
  std::fflush(stdout);
  return exit_ok;
}

int list_events(context& ctx, const event_selection& sel) {
  es::read_all_options opts;
  if (!make_filter(sel, opts.filter))
    return exit_usage;
  std::optional<es::uuid> chain;
  if (!sel.correlation.empty()) {
    chain = parse_uuid_arg("correlation id", sel.correlation);
    if (!chain)
      return exit_usage;
  }
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  opts.after_position = sel.from_position;
  es::recorded_events events;
  auto wanted = static_cast<size_t>(sel.limit);
  for (;;) {
    opts.max_count = std::min<size_t>(wanted - events.size(), 1000);
    auto slice = chain ? (*store)->read_correlated(*chain, opts)
                       : (*store)->read_all(opts);
    if (!slice)
      return fail(slice.error());
    for (auto& ev : slice->events)
      events.push_back(std::move(ev));
    opts.after_position = slice->next_position;
    if (slice->end_of_feed || events.size() >= wanted)
      break;
  }
  if (events.size() > wanted)
    events.resize(wanted);
  if (!events.empty())
    opts.after_position = events.back().global_position;
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("events");
    w.StartArray();
    for (const auto& ev : events)
      write_event(w, ev);
    w.EndArray();
    w.Key("next_position");
    w.Int64(opts.after_position);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  if (chain) {
    // A chain: which event each one was caused by, instead of the tenant.
    table t{{"POSITION", "EVENT ID", "STREAM", "VERSION", "EVENT TYPE",
             "CAUSED BY", "OCCURRED AT"}};
    t.right(0).right(3);
    for (const auto& ev : events)
      t.add({num(ev.global_position), ev.event_id.to_string(), stream_text(ev),
             num(ev.aggregate_version), ev.event_type,
             uuid_or_dash(ev.causation_id),
             es::format_timestamp(ev.occurred_at)});
    t.print();
    return exit_ok;
  }
  table t{
    {"POSITION", "STREAM", "VERSION", "EVENT TYPE", "TENANT", "OCCURRED AT"}};
  t.right(0).right(2);
  for (const auto& ev : events)
    t.add({num(ev.global_position), stream_text(ev), num(ev.aggregate_version),
           ev.event_type, uuid_or_dash(ev.tenant_id),
           es::format_timestamp(ev.occurred_at)});
  t.print();
  return exit_ok;
}

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_stop_signal(int) {
  stop_requested.store(true);
}

/// Turns SIGINT and SIGTERM into `stop_requested` while alive.
class stop_signals {
public:
  stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }

  ~stop_signals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

  stop_signals(const stop_signals&) = delete;
  stop_signals& operator=(const stop_signals&) = delete;

private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

} // namespace

int follow(context& ctx, const event_selection& sel,
           std::optional<int64_t> from_position, int64_t max_events,
           int64_t interval_ms) {
  es::read_all_options opts;
  if (!make_filter(sel, opts.filter))
    return exit_usage;
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  if (from_position) {
    opts.after_position = *from_position;
  } else {
    auto head = (*store)->head_position();
    if (!head)
      return fail(head.error());
    opts.after_position = *head;
  }
  stop_signals signals;
  // Said once on stderr, so a caller knows from where the tail runs.
  std::fprintf(stderr, "esctl: following the feed after position %lld\n",
               static_cast<long long>(opts.after_position));
  std::fflush(stderr);
  int64_t seen = 0;
  const auto interval = std::chrono::milliseconds{interval_ms};
  const auto nap = std::min(interval, std::chrono::milliseconds{20});
  while (!stop_requested.load()) {
    opts.max_count = 1000;
    if (max_events > 0)
      opts.max_count = std::min<size_t>(opts.max_count, max_events - seen);
    auto slice = (*store)->read_all(opts);
    if (!slice)
      return fail(slice.error());
    for (const auto& ev : slice->events) {
      if (ctx.json) {
        rapidjson::StringBuffer buf;
        json_writer w{buf};
        write_event(w, ev);
        print_json(buf);
      } else {
        std::printf("%s\n", event_line(ev).c_str());
        std::fflush(stdout);
      }
      if (max_events > 0 && ++seen >= max_events)
        return exit_ok;
    }
    opts.after_position = slice->next_position;
    if (!slice->end_of_feed)
      continue;
    // Waits for the next poll in short naps, so a signal stops it soon.
    auto until = std::chrono::steady_clock::now() + interval;
    while (!stop_requested.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(nap);
  }
  return exit_ok;
}

} // namespace esctl
