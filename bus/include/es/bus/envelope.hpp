// The wire format of the broker bridges: one JSON envelope per event, the
// headers brokers carry beside it, and a consumer-side deduper.
#pragma once

#include "es/store/event.hpp"
#include "es/store/json.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace es {

/// The envelope format this library writes and reads.
inline constexpr int64_t envelope_format = 1;

/// Encodes a recorded event as the body of a broker message: one JSON
/// object
///
///   {"format": 1, "event_id": "...", "event_type": "...",
///    "event_version": 1, "aggregate_type": "...", "aggregate_id": "...",
///    "aggregate_version": 3, "global_position": 17, "tenant_id": null,
///    "occurred_at": "2026-11-30T02:19:12.345678Z", "correlation_id": null,
///    "causation_id": null, "actor_id": "", "metadata": {...} or null,
///    "payload": {...}}
///
/// with the payload and the metadata embedded as JSON objects (not as
/// strings), so consumers in any language read it with one parse. They come
/// back as the same JSON values written compactly (no whitespace, no
/// escapes beyond JSON's own), which is how the codecs write payloads. Fails
/// with `malformed_payload` only if the event's payload or metadata is not
/// a JSON object (the stores never hold such events).
caf::expected<std::string> encode_envelope(const recorded_event& ev);

/// Decodes an envelope. Refuses anything else with `malformed_payload`
/// naming the field (`payload_too_large` past `limits`): another format
/// number, a missing or mistyped field, an id that is not a UUID, a
/// timestamp outside years 1 to 9999. Unknown fields are ignored, so later
/// formats can add some.
caf::expected<recorded_event>
decode_envelope(std::string_view body, const json::parse_limits& limits = {});

/// What a broker carries beside the body (message headers on RabbitMQ and
/// Kafka, stream entry fields on Redis), so a consumer can route, filter and
/// trace without parsing the body. In this order:
/// - `message_id`: the event id (brokers that have a message id use it);
/// - `event_type`, `event_version`, `aggregate_type`, `aggregate_id`,
///   `global_position`;
/// - `tenant_id`, only for events of a tenant;
/// - `traceparent` and `tracestate`, copied from string members of the
///   same names in the event's metadata (W3C trace context), when present;
/// - `content_type`: "application/json".
std::vector<std::pair<std::string, std::string>>
envelope_headers(const recorded_event& ev);

/// Remembers the ids of the last `capacity` events a consumer handled, so a
/// redelivered event (at-least-once delivery) is recognised and skipped.
/// Call `seen` before handling and `remember` after the handler succeeded,
/// so a failed event is handled again when it comes back. Not thread-safe.
class event_deduper {
public:
  explicit event_deduper(size_t capacity = 100'000);

  /// Whether `id` was remembered and is still within the window.
  bool seen(const uuid& id) const;

  /// Remembers `id`; the oldest id goes once `capacity` are kept.
  void remember(const uuid& id);

  /// Ids kept.
  size_t size() const noexcept {
    return ids_.size();
  }

  size_t capacity() const noexcept {
    return capacity_;
  }

private:
  size_t capacity_;
  std::unordered_set<uuid> ids_;
  std::deque<uuid> order_;
};

} // namespace es
