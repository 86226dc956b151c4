// esctl: one admin command line for any eventsource store, SQLite or
// PostgreSQL, without the application's event types (payloads as JSON).
#include "commands.hpp"
#include "store_access.hpp"
#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace {

constexpr const char* exit_codes_text = R"(Exit codes:
  0  ok
  1  usage error: bad option, malformed UUID or id, unknown store scheme,
     negative number (nothing was changed)
  2  not found: unknown event, empty stream, unknown checkpoint or dead
     letter (or a resolved one to replay)
  3  store unreachable or unhealthy: cannot connect, no database, tables
     missing, schema not current (run `esctl migrate`)
  4  any other store error (the store's description is on stderr)

The store comes from --store or the environment variable ES_STORE:
  sqlite:PATH          a SQLite store file
  postgres:DSN         a libpq connection string or URI)";

/// A count or position: 0 or more.
const CLI::Validator non_negative{
  [](std::string& text) -> std::string {
    try {
      size_t used = 0;
      auto x = std::stoll(text, &used);
      if (used == text.size() && x >= 0)
        return {};
    } catch (const std::exception&) {
      // falls through to the message
    }
    return "must be a whole number 0 or more, not '" + text + "'";
  },
  "NUMBER>=0"};

/// A limit or an id: 1 or more.
const CLI::Validator positive{[](std::string& text) -> std::string {
                                try {
                                  size_t used = 0;
                                  auto x = std::stoll(text, &used);
                                  if (used == text.size() && x >= 1)
                                    return {};
                                } catch (const std::exception&) {
                                  // falls through to the message
                                }
                                return "must be a whole number 1 or more, not '"
                                       + text + "'";
                              },
                              "NUMBER>=1"};

} // namespace

int main(int argc, char** argv) {
  using namespace esctl;
  CLI::App app{"esctl: administer an eventsource store (SQLite or "
               "PostgreSQL): schema, health, events, projections, dead "
               "letters and the outbox.",
               "esctl"};
  app.footer(exit_codes_text);
  app.fallthrough();
  app.require_subcommand(1);
  std::string store_text;
  bool json = false;
  app.add_option("--store", store_text, "sqlite:PATH or postgres:DSN")
    ->envname("ES_STORE");
  app.add_flag("--json", json,
               "print JSON (one document; one per line for "
               "follow) instead of tables");

  // -- schema and health ------------------------------------------------------
  auto* migrate_cmd = app.add_subcommand("migrate", "apply the pending schema "
                                                    "migrations");
  bool dry_run = false;
  migrate_cmd->add_flag("--dry-run", dry_run,
                        "list the pending steps, apply nothing");
  auto* info_cmd = app.add_subcommand(
    "info", "schema version, counts and a health check (exit 3 if unhealthy)");

  // -- events -----------------------------------------------------------------
  event_selection sel;
  auto* streams_cmd = app.add_subcommand("streams", "list streams");
  streams_cmd->add_option("--type", sel.type, "only this aggregate type");
  streams_cmd->add_option("--tenant", sel.tenant, "only this tenant (UUID)");
  streams_cmd->add_option("--limit", sel.limit, "most streams shown")
    ->check(positive)
    ->capture_default_str();

  std::string stream_type;
  std::string stream_id;
  int64_t from_version = 0;
  int64_t to_version = 0;
  auto* stream_cmd = app.add_subcommand("stream", "the events of one stream");
  stream_cmd->add_option("type", stream_type, "aggregate type")->required();
  stream_cmd->add_option("id", stream_id, "aggregate id (UUID)")->required();
  stream_cmd->add_option("--from", from_version, "first version")
    ->check(non_negative);
  stream_cmd->add_option("--to", to_version, "last version (0: the last)")
    ->check(non_negative);

  std::string event_id;
  auto* event_cmd = app.add_subcommand("event", "one event, in full");
  event_cmd->add_option("id", event_id, "event id (UUID)")->required();

  auto* events_cmd = app.add_subcommand("events", "events of the global feed");
  events_cmd
    ->add_option("--from-position", sel.from_position,
                 "start after this global position")
    ->check(non_negative);
  events_cmd->add_option("--type", sel.type, "only this aggregate type");
  events_cmd->add_option("--tenant", sel.tenant, "only this tenant (UUID)");
  events_cmd->add_option("--limit", sel.limit, "most events shown")
    ->check(positive)
    ->capture_default_str();

  event_selection chain_sel;
  auto* chain_cmd = app.add_subcommand(
    "chain", "a causal chain: the events of one correlation id");
  chain_cmd->add_option("id", chain_sel.correlation, "correlation id (UUID)")
    ->required();
  chain_cmd->add_option("--limit", chain_sel.limit, "most events shown")
    ->check(positive)
    ->capture_default_str();

  std::optional<int64_t> follow_from;
  int64_t max_events = 0;
  int64_t interval_ms = 200;
  auto* follow_cmd = app.add_subcommand(
    "follow", "tail the global feed live until SIGINT/SIGTERM");
  follow_cmd
    ->add_option("--from-position", follow_from,
                 "start after this position (default: the head)")
    ->check(non_negative);
  follow_cmd->add_option("--type", sel.type, "only this aggregate type");
  follow_cmd->add_option("--tenant", sel.tenant, "only this tenant (UUID)");
  follow_cmd
    ->add_option("--max-events", max_events,
                 "stop after this many events (0: never)")
    ->check(non_negative);
  follow_cmd
    ->add_option("--interval-ms", interval_ms,
                 "pause between polls at the head")
    ->check(positive)
    ->capture_default_str();

  // -- projections ------------------------------------------------------------
  auto* checkpoints_cmd = app.add_subcommand(
    "checkpoints", "list the projections' checkpoints, or reset one");
  checkpoints_cmd->require_subcommand(0, 1);
  std::string checkpoint_name;
  std::optional<int64_t> reset_to;
  bool reset_to_start = false;
  auto* reset_cmd = checkpoints_cmd->add_subcommand(
    "reset", "move a checkpoint (refused while the projection runs)");
  reset_cmd->add_option("name", checkpoint_name, "projection name")->required();
  auto* to_opt = reset_cmd->add_option("--to", reset_to, "new position")
                   ->check(non_negative);
  auto* start_opt = reset_cmd->add_flag("--to-start", reset_to_start,
                                        "back to position 0 (a rebuild)");
  to_opt->excludes(start_opt);
  auto* projections_cmd = app.add_subcommand(
    "projections", "each checkpointed projection with its lag behind the head");

  // -- dead letters -----------------------------------------------------------
  auto* dlq_cmd = app.add_subcommand("dlq", "the dead-letter queue");
  dlq_cmd->require_subcommand(1);
  dlq_selection dsel;
  auto* dlq_list_cmd = dlq_cmd->add_subcommand("list", "list entries");
  dlq_list_cmd->add_option("--projection", dsel.projection,
                           "only this projection's");
  dlq_list_cmd->add_option("--status", dsel.status,
                           "failed, retrying or resolved");
  dlq_list_cmd->add_option("--limit", dsel.limit, "most entries shown")
    ->check(positive)
    ->capture_default_str();
  int64_t dlq_id = 0;
  auto* dlq_show_cmd = dlq_cmd->add_subcommand("show", "one entry, in full");
  dlq_show_cmd->add_option("id", dlq_id, "entry id")
    ->required()
    ->check(positive);
  auto* dlq_replay_cmd = dlq_cmd->add_subcommand(
    "replay", "re-queue an entry (status retrying) for the projection's "
              "replay; see docs/esctl.md");
  dlq_replay_cmd->add_option("id", dlq_id, "entry id")
    ->required()
    ->check(positive);
  std::string resolved_by;
  auto* dlq_resolve_cmd
    = dlq_cmd->add_subcommand("resolve", "mark an entry resolved");
  dlq_resolve_cmd->add_option("id", dlq_id, "entry id")
    ->required()
    ->check(positive);
  dlq_resolve_cmd->add_option("--by", resolved_by, "who (default: $USER)");
  bool purge_resolved = false;
  std::optional<int64_t> purge_days;
  auto* dlq_purge_cmd = dlq_cmd->add_subcommand(
    "purge", "delete resolved entries (--resolved: all of them)");
  dlq_purge_cmd->add_flag("--resolved", purge_resolved, "every resolved entry");
  dlq_purge_cmd
    ->add_option("--older-than-days", purge_days,
                 "resolved entries resolved more than N days ago")
    ->check(non_negative);
  auto* dlq_stats_cmd = dlq_cmd->add_subcommand("stats", "counts by status "
                                                         "and projection");

  // -- outbox -----------------------------------------------------------------
  auto* outbox_cmd = app.add_subcommand("outbox", "the transactional outbox");
  outbox_cmd->require_subcommand(1);
  auto* outbox_status_cmd = outbox_cmd->add_subcommand(
    "status", "pending, published and failed rows");
  auto* outbox_retry_cmd = outbox_cmd->add_subcommand(
    "retry-failed", "put failed rows back to pending with a fresh retry "
                    "count");
  int64_t cleanup_days = 7;
  auto* outbox_cleanup_cmd
    = outbox_cmd->add_subcommand("cleanup", "delete published rows");
  outbox_cleanup_cmd
    ->add_option("--older-than-days", cleanup_days,
                 "published more than N days ago")
    ->check(non_negative)
    ->capture_default_str();

  std::string del_type;
  std::string del_id;
  bool del_hard = false;
  std::optional<int64_t> del_expected;
  auto* delete_cmd = app.add_subcommand(
    "delete-stream", "delete a stream: reads answer stream_deleted (it can "
                     "be written again unless --hard)");
  delete_cmd->add_option("type", del_type, "aggregate type")->required();
  delete_cmd->add_option("id", del_id, "aggregate id (UUID)")->required();
  delete_cmd->add_flag("--hard", del_hard,
                       "a tombstone: the stream can never be written again");
  delete_cmd
    ->add_option("--expected", del_expected,
                 "only if the stream is at this version")
    ->check(non_negative);
  int64_t truncate_before = 0;
  auto* truncate_cmd = app.add_subcommand(
    "truncate-stream", "hide a stream's versions below --before (for "
                       "streams whose state is in a snapshot)");
  truncate_cmd->add_option("type", del_type, "aggregate type")->required();
  truncate_cmd->add_option("id", del_id, "aggregate id (UUID)")->required();
  truncate_cmd->add_option("--before", truncate_before, "first version kept")
    ->required()
    ->check(positive);
  truncate_cmd
    ->add_option("--expected", del_expected,
                 "only if the stream is at this version")
    ->check(non_negative);

  auto* partitions_cmd = app.add_subcommand(
    "partitions", "range partitions of a PostgreSQL events table");
  partitions_cmd->require_subcommand(0, 1);
  auto* partitions_list_cmd
    = partitions_cmd->add_subcommand("list", "the attached ranges");
  int64_t ranges_ahead = 2;
  auto* partitions_prepare_cmd = partitions_cmd->add_subcommand(
    "prepare", "create ranges up to --ahead past the head's");
  partitions_prepare_cmd->add_option("--ahead", ranges_ahead, "ranges ahead")
    ->check(non_negative)
    ->capture_default_str();
  int64_t detach_up_to = 0;
  auto* partitions_detach_cmd = partitions_cmd->add_subcommand(
    "detach", "detach the ranges wholly at or below --up-to");
  partitions_detach_cmd->add_option("--up-to", detach_up_to, "position")
    ->required()
    ->check(non_negative);

  auto* feed_cmd = app.add_subcommand(
    "feed", "a PostgreSQL database's feed: serialized or overlapping");
  feed_cmd->require_subcommand(0, 1);
  std::string feed_to;
  auto* feed_set_cmd = feed_cmd->add_subcommand(
    "set", "switch the feed (stop every appending store first)");
  feed_set_cmd->add_option("FEED", feed_to, "serialized or overlapping")
    ->required()
    ->check(CLI::IsMember({"serialized", "overlapping"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  if (dlq_purge_cmd->parsed() && !purge_resolved && !purge_days)
    return fail(exit_usage, "dlq purge needs --resolved or "
                            "--older-than-days N (it deletes only resolved "
                            "entries)");
  if (reset_cmd->parsed() && !reset_to && !reset_to_start)
    return fail(exit_usage, "checkpoints reset needs --to POSITION or "
                            "--to-start");
  if (store_text.empty())
    return fail(exit_usage, "no store: pass --store=sqlite:PATH or "
                            "--store=postgres:DSN, or set ES_STORE");
  auto loc = parse_store_location(store_text);
  if (!loc)
    return fail(loc.error());
  esctl::store st{std::move(*loc)};
  context ctx{st, json};

  if (migrate_cmd->parsed())
    return migrate(ctx, dry_run);
  if (info_cmd->parsed())
    return info(ctx);
  if (streams_cmd->parsed())
    return list_streams(ctx, sel);
  if (stream_cmd->parsed())
    return show_stream(ctx, stream_type, stream_id, from_version, to_version);
  if (event_cmd->parsed())
    return show_event(ctx, event_id);
  if (events_cmd->parsed())
    return list_events(ctx, sel);
  if (chain_cmd->parsed())
    return list_events(ctx, chain_sel);
  if (delete_cmd->parsed())
    return delete_stream(ctx, del_type, del_id, del_hard, del_expected);
  if (truncate_cmd->parsed())
    return truncate_stream(ctx, del_type, del_id, truncate_before,
                           del_expected);
  if (partitions_prepare_cmd->parsed())
    return partitions(ctx, partitions_action::prepare, ranges_ahead);
  if (partitions_detach_cmd->parsed())
    return partitions(ctx, partitions_action::detach, detach_up_to);
  if (partitions_cmd->parsed() || partitions_list_cmd->parsed())
    return partitions(ctx, partitions_action::list, 0);
  if (feed_cmd->parsed())
    return feed(ctx, feed_set_cmd->parsed() ? feed_to : std::string{});
  if (follow_cmd->parsed())
    return follow(ctx, sel, follow_from, max_events, interval_ms);
  if (reset_cmd->parsed())
    return reset_checkpoint(ctx, checkpoint_name, reset_to.value_or(0));
  if (checkpoints_cmd->parsed())
    return list_checkpoints(ctx);
  if (dlq_list_cmd->parsed())
    return dlq_list(ctx, dsel);
  if (dlq_show_cmd->parsed())
    return dlq_show(ctx, dlq_id);
  if (dlq_replay_cmd->parsed())
    return dlq_replay(ctx, dlq_id);
  if (dlq_resolve_cmd->parsed())
    return dlq_resolve(ctx, dlq_id, resolved_by);
  if (dlq_purge_cmd->parsed())
    return dlq_purge(ctx, purge_days.value_or(0));
  if (dlq_stats_cmd->parsed())
    return dlq_stats(ctx);
  if (outbox_status_cmd->parsed())
    return outbox_status(ctx);
  if (outbox_retry_cmd->parsed())
    return outbox_retry_failed(ctx);
  if (outbox_cleanup_cmd->parsed())
    return outbox_cleanup(ctx, cleanup_days);
  if (projections_cmd->parsed())
    return list_projections(ctx);
  return fail(exit_usage, "no command given (see --help)");
}
