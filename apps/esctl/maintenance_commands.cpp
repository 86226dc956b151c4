// esctl delete-stream, truncate-stream and partitions: changes an operator
// makes to the log (each an append of a control event) and to the layout
// of a range-partitioned PostgreSQL events table.
#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"
#ifdef ES_HAVE_POSTGRES
#  include "es/postgres/postgres.hpp"
#endif

#include "commands.hpp"
#include "output.hpp"

#include <cstdio>

namespace esctl {

namespace {

/// The stream named on the command line, after checking it exists and is
/// not deleted; prints why not.
std::optional<es::stream_id> existing_stream(es::event_store& store,
                                             const std::string& type,
                                             const std::string& id, int& code) {
  auto aggregate = es::uuid::parse(id);
  if (!aggregate) {
    code = fail(exit_usage,
                "stream id '" + id + "' is not a UUID (8-4-4-4-12 hex digits)");
    return std::nullopt;
  }
  es::stream_id stream{type, *aggregate};
  auto version = store.stream_version(stream);
  if (!version) {
    code = fail(version.error());
    return std::nullopt;
  }
  if (*version == 0) {
    code = fail(exit_not_found,
                "stream " + es::to_string(stream) + " has no events");
    return std::nullopt;
  }
  return stream;
}

es::expected_version expectation(std::optional<int64_t> expected) {
  return expected ? es::expected_version::exact(*expected)
                  : es::expected_version::any();
}

/// Prints what a control event did.
int report(context& ctx, const char* what, const es::append_result& res) {
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("stream");
    write_string(w, es::to_string(res.stream));
    w.Key("action");
    w.String(what);
    w.Key("version");
    w.Int64(res.last_version);
    w.Key("position");
    w.Int64(res.last_position);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("%s stream %s: control event at version %s, position %s\n", what,
              es::to_string(res.stream).c_str(), num(res.last_version).c_str(),
              num(res.last_position).c_str());
  return exit_ok;
}

} // namespace

int delete_stream(context& ctx, const std::string& type, const std::string& id,
                  bool hard, std::optional<int64_t> expected) {
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  int code = exit_ok;
  auto stream = existing_stream(**store, type, id, code);
  if (!stream)
    return code;
  auto res = es::delete_stream(
    **store, *stream, hard ? es::deletion_mode::hard : es::deletion_mode::soft,
    expectation(expected));
  if (!res)
    return fail(res.error());
  return report(ctx, hard ? "deleted (for good)" : "deleted", *res);
}

int truncate_stream(context& ctx, const std::string& type,
                    const std::string& id, int64_t before,
                    std::optional<int64_t> expected) {
  auto store = ctx.st.events();
  if (!store)
    return fail(store.error());
  int code = exit_ok;
  auto stream = existing_stream(**store, type, id, code);
  if (!stream)
    return code;
  auto res
    = es::truncate_stream(**store, *stream, before, expectation(expected));
  if (!res)
    return fail(res.error());
  return report(ctx, "truncated", *res);
}

int partitions(context& ctx, partitions_action action, int64_t arg) {
#ifdef ES_HAVE_POSTGRES
  if (ctx.st.location().kind != backend::postgres)
    return fail(exit_usage, "partitions: range partitions exist on "
                            "PostgreSQL stores only");
  es::postgres_config cfg;
  cfg.dsn = ctx.st.location().target;
  caf::expected<es::event_ranges_report> res{caf::error{}};
  std::vector<std::string> detached;
  switch (action) {
    case partitions_action::list: res = es::postgres_event_ranges(cfg); break;
    case partitions_action::prepare:
      res = es::postgres_prepare_event_ranges(cfg, static_cast<int>(arg));
      break;
    case partitions_action::detach: {
      auto names = es::postgres_detach_event_ranges(cfg, arg);
      if (!names)
        return fail(names.error());
      detached = std::move(*names);
      res = es::postgres_event_ranges(cfg);
      break;
    }
  }
  if (!res)
    return fail(res.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("range_size");
    w.Int64(res->range_size);
    w.Key("head");
    w.Int64(res->head);
    w.Key("default_rows");
    w.Int64(res->default_rows);
    w.Key("ranges");
    w.StartArray();
    for (const auto& r : res->ranges) {
      w.StartObject();
      w.Key("name");
      write_string(w, r.name);
      w.Key("first_position");
      w.Int64(r.first_position);
      w.Key("last_position");
      w.Int64(r.last_position);
      w.EndObject();
    }
    w.EndArray();
    if (action == partitions_action::detach) {
      w.Key("detached");
      w.StartArray();
      for (const auto& name : detached)
        write_string(w, name);
      w.EndArray();
    }
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  for (const auto& name : detached)
    std::printf("detached %s (the table stays: archive it, then drop it)\n",
                name.c_str());
  table t{{"PARTITION", "FIRST POSITION", "LAST POSITION"}};
  t.right(1).right(2);
  for (const auto& r : res->ranges)
    t.add({r.name, num(r.first_position), num(r.last_position)});
  t.print();
  std::printf("head %s, %s rows in the default partition\n",
              num(res->head).c_str(), num(res->default_rows).c_str());
  return exit_ok;
#else
  static_cast<void>(action);
  static_cast<void>(arg);
  return fail(exit_usage, "partitions: this esctl was built without "
                          "PostgreSQL");
#endif
}

int feed(context& ctx, const std::string& set_to) {
#ifdef ES_HAVE_POSTGRES
  if (ctx.st.location().kind != backend::postgres)
    return fail(exit_usage, "feed: the feed is a setting of PostgreSQL "
                            "stores only");
  es::postgres_config cfg;
  cfg.dsn = ctx.st.location().target;
  if (!set_to.empty()) {
    auto to = set_to == "overlapping" ? es::postgres_feed::overlapping
                                      : es::postgres_feed::serialized;
    if (auto err = es::postgres_switch_feed(cfg, to))
      return fail(err);
  }
  auto now = es::postgres_feed_of(cfg);
  if (!now)
    return fail(now.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("feed");
    w.String(es::to_string(*now));
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("feed %s\n", es::to_string(*now));
  return exit_ok;
#else
  static_cast<void>(set_to);
  return fail(exit_usage, "feed: this esctl was built without PostgreSQL");
#endif
}

} // namespace esctl
