// orders status, dlq and rebuild: operating the projections.
#include "es/brokers/brokers.hpp"
#include "es/projections/coordinator.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/codec.hpp"
#include "es/supervision/actors.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "cli.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>

namespace orders {

namespace {

using clock_type = std::chrono::steady_clock;

const std::vector<std::string>& projection_names() {
  static const std::vector<std::string> names{
    order_summary_view::projection_name, customer_stats_view::projection_name};
  return names;
}

/// Opens the store and the views of an earlier run, or says why not.
bool open_both(const orders_config& cfg, es::event_store_ptr& store, views& v) {
  auto s = open_store(cfg, true);
  if (!s) {
    std::cerr << "orders: " << es::describe(s.error()) << "\n";
    return false;
  }
  auto opened = open_views(cfg, true);
  if (!opened) {
    std::cerr << "orders: " << es::describe(opened.error()) << "\n";
    return false;
  }
  store = std::move(*s);
  v = std::move(*opened);
  return true;
}

std::optional<int64_t> parse_id(const std::string& text) {
  char* end = nullptr;
  auto x = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || x <= 0)
    return std::nullopt;
  return x;
}

std::string shorten(std::string text, size_t n) {
  if (text.size() > n)
    text = text.substr(0, n - 3) + "...";
  return text;
}

void print_entry_header() {
  std::printf("  %5s  %-15s %8s  %-14s %-9s %7s  %-27s %s\n", "id",
              "projection", "position", "event type", "status", "retries",
              "last failure", "error");
}

void print_entry(const es::dead_letter& e) {
  std::printf("  %5lld  %-15s %8lld  %-14s %-9s %7d  %-27s %s\n",
              static_cast<long long>(e.id), e.projection.c_str(),
              static_cast<long long>(e.global_position), e.event_type.c_str(),
              es::to_string(e.status), e.retry_count,
              es::format_timestamp(e.last_failed_at).c_str(),
              shorten(e.error_message, 70).c_str());
  if (e.status == es::dead_letter_status::resolved)
    std::printf("         resolved by %s at %s\n", e.resolved_by.c_str(),
                e.resolved_at ? es::format_timestamp(*e.resolved_at).c_str()
                              : "?");
}

int dlq_list(const orders_config& cfg, views& v) {
  es::dead_letter_query q;
  if (!cfg.projection.empty())
    q.projection = cfg.projection;
  if (!cfg.status.empty()) {
    q.status = es::parse_dead_letter_status(cfg.status);
    if (!q.status) {
      std::cerr << "orders: --status must be failed, retrying or resolved\n";
      return 2;
    }
  }
  q.limit = static_cast<size_t>(std::max<int64_t>(cfg.limit, 1));
  auto stats = v.db->dead_letters()->stats();
  auto entries = v.db->dead_letters()->list(q);
  if (!stats || !entries) {
    std::cerr << "orders: "
              << es::describe(!stats ? stats.error() : entries.error()) << "\n";
    return 1;
  }
  print_dead_letter_totals(*stats);
  for (const auto& [name, n] : stats->by_projection)
    std::printf("    %-16s %6lld unresolved\n", name.c_str(),
                static_cast<long long>(n));
  if (entries->empty()) {
    std::printf("  no entries match\n");
    return 0;
  }
  print_entry_header();
  for (const auto& e : *entries)
    print_entry(e);
  if (entries->size() == q.limit)
    std::printf("  (first %zu shown; --limit shows more)\n", q.limit);
  return 0;
}

int dlq_replay(caf::actor_system& sys, const orders_config& cfg,
               const es::event_store_ptr& store, views& v,
               const std::string& which) {
  std::vector<es::dead_letter> todo;
  if (which == "all") {
    for (auto state :
         {es::dead_letter_status::failed, es::dead_letter_status::retrying}) {
      es::dead_letter_query q;
      if (!cfg.projection.empty())
        q.projection = cfg.projection;
      q.status = state;
      q.limit = std::numeric_limits<uint32_t>::max();
      auto entries = v.db->dead_letters()->list(q);
      if (!entries) {
        std::cerr << "orders: " << es::describe(entries.error()) << "\n";
        return 1;
      }
      todo.insert(todo.end(), entries->begin(), entries->end());
    }
  } else {
    auto id = parse_id(which);
    if (!id) {
      std::cerr << "orders: dlq replay takes an entry id or 'all', not '"
                << which << "'\n";
      return 2;
    }
    auto entry = v.db->dead_letters()->get(*id);
    if (!entry) {
      std::cerr << "orders: " << es::describe(entry.error()) << "\n";
      return 1;
    }
    if (!*entry) {
      std::cerr << "orders: no dead letter " << *id << "\n";
      return 2;
    }
    if ((*entry)->status == es::dead_letter_status::resolved) {
      std::cerr << "orders: dead letter " << *id << " is already resolved (by "
                << (*entry)->resolved_by << ")\n";
      return 2;
    }
    todo.push_back(**entry);
  }
  if (todo.empty()) {
    std::printf("nothing to replay\n");
    return 0;
  }
  // The projections run as in `run`, following the store; the replay goes
  // through the dead-letter actor to the projection's current actor.
  es::projection_coordinator projections{sys};
  if (auto err = start_projections(projections, v, store, es::bus_actor{},
                                   cfg.fail_cancellations)) {
    std::cerr << "orders: cannot start the projections: " << es::describe(err)
              << "\n";
    return 1;
  }
  auto dla = es::spawn_dead_letter_actor(sys, v.db->dead_letters(), store);
  caf::scoped_actor self{sys};
  size_t resolved = 0;
  size_t failed = 0;
  for (const auto& e : todo) {
    auto target = projections.actor(e.projection);
    if (!target) {
      std::printf("  #%lld: no projection %s here: %s\n",
                  static_cast<long long>(e.id), e.projection.c_str(),
                  es::describe(target.error()).c_str());
      ++failed;
      continue;
    }
    self
      ->request(dla, std::chrono::seconds(60), es::dlq_replay_atom_v, e.id,
                es::replay_target_actor{*target})
      .receive(
        [&](bool ok) {
          if (ok) {
            ++resolved;
            std::printf("  #%lld %s at %lld: resolved\n",
                        static_cast<long long>(e.id), e.event_type.c_str(),
                        static_cast<long long>(e.global_position));
          } else {
            ++failed;
            std::printf("  #%lld: entry vanished during the replay\n",
                        static_cast<long long>(e.id));
          }
        },
        [&](caf::error& err) {
          ++failed;
          std::printf("  #%lld %s at %lld: failed again: %s\n",
                      static_cast<long long>(e.id), e.event_type.c_str(),
                      static_cast<long long>(e.global_position),
                      es::describe(err).c_str());
        });
  }
  self->send_exit(dla, caf::exit_reason::user_shutdown);
  projections.stop();
  std::printf("replayed %zu dead letters: %zu resolved, %zu failed\n",
              todo.size(), resolved, failed);
  return failed == 0 ? 0 : 1;
}

int dlq_resolve(const orders_config& cfg, views& v, const std::string& which) {
  auto id = parse_id(which);
  if (!id) {
    std::cerr << "orders: dlq resolve takes an entry id, not '" << which
              << "'\n";
    return 2;
  }
  auto by = cfg.by;
  if (by.empty()) {
    auto* user = std::getenv("USER");
    by = user != nullptr && *user != '\0' ? user : "orders-cli";
  }
  auto res = v.db->dead_letters()->mark_resolved(*id, by);
  if (!res) {
    std::cerr << "orders: " << es::describe(res.error()) << "\n";
    return 1;
  }
  if (!*res) {
    std::cerr << "orders: no dead letter " << *id << "\n";
    return 2;
  }
  std::printf("dead letter #%lld resolved by %s\n", static_cast<long long>(*id),
              by.c_str());
  return 0;
}

int dlq_purge(const orders_config& cfg, views& v) {
  if (cfg.older_than_days < 0) {
    std::cerr << "orders: --older-than-days must not be negative\n";
    return 2;
  }
  auto n = v.db->dead_letters()->purge_resolved(std::chrono::hours(24)
                                                * cfg.older_than_days);
  if (!n) {
    std::cerr << "orders: " << es::describe(n.error()) << "\n";
    return 1;
  }
  std::printf("deleted %lld resolved dead letters older than %lld days\n",
              static_cast<long long>(*n),
              static_cast<long long>(cfg.older_than_days));
  return 0;
}

/// After a rebuild: the events of `projection` waiting in the dead-letter
/// queue are not in the read model, so the rebuild did not give the model
/// the log describes. Names the first of them; returns the exit code.
int report_dead_letters(views& v, const std::string& projection) {
  auto stats = v.db->dead_letters()->stats();
  if (!stats) {
    std::cerr << "orders: " << es::describe(stats.error()) << "\n";
    return 1;
  }
  auto i = stats->by_projection.find(projection);
  if (i == stats->by_projection.end() || i->second == 0)
    return 0;
  std::printf("  but %lld event%s in the dead-letter queue of %s, not in "
              "its read model:\n",
              static_cast<long long>(i->second),
              i->second == 1 ? " is" : "s are", projection.c_str());
  constexpr size_t shown = 10;
  size_t listed = 0;
  for (auto state :
       {es::dead_letter_status::failed, es::dead_letter_status::retrying}) {
    es::dead_letter_query q;
    q.projection = projection;
    q.status = state;
    q.limit = shown - listed;
    auto entries = v.db->dead_letters()->list(q);
    if (!entries) {
      std::cerr << "orders: " << es::describe(entries.error()) << "\n";
      return 1;
    }
    for (const auto& e : *entries)
      std::printf("    #%lld %s at position %lld (event %s): %s\n",
                  static_cast<long long>(e.id), e.event_type.c_str(),
                  static_cast<long long>(e.global_position),
                  e.event_id.to_string().c_str(), e.error_message.c_str());
    listed += entries->size();
    if (listed >= shown)
      break;
  }
  std::printf("  (`orders dlq list --projection=%s` shows them; fix the "
              "events or the projection, then `orders dlq replay all`)\n",
              projection.c_str());
  return 1;
}

} // namespace

/// The outbox of the store (rows waiting for a relay) and, with
/// `--bus`, the broker's side; false when one of them cannot be read.
static bool print_bus_status(const orders_config& cfg) {
  if (cfg.store.rfind("sqlite:", 0) != 0 && !on_postgres(cfg))
    return true;
  auto outbox = open_outbox(cfg);
  auto counts = outbox ? (*outbox)->counts()
                       : caf::expected<es::outbox_counts>{outbox.error()};
  if (!counts) {
    std::cerr << "orders: " << es::describe(counts.error()) << "\n";
    return false;
  }
  long long age_ms = 0;
  if (counts->oldest_waiting)
    age_ms = static_cast<long long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now() - *counts->oldest_waiting)
        .count());
  std::printf("outbox: %lld pending, %lld published, %lld failed, oldest "
              "waiting %lld ms\n",
              static_cast<long long>(counts->pending),
              static_cast<long long>(counts->published),
              static_cast<long long>(counts->failed), age_ms);
  if (!cfg.bus.empty()) {
    es::broker_bus_settings settings;
    settings.name = cfg.bus_prefix;
    settings.group = "orders-views";
    auto report = es::broker_bus_report(cfg.bus, settings);
    if (!report) {
      std::cerr << "orders: " << es::describe(report.error()) << "\n";
      return false;
    }
    for (const auto& l : *report)
      std::printf("%s\n", l.c_str());
  }
  return true;
}

int status(const orders_config& cfg) {
  es::event_store_ptr store;
  views v;
  if (!open_both(cfg, store, v))
    return 2;
  auto head = store->head_position();
  auto checkpoints = v.db->checkpoints()->list();
  auto dead = v.db->dead_letters()->stats();
  if (!head || !checkpoints || !dead) {
    std::cerr << "orders: "
              << es::describe(!head          ? head.error()
                              : !checkpoints ? checkpoints.error()
                                             : dead.error())
              << "\n";
    return 1;
  }
  std::printf("store %s: %lld events\nviews %s\n", cfg.store.c_str(),
              static_cast<long long>(*head), views_path(cfg).c_str());
  std::printf("  %-16s %10s %8s %10s  %-27s %6s\n", "projection", "checkpoint",
              "lag", "processed", "updated", "DLQ");
  auto line = [&](const std::string& name, const es::checkpoint* cp) {
    auto i = dead->by_projection.find(name);
    auto pos = cp != nullptr ? cp->position : 0;
    std::printf(
      "  %-16s %10lld %8lld %10lld  %-27s %6lld\n", name.c_str(),
      static_cast<long long>(pos), static_cast<long long>(*head - pos),
      static_cast<long long>(cp != nullptr ? cp->events_processed : 0),
      cp != nullptr ? es::format_timestamp(cp->updated_at).c_str() : "never",
      static_cast<long long>(i == dead->by_projection.end() ? 0 : i->second));
  };
  for (const auto& name : projection_names()) {
    auto i = std::find_if(checkpoints->begin(), checkpoints->end(),
                          [&](const auto& cp) {
                            return cp.projection == name;
                          });
    line(name, i == checkpoints->end() ? nullptr : &*i);
  }
  print_dead_letter_totals(*dead);
  return print_bus_status(cfg) ? 0 : 1;
}

int dlq(caf::actor_system& sys, const orders_config& cfg,
        const std::vector<std::string>& args) {
  const char* dlq_usage = "orders: dlq takes list, replay ID|all, resolve ID "
                          "or purge\n";
  if (args.empty()) {
    std::cerr << dlq_usage;
    return 2;
  }
  const auto& verb = args[0];
  auto needs = verb == "replay" || verb == "resolve" ? size_t{2} : size_t{1};
  if ((verb != "list" && verb != "replay" && verb != "resolve"
       && verb != "purge")
      || args.size() != needs) {
    std::cerr << dlq_usage;
    return 2;
  }
  es::event_store_ptr store;
  views v;
  if (!open_both(cfg, store, v))
    return 2;
  if (verb == "list")
    return dlq_list(cfg, v);
  if (verb == "replay")
    return dlq_replay(sys, cfg, store, v, args[1]);
  if (verb == "resolve")
    return dlq_resolve(cfg, v, args[1]);
  return dlq_purge(cfg, v);
}

int rebuild(caf::actor_system& sys, const orders_config& cfg,
            const std::string& projection) {
  const auto& names = projection_names();
  if (std::find(names.begin(), names.end(), projection) == names.end()) {
    std::cerr << "orders: no projection " << projection
              << " (there are order_summary and customer_stats)\n";
    return 2;
  }
  es::event_store_ptr store;
  views v;
  if (!open_both(cfg, store, v))
    return 2;
  es::projection_coordinator projections{sys};
  if (auto err = start_projections(projections, v, store, es::bus_actor{},
                                   cfg.fail_cancellations)) {
    std::cerr << "orders: cannot start the projections: " << es::describe(err)
              << "\n";
    return 1;
  }
  std::printf("rebuilding %s from the whole log\n", projection.c_str());
  progress_display progress{cfg.progress, 1, "events"};
  es::rebuild_progress last;
  auto start = clock_type::now();
  auto err = projections.rebuild(
    projection, [&](const es::rebuild_progress& p) {
      last = p;
      char rate[48];
      std::snprintf(rate, sizeof(rate), ", %.0f events/s", p.events_per_second);
      progress.set_total(static_cast<uint64_t>(p.total));
      progress.update(static_cast<uint64_t>(p.done), rate);
    });
  auto seconds
    = std::chrono::duration<double>(clock_type::now() - start).count();
  if (err) {
    progress.finish(static_cast<uint64_t>(last.done));
    std::cerr << "orders: rebuild of " << projection
              << " failed: " << es::describe(err) << "\n";
    return 1;
  }
  char rate[48];
  std::snprintf(rate, sizeof(rate), ", %.0f events/s", last.events_per_second);
  progress.finish(static_cast<uint64_t>(last.total), rate);
  auto st = projections.status(projection);
  projections.stop();
  std::printf("rebuilt %s: %lld events in %.2f s (%.0f events/s)\n",
              projection.c_str(), static_cast<long long>(last.total), seconds,
              seconds > 0 ? static_cast<double>(last.total) / seconds : 0.0);
  if (st && st->errors.total > 0)
    std::printf("  %llu handler errors, %llu events in the dead-letter "
                "queue\n",
                static_cast<unsigned long long>(st->errors.total),
                static_cast<unsigned long long>(st->errors.sent_to_dlq));
  return report_dead_letters(v, projection);
}

} // namespace orders
