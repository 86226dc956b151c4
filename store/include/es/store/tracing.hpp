// Tracing hooks: spans at the places eventsource-py has them (store
// appends and reads, bus publish / dispatch / handle, projection handling)
// plus the command path, with the W3C trace context carried in event
// metadata (`traceparent`) so a trace follows a command into other
// processes. Off until an exporter is installed; then each hook costs one
// relaxed atomic load and nothing else.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace es::tracing {

/// A W3C trace context: trace id, span id and flags.
struct span_context {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  /// Bit 0: sampled.
  uint8_t flags = 1;

  /// Neither id is all zeros.
  bool valid() const noexcept;

  /// `00-<trace id>-<span id>-<flags>` in lower-case hex.
  std::string traceparent() const;

  std::string trace_id_hex() const;
  std::string span_id_hex() const;

  /// Parses a `traceparent` header value (version 00); nullopt when it is
  /// malformed or carries all-zero ids.
  static std::optional<span_context> parse(std::string_view text);
};

/// As OpenTelemetry numbers them.
enum class span_kind : uint8_t {
  internal = 1,
  server = 2,
  client = 3,
  producer = 4,
  consumer = 5,
};

using attribute_value = std::variant<std::string, int64_t>;

/// A finished span, as exporters get it.
struct span_data {
  std::string name;
  span_kind kind = span_kind::internal;
  span_context context;
  /// The parent's span id (same trace), if any.
  std::optional<std::array<uint8_t, 8>> parent_span_id;
  /// Nanoseconds since the Unix epoch.
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  std::vector<std::pair<std::string, attribute_value>> attributes;
  bool error = false;
  std::string status_message;
};

/// Receives finished spans. Called on the thread that ended the span:
/// implementations queue and return (see es::ops::otlp_http_exporter).
class span_exporter {
public:
  virtual ~span_exporter();

  virtual void export_span(span_data span) = 0;
};

/// Installs the exporter; nullptr turns tracing off (the default).
/// Thread-safe.
void set_exporter(std::shared_ptr<span_exporter> exporter);

/// Whether an exporter is installed: one relaxed atomic load.
bool enabled() noexcept;

/// A span from construction to `end` (or destruction). Inactive, and free
/// but for the `enabled` check, while tracing is off. Not thread-safe; may
/// be moved to other threads.
class span {
public:
  /// An inactive span.
  span() = default;

  /// Starts a span, the child of `parent` when given (same trace), else
  /// the root of a new trace.
  span(std::string_view name, span_kind kind,
       const std::optional<span_context>& parent = std::nullopt);

  span(span&&) noexcept;
  span& operator=(span&&) noexcept;
  span(const span&) = delete;
  span& operator=(const span&) = delete;

  /// Ends the span.
  ~span();

  bool active() const noexcept {
    return data_ != nullptr;
  }

  /// The span's own context (invalid when inactive): what children and
  /// injected metadata carry.
  span_context context() const;

  void set_attribute(std::string key, std::string value);
  void set_attribute(std::string key, int64_t value);

  /// Marks the span failed with `message`.
  void set_error(std::string message);

  /// Ends the span now and hands it to the exporter (idempotent).
  void end();

private:
  std::unique_ptr<span_data> data_;
  std::shared_ptr<span_exporter> exporter_;
};

/// The trace context in an event's metadata (`"traceparent"` of its JSON
/// object), if any.
std::optional<span_context> extract(std::string_view metadata);

/// Returns `metadata` (a JSON object text; empty counts as `{}`) with
/// `"traceparent"` set to `ctx`. Metadata that is not a JSON object is
/// returned unchanged.
std::string inject(std::string_view metadata, const span_context& ctx);

/// Nanoseconds since the Unix epoch, now.
uint64_t now_unix_ns() noexcept;

} // namespace es::tracing
