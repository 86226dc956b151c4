// Minimal logging hook: the library reports warnings through it; the
// application decides where they go. (Debian's CAF compiles its own logging
// out.) Records carry a context (module, projection, event, aggregate,
// position, lag) that the JSON format writes as fields.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace es {

enum class log_level : uint8_t { debug, info, warning, error };

/// Returns "debug", "info", "warning" or "error".
const char* to_string(log_level x);

/// What a record is about; empty fields are left out of JSON lines.
struct log_context {
  /// The part that logs: "store", "projections", "bus", "cluster", ...
  std::string_view module = "eventsource";
  std::string_view projection;
  /// Event and aggregate ids in canonical form.
  std::string event_id;
  std::string aggregate_id;
  std::optional<int64_t> position;
  /// Events behind the head.
  std::optional<int64_t> lag;
};

using log_sink = std::function<void(log_level, std::string_view)>;

using log_record_sink
  = std::function<void(log_level, std::string_view, const log_context&)>;

/// Replaces the sink with one that gets the text only (default: warnings
/// and errors to stderr). Thread-safe.
void set_log_sink(log_sink sink);

/// Replaces the sink with one that gets each record's context too.
void set_log_record_sink(log_record_sink sink);

/// How the default sink writes to stderr.
enum class log_format : uint8_t {
  /// `[eventsource warning] text`
  text,
  /// One JSON object per line: `ts` (UTC, microseconds), `level`, `module`,
  /// `message` and the context's fields that are set.
  json,
};

/// Restores the default sink in `format`.
void set_log_format(log_format format);

/// Parses "text" or "json".
std::optional<log_format> parse_log_format(std::string_view text);

/// Sets the lowest level passed to the sink (default: warning).
void set_log_level(log_level lowest);

/// Passes `text` to the sink if `level` is enabled. Thread-safe.
void log(log_level level, std::string_view text);

/// Passes `text` with its context to the sink if `level` is enabled.
void log(log_level level, std::string_view text, const log_context& ctx);

/// One JSON line (without the newline) for a record, as the JSON format
/// writes it.
std::string format_log_json(log_level level, std::string_view text,
                            const log_context& ctx);

} // namespace es
