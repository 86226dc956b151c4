// esctl checkpoints, projections, dlq and outbox: the state around the log.
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/state_stores.hpp"

#include "commands.hpp"
#include "output.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace esctl {

namespace {

void write_checkpoint(json_writer& w, const es::checkpoint& cp) {
  w.StartObject();
  w.Key("projection");
  write_string(w, cp.projection);
  w.Key("position");
  w.Int64(cp.position);
  w.Key("event_id");
  write_uuid(w, cp.event_id.is_nil() ? std::nullopt
                                     : std::optional<es::uuid>{cp.event_id});
  w.Key("event_type");
  write_string(w, cp.event_type);
  w.Key("events_processed");
  w.Int64(cp.events_processed);
  w.Key("updated_at");
  write_time(w, cp.updated_at);
  w.EndObject();
}

} // namespace

int list_checkpoints(context& ctx) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto cps = (*db)->checkpoints()->list();
  if (!cps)
    return fail(cps.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("checkpoints");
    w.StartArray();
    for (const auto& cp : *cps)
      write_checkpoint(w, cp);
    w.EndArray();
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  table t{
    {"PROJECTION", "POSITION", "EVENTS", "LAST EVENT TYPE", "UPDATED AT"}};
  t.right(1).right(2);
  for (const auto& cp : *cps)
    t.add({cp.projection, num(cp.position), num(cp.events_processed),
           cp.event_type.empty() ? "-" : cp.event_type,
           es::format_timestamp(cp.updated_at)});
  t.print();
  return exit_ok;
}

int reset_checkpoint(context& ctx, const std::string& name, int64_t position) {
  const auto kind = ctx.st.location().kind;
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto events = ctx.st.events();
  if (!events)
    return fail(events.error());
  auto head = (*events)->head_position();
  if (!head)
    return fail(head.error());
  if (position > *head)
    return fail(exit_usage, "position " + num(position)
                              + " lies beyond the head of the feed ("
                              + num(*head) + ")");
  progress bar{"checkpoints reset"};
  bar.update("taking the lease of " + name);
  auto cps = (*db)->checkpoints();
  // A running instance of the projection holds its lease: moving the
  // checkpoint under it would be undone (or worse) by its next save.
  auto lease = cps->try_lease(name);
  if (!lease) {
    if (es::has_code(lease.error(), es::store_errc::lease_held))
      return fail(exit_store_error,
                  "projection " + name
                    + " is running (another process holds its lease): stop "
                      "it before moving its checkpoint");
    return fail(lease.error());
  }
  auto before = cps->load(name);
  if (!before)
    return fail(before.error());
  if (!*before)
    return fail(exit_not_found, "no checkpoint named " + name);
  bar.update("moving " + name + " to " + num(position));
  std::string sql;
  std::vector<es::sql_value> params{position};
  if (kind == backend::sqlite) {
    sql = "UPDATE projection_checkpoints SET global_position = ?1,"
          " event_id = NULL, event_type = NULL, updated_at = ?2"
          " WHERE projection_name = ?3";
    params.emplace_back(
      static_cast<int64_t>(es::now_utc().time_since_epoch().count()));
  } else {
    sql = "UPDATE projection_checkpoints SET global_position = ?1,"
          " event_id = NULL, event_type = NULL, updated_at = now()"
          " WHERE projection_name = ?2";
  }
  params.emplace_back(name);
  auto err = (*db)->transact([&](es::sql_transaction& tx) {
    return tx.exec(sql, params);
  });
  if (err)
    return fail(err);
  auto after = cps->load(name);
  if (!after)
    return fail(after.error());
  auto now_at = *after ? (*after)->position : 0;
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("projection");
    write_string(w, name);
    w.Key("previous_position");
    w.Int64((*before)->position);
    w.Key("position");
    w.Int64(now_at);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("checkpoint %s moved from %lld to %lld\n", name.c_str(),
              static_cast<long long>((*before)->position),
              static_cast<long long>(now_at));
  return exit_ok;
}

int list_projections(context& ctx) {
  auto events = ctx.st.events();
  if (!events)
    return fail(events.error());
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto head = (*events)->head_position();
  if (!head)
    return fail(head.error());
  auto cps = (*db)->checkpoints()->list();
  if (!cps)
    return fail(cps.error());
  auto stats = (*db)->dead_letters()->stats();
  if (!stats)
    return fail(stats.error());
  auto unresolved = [&](const std::string& name) {
    auto i = stats->by_projection.find(name);
    return i == stats->by_projection.end() ? int64_t{0} : i->second;
  };
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("head_position");
    w.Int64(*head);
    w.Key("projections");
    w.StartArray();
    for (const auto& cp : *cps) {
      w.StartObject();
      w.Key("projection");
      write_string(w, cp.projection);
      w.Key("position");
      w.Int64(cp.position);
      w.Key("lag");
      w.Int64(*head - cp.position);
      w.Key("events_processed");
      w.Int64(cp.events_processed);
      w.Key("dlq_unresolved");
      w.Int64(unresolved(cp.projection));
      w.Key("updated_at");
      write_time(w, cp.updated_at);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  table t{{"PROJECTION", "POSITION", "HEAD", "LAG", "DLQ", "UPDATED AT"}};
  t.right(1).right(2).right(3).right(4);
  for (const auto& cp : *cps)
    t.add({cp.projection, num(cp.position), num(*head),
           num(*head - cp.position), num(unresolved(cp.projection)),
           es::format_timestamp(cp.updated_at)});
  t.print();
  return exit_ok;
}

// -- dead letters -------------------------------------------------------------

namespace {

void write_dead_letter(json_writer& w, const es::dead_letter& e, bool full) {
  w.StartObject();
  w.Key("id");
  w.Int64(e.id);
  w.Key("projection");
  write_string(w, e.projection);
  w.Key("event_id");
  write_uuid(w, e.event_id);
  w.Key("global_position");
  w.Int64(e.global_position);
  w.Key("event_type");
  write_string(w, e.event_type);
  w.Key("status");
  w.String(es::to_string(e.status));
  w.Key("retry_count");
  w.Int(e.retry_count);
  w.Key("error_message");
  write_string(w, e.error_message);
  w.Key("first_failed_at");
  write_time(w, e.first_failed_at);
  w.Key("last_failed_at");
  write_time(w, e.last_failed_at);
  w.Key("resolved_at");
  write_time(w, e.resolved_at);
  w.Key("resolved_by");
  write_string(w, e.resolved_by);
  if (full) {
    w.Key("error_context");
    write_string(w, e.error_context);
    // The event as the projection got it, payload and metadata as JSON.
    w.Key("event");
    if (auto ev = es::decode_recorded_event(e.event_data))
      write_event(w, *ev);
    else
      write_embedded_json(w, e.event_data);
  }
  w.EndObject();
}

/// Loads dead letter `id`; prints why not and sets `code` when it fails.
std::optional<es::dead_letter> load_dead_letter(es::dead_letter_store& dlq,
                                                int64_t id, int& code) {
  auto e = dlq.get(id);
  if (!e) {
    code = fail(e.error());
    return std::nullopt;
  }
  if (!*e) {
    code = fail(exit_not_found, "no dead letter " + num(id));
    return std::nullopt;
  }
  return std::move(**e);
}

} // namespace

int dlq_list(context& ctx, const dlq_selection& sel) {
  es::dead_letter_query q;
  if (!sel.projection.empty())
    q.projection = sel.projection;
  if (!sel.status.empty()) {
    q.status = es::parse_dead_letter_status(sel.status);
    if (!q.status)
      return fail(exit_usage, "--status takes failed, retrying or resolved, "
                              "not '"
                                + sel.status + "'");
  }
  q.limit = static_cast<size_t>(sel.limit);
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto entries = (*db)->dead_letters()->list(q);
  if (!entries)
    return fail(entries.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("dead_letters");
    w.StartArray();
    for (const auto& e : *entries)
      write_dead_letter(w, e, false);
    w.EndArray();
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  table t{{"ID", "PROJECTION", "POSITION", "EVENT TYPE", "STATUS", "RETRIES",
           "LAST FAILED AT", "ERROR"}};
  t.right(0).right(2).right(5);
  for (const auto& e : *entries)
    t.add({num(e.id), e.projection, num(e.global_position), e.event_type,
           es::to_string(e.status), num(e.retry_count),
           es::format_timestamp(e.last_failed_at),
           shorten(e.error_message, 50)});
  t.print();
  return exit_ok;
}

int dlq_show(context& ctx, int64_t id) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  int code = exit_ok;
  auto e = load_dead_letter(*(*db)->dead_letters(), id, code);
  if (!e)
    return code;
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    write_dead_letter(w, *e, true);
    print_json(buf);
    return exit_ok;
  }
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-17s%s\n", key, value.c_str());
  };
  line("id", num(e->id));
  line("projection", e->projection);
  line("status", es::to_string(e->status));
  line("event id", e->event_id.to_string());
  line("event type", e->event_type);
  line("position", num(e->global_position));
  line("retries", num(e->retry_count));
  line("first failed at", es::format_timestamp(e->first_failed_at));
  line("last failed at", es::format_timestamp(e->last_failed_at));
  if (e->status == es::dead_letter_status::resolved)
    line("resolved",
         "by " + e->resolved_by + " at " + time_or_dash(e->resolved_at));
  line("error", e->error_message);
  if (!e->error_context.empty())
    line("context", e->error_context);
  if (auto ev = es::decode_recorded_event(e->event_data)) {
    line("stream", ev->aggregate_type + "/" + ev->aggregate_id.to_string()
                     + " v" + num(ev->aggregate_version));
    line("payload", ev->payload);
    if (!ev->metadata.empty())
      line("metadata", ev->metadata);
  } else {
    line("event", e->event_data);
  }
  std::fflush(stdout);
  return exit_ok;
}

int dlq_replay(context& ctx, int64_t id) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto dlq = (*db)->dead_letters();
  int code = exit_ok;
  auto e = load_dead_letter(*dlq, id, code);
  if (!e)
    return code;
  if (e->status == es::dead_letter_status::resolved)
    return fail(exit_not_found, "dead letter " + num(id) + " is resolved (by "
                                  + e->resolved_by + "): nothing to replay");
  auto marked = dlq->mark_retrying(id);
  if (!marked)
    return fail(marked.error());
  if (!*marked)
    return fail(exit_not_found, "no dead letter " + num(id));
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("id");
    w.Int64(id);
    w.Key("projection");
    write_string(w, e->projection);
    w.Key("previous_status");
    w.String(es::to_string(e->status));
    w.Key("status");
    w.String(es::to_string(es::dead_letter_status::retrying));
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("dead letter %lld re-queued for %s: status retrying (was %s);"
              " the application's replay resolves it or records the new"
              " failure\n",
              static_cast<long long>(id), e->projection.c_str(),
              es::to_string(e->status));
  return exit_ok;
}

int dlq_resolve(context& ctx, int64_t id, const std::string& by) {
  auto who = by;
  if (who.empty()) {
    auto* user = std::getenv("USER");
    who = user != nullptr && *user != '\0' ? user : "esctl";
  }
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto res = (*db)->dead_letters()->mark_resolved(id, who);
  if (!res)
    return fail(res.error());
  if (!*res)
    return fail(exit_not_found, "no dead letter " + num(id));
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("id");
    w.Int64(id);
    w.Key("status");
    w.String("resolved");
    w.Key("resolved_by");
    write_string(w, who);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("dead letter %lld resolved by %s\n", static_cast<long long>(id),
              who.c_str());
  return exit_ok;
}

int dlq_purge(context& ctx, int64_t older_than_days) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  progress bar{"dlq purge"};
  bar.update("deleting resolved entries");
  auto n = (*db)->dead_letters()->purge_resolved(std::chrono::hours{24}
                                                 * older_than_days);
  if (!n)
    return fail(n.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("deleted");
    w.Int64(*n);
    w.Key("older_than_days");
    w.Int64(older_than_days);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("deleted %lld resolved dead letter(s)",
              static_cast<long long>(*n));
  if (older_than_days > 0)
    std::printf(" resolved more than %lld day(s) ago",
                static_cast<long long>(older_than_days));
  std::printf("\n");
  return exit_ok;
}

int dlq_stats(context& ctx) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  auto s = (*db)->dead_letters()->stats();
  if (!s)
    return fail(s.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("total");
    w.Int64(s->total);
    w.Key("failed");
    w.Int64(s->failed);
    w.Key("retrying");
    w.Int64(s->retrying);
    w.Key("resolved");
    w.Int64(s->resolved);
    w.Key("unresolved_by_projection");
    w.StartObject();
    for (const auto& [name, n] : s->by_projection) {
      write_string(w, name);
      w.Int64(n);
    }
    w.EndObject();
    w.Key("oldest_unresolved");
    write_time(w, s->oldest_unresolved);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf(
    "total %lld: %lld failed, %lld retrying, %lld resolved\n",
    static_cast<long long>(s->total), static_cast<long long>(s->failed),
    static_cast<long long>(s->retrying), static_cast<long long>(s->resolved));
  std::printf("oldest unresolved: %s\n",
              time_or_dash(s->oldest_unresolved).c_str());
  if (!s->by_projection.empty()) {
    table t{{"PROJECTION", "UNRESOLVED"}};
    t.right(1);
    for (const auto& [name, n] : s->by_projection)
      t.add({name, num(n)});
    t.print();
  }
  return exit_ok;
}

// -- outbox -------------------------------------------------------------------

int outbox_status(context& ctx) {
  auto outbox = ctx.st.outbox();
  if (!outbox)
    return fail(outbox.error());
  auto c = (*outbox)->counts();
  if (!c)
    return fail(c.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("pending");
    w.Int64(c->pending);
    w.Key("published");
    w.Int64(c->published);
    w.Key("failed");
    w.Int64(c->failed);
    w.Key("oldest_waiting");
    write_time(w, c->oldest_waiting);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("pending         %lld\n", static_cast<long long>(c->pending));
  std::printf("published       %lld\n", static_cast<long long>(c->published));
  std::printf("failed          %lld\n", static_cast<long long>(c->failed));
  std::printf("oldest waiting  %s\n", time_or_dash(c->oldest_waiting).c_str());
  return exit_ok;
}

int outbox_retry_failed(context& ctx) {
  auto db = ctx.st.db();
  if (!db)
    return fail(db.error());
  // Relays claim failed rows until their retry count reaches the relay's
  // limit; back to pending with a fresh count, every relay takes them again.
  int64_t requeued = 0;
  auto err = (*db)->transact([&](es::sql_transaction& tx) -> caf::error {
    auto n = tx.query("SELECT COUNT(*) FROM event_outbox"
                      " WHERE status = 'failed'");
    if (!n)
      return std::move(n.error());
    requeued = n->empty() ? 0 : es::sql_int(n->front().at(0)).value_or(0);
    return tx.exec("UPDATE event_outbox SET status = 'pending',"
                   " retry_count = 0 WHERE status = 'failed'");
  });
  if (err)
    return fail(err);
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("requeued");
    w.Int64(requeued);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("%lld failed outbox row(s) back to pending\n",
              static_cast<long long>(requeued));
  return exit_ok;
}

int outbox_cleanup(context& ctx, int64_t older_than_days) {
  auto outbox = ctx.st.outbox();
  if (!outbox)
    return fail(outbox.error());
  progress bar{"outbox cleanup"};
  bar.update("deleting published rows");
  auto n = (*outbox)->cleanup(std::chrono::hours{24} * older_than_days);
  if (!n)
    return fail(n.error());
  if (ctx.json) {
    rapidjson::StringBuffer buf;
    json_writer w{buf};
    w.StartObject();
    w.Key("deleted");
    w.Int64(*n);
    w.Key("older_than_days");
    w.Int64(older_than_days);
    w.EndObject();
    print_json(buf);
    return exit_ok;
  }
  std::printf("deleted %lld published outbox row(s) older than %lld day(s)\n",
              static_cast<long long>(*n),
              static_cast<long long>(older_than_days));
  return exit_ok;
}

} // namespace esctl
