// esctl migrate and info: the schema and the health of a store.
#include "es/store/errors.hpp"

#include "commands.hpp"
#include "output.hpp"

#include <cstdio>

namespace esctl {

namespace {

const char* backend_name(backend kind) {
  return kind == backend::sqlite ? "sqlite" : "postgres";
}

std::vector<int> pending_steps(const schema_probe& p) {
  std::vector<int> steps;
  for (int v = p.version + 1; v <= p.library_version; ++v)
    steps.push_back(v);
  return steps;
}

void write_ints(json_writer& w, const std::vector<int>& xs) {
  w.StartArray();
  for (auto x : xs)
    w.Int(x);
  w.EndArray();
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (const auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out;
}

} // namespace

int migrate(context& ctx, bool dry_run) {
  auto before = ctx.st.probe();
  if (!before)
    return fail(before.error());
  if (before->version > before->library_version)
    return fail(exit_unhealthy, "the schema is at version "
                                  + std::to_string(before->version)
                                  + ", newer than this esctl's "
                                  + std::to_string(before->library_version)
                                  + ": use a newer esctl");
  auto steps = pending_steps(*before);
  auto after_version = before->version;
  if (!dry_run && !steps.empty()) {
    progress bar{"migrate"};
    bar.update("applying " + std::to_string(steps.size()) + " step(s)");
    if (auto err = ctx.st.migrate())
      return fail(err);
    auto after = ctx.st.probe();
    if (!after)
      return fail(after.error());
    after_version = after->version;
  }
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("dry_run");
    w.Bool(dry_run);
    w.Key("backend");
    w.String(backend_name(ctx.st.location().kind));
    w.Key("schema_version");
    w.Int(dry_run ? before->version : after_version);
    w.Key("library_schema_version");
    w.Int(before->library_version);
    w.Key(dry_run ? "pending" : "applied");
    write_ints(w, steps);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  if (steps.empty()) {
    std::printf("schema is current (version %d): nothing to do\n",
                before->version);
    return exit_ok;
  }
  if (dry_run) {
    std::printf("schema at version %d, esctl's is %d: %zu pending step(s)"
                " (dry run, nothing applied)\n",
                before->version, before->library_version, steps.size());
    for (auto v : steps)
      std::printf("  step %d\n", v);
    return exit_ok;
  }
  std::printf("applied %zu step(s): schema version %d -> %d\n", steps.size(),
              before->version, after_version);
  return exit_ok;
}

namespace {

/// The counts `info` shows for a healthy store.
struct store_counts {
  int64_t head = 0;
  int64_t events = 0;
  int64_t streams = 0;
  int64_t outbox_pending = 0;
  int64_t outbox_failed = 0;
  int64_t dlq_unresolved = 0;
};

caf::expected<store_counts> count(store& st) {
  store_counts c;
  auto events = st.events();
  if (!events)
    return std::move(events.error());
  auto head = (*events)->head_position();
  if (!head)
    return std::move(head.error());
  c.head = *head;
  auto db = st.db();
  if (!db)
    return std::move(db.error());
  auto n = query_int(**db, "SELECT COUNT(*) FROM events");
  if (!n)
    return std::move(n.error());
  c.events = *n;
  n = query_int(**db, "SELECT COUNT(*) FROM (SELECT DISTINCT aggregate_type,"
                      " aggregate_id FROM events) s");
  if (!n)
    return std::move(n.error());
  c.streams = *n;
  auto outbox = st.outbox();
  if (!outbox)
    return std::move(outbox.error());
  auto oc = (*outbox)->counts();
  if (!oc)
    return std::move(oc.error());
  c.outbox_pending = oc->pending;
  c.outbox_failed = oc->failed;
  auto stats = (*db)->dead_letters()->stats();
  if (!stats)
    return std::move(stats.error());
  c.dlq_unresolved = stats->failed + stats->retrying;
  return c;
}

} // namespace

int info(context& ctx) {
  const auto kind = ctx.st.location().kind;
  auto p = ctx.st.probe();
  std::string problem;
  if (!p)
    problem = es::error_description(p.error());
  else if (!p->exists)
    problem = "no database at " + ctx.st.location().target;
  else if (!p->missing_tables.empty())
    problem = "tables missing: " + join(p->missing_tables);
  else if (p->version != p->library_version)
    problem = "the schema is at version " + std::to_string(p->version)
              + ", esctl's is " + std::to_string(p->library_version);
  std::optional<store_counts> counts;
  if (problem.empty()) {
    auto c = count(ctx.st);
    if (!c)
      return fail(c.error());
    counts = *c;
  }
  bool connected = p && p->exists;
  bool answers = p && p->answers;
  bool tables = p && p->exists && p->missing_tables.empty();
  bool current = p && p->current();
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("backend");
    w.String(backend_name(kind));
    w.Key("healthy");
    w.Bool(problem.empty());
    w.Key("problem");
    if (problem.empty())
      w.Null();
    else
      write_string(w, problem);
    w.Key("checks");
    w.StartObject();
    w.Key("connect");
    w.Bool(connected);
    w.Key("select_1");
    w.Bool(answers);
    w.Key("tables");
    w.Bool(tables);
    w.Key("schema_current");
    w.Bool(current);
    w.EndObject();
    w.Key("missing_tables");
    w.StartArray();
    if (p && p->exists)
      for (const auto& t : p->missing_tables)
        write_string(w, t);
    w.EndArray();
    w.Key("schema_version");
    w.Int(p ? p->version : 0);
    w.Key("library_schema_version");
    w.Int(p ? p->library_version : 0);
    auto field = [&](const char* key, int64_t store_counts::*member) {
      w.Key(key);
      if (counts)
        w.Int64((*counts).*member);
      else
        w.Null();
    };
    field("head_position", &store_counts::head);
    field("event_count", &store_counts::events);
    field("stream_count", &store_counts::streams);
    field("outbox_pending", &store_counts::outbox_pending);
    field("outbox_failed", &store_counts::outbox_failed);
    field("dlq_unresolved", &store_counts::dlq_unresolved);
    w.EndObject();
    print_json(buf);
  } else {
    auto ok = [](bool x) {
      return x ? "ok" : "FAILED";
    };
    std::printf("backend          %s\n", backend_name(kind));
    if (kind == backend::sqlite)
      std::printf("file             %s\n", ctx.st.location().target.c_str());
    std::printf("healthy          %s\n", problem.empty() ? "yes" : "no");
    std::printf("  connect        %s\n", ok(connected));
    std::printf("  select 1       %s\n", ok(answers));
    std::printf("  tables         %s\n", ok(tables));
    std::printf("  schema         %s\n", ok(current));
    if (p)
      std::printf("schema version   %d (esctl's: %d)\n", p->version,
                  p->library_version);
    if (counts) {
      std::printf("head position    %lld\n",
                  static_cast<long long>(counts->head));
      std::printf("events           %lld\n",
                  static_cast<long long>(counts->events));
      std::printf("streams          %lld\n",
                  static_cast<long long>(counts->streams));
      std::printf("outbox pending   %lld\n",
                  static_cast<long long>(counts->outbox_pending));
      std::printf("outbox failed    %lld\n",
                  static_cast<long long>(counts->outbox_failed));
      std::printf("dlq unresolved   %lld\n",
                  static_cast<long long>(counts->dlq_unresolved));
    }
    std::fflush(stdout);
  }
  if (!problem.empty())
    return fail(exit_unhealthy, "the store is unhealthy: " + problem);
  return exit_ok;
}

} // namespace esctl
