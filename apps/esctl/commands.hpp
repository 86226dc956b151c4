// The commands of esctl. Each returns the process's exit code (see
// `exit_code`) and prints errors to stderr itself.
#pragma once

#include "store_access.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace esctl {

/// What every command gets: the store and the output form.
struct context {
  esctl::store& st;
  /// One JSON document (or one per line for `follow`) instead of tables.
  bool json = false;
};

/// Selects events of the feed or streams.
struct event_selection {
  std::string type;
  std::string tenant;
  int64_t from_position = 0;
  int64_t limit = 100;
  /// When set, only the causal chain of this correlation id (a UUID).
  std::string correlation;
};

// -- store_commands.cpp -------------------------------------------------------

int migrate(context& ctx, bool dry_run);
int info(context& ctx);

// -- event_commands.cpp -------------------------------------------------------

int list_streams(context& ctx, const event_selection& sel);
int show_stream(context& ctx, const std::string& type, const std::string& id,
                int64_t from, int64_t to);
int show_event(context& ctx, const std::string& id);
/// Lists events of the feed, or of one causal chain with
/// `sel.correlation`.
int list_events(context& ctx, const event_selection& sel);

/// Tails the feed until SIGINT/SIGTERM or `max_events` events (0: no
/// limit). Starts after `from_position`, or at the head when unset.
int follow(context& ctx, const event_selection& sel,
           std::optional<int64_t> from_position, int64_t max_events,
           int64_t interval_ms);

// -- state_commands.cpp -------------------------------------------------------

int list_checkpoints(context& ctx);
int reset_checkpoint(context& ctx, const std::string& name, int64_t position);
int list_projections(context& ctx);

struct dlq_selection {
  std::string projection;
  std::string status;
  int64_t limit = 100;
};

int dlq_list(context& ctx, const dlq_selection& sel);
int dlq_show(context& ctx, int64_t id);
int dlq_replay(context& ctx, int64_t id);
int dlq_resolve(context& ctx, int64_t id, const std::string& by);
/// Deletes resolved entries resolved more than `older_than_days` ago (0:
/// every resolved entry).
int dlq_purge(context& ctx, int64_t older_than_days);
int dlq_stats(context& ctx);

int outbox_status(context& ctx);
int outbox_retry_failed(context& ctx);
int outbox_cleanup(context& ctx, int64_t older_than_days);

// -- maintenance_commands.cpp -------------------------------------------------

/// Deletes a stream (softly, or for good with `hard`), at `expected` when
/// given.
int delete_stream(context& ctx, const std::string& type, const std::string& id,
                  bool hard, std::optional<int64_t> expected);

/// Hides a stream's versions below `before`.
int truncate_stream(context& ctx, const std::string& type,
                    const std::string& id, int64_t before,
                    std::optional<int64_t> expected);

enum class partitions_action { list, prepare, detach };

/// Lists, prepares (`arg` ranges ahead) or detaches (up to position `arg`)
/// the range partitions of a PostgreSQL events table.
int partitions(context& ctx, partitions_action action, int64_t arg);

/// esctl feed [set FEED]: shows the PostgreSQL database's feed, or
/// switches it (`postgres_switch_feed`) first.
int feed(context& ctx, const std::string& set_to);

} // namespace esctl
