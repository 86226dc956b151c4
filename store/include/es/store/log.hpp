// Minimal logging hook: the library reports warnings through it; the
// application decides where they go. (Debian's CAF compiles its own logging
// out.)
#pragma once

#include <functional>
#include <string_view>

namespace es {

enum class log_level : uint8_t { debug, info, warning, error };

/// Returns "debug", "info", "warning" or "error".
const char* to_string(log_level x);

using log_sink = std::function<void(log_level, std::string_view)>;

/// Replaces the sink (default: warnings and errors to stderr). Thread-safe.
void set_log_sink(log_sink sink);

/// Sets the lowest level passed to the sink (default: warning).
void set_log_level(log_level lowest);

/// Passes `text` to the sink if `level` is enabled. Thread-safe.
void log(log_level level, std::string_view text);

} // namespace es
