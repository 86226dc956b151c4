// The event envelope: what an event store keeps for every event.
#pragma once

#include "es/store/uuid.hpp"

#include <caf/meta/type_name.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace es {

/// Points in time, UTC, at microsecond resolution (what the stores keep).
using timestamp = std::chrono::time_point<std::chrono::system_clock,
                                          std::chrono::microseconds>;

/// Returns the current time truncated to microseconds.
inline timestamp now_utc() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(
    std::chrono::system_clock::now());
}

namespace detail {

/// Lets CAF inspect an optional timestamp as microseconds, -1 meaning none.
struct optional_time_ref {
  std::optional<timestamp>& x;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, optional_time_ref& r) {
    if constexpr (Inspector::reads_state) {
      int64_t v = r.x ? r.x->time_since_epoch().count() : -1;
      return f(v);
    } else {
      int64_t v = -1;
      auto result = f(v);
      if (v >= 0)
        r.x = timestamp{std::chrono::microseconds{v}};
      else
        r.x.reset();
      return result;
    }
  }
};

} // namespace detail

/// Identifies one event stream: the events of one aggregate instance.
struct stream_id {
  std::string aggregate_type;
  uuid aggregate_id;

  friend auto operator<=>(const stream_id&, const stream_id&) = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, stream_id& x) {
    return f(caf::meta::type_name("es.stream_id"), x.aggregate_type,
             x.aggregate_id);
  }
};

/// Returns "aggregate_type/aggregate_id".
std::string to_string(const stream_id& x);

/// An event as the application hands it to a store, and as stores return it
/// (inside `recorded_event`). The payload and the metadata are JSON texts.
struct event_data {
  /// Unique across the store; the key of idempotent appends.
  uuid event_id;
  /// Registered type name, for example "OrderCreated".
  std::string event_type;
  /// Schema version of the payload (1 for the first schema).
  int32_t event_version = 1;
  uuid aggregate_id;
  std::string aggregate_type;
  /// Position in the aggregate's stream, from 1. Zero on append means "the
  /// store assigns the next version".
  int64_t aggregate_version = 0;
  /// The owning tenant, if the application is multi-tenant.
  std::optional<uuid> tenant_id;
  timestamp occurred_at;
  /// Id of the request or workflow that led to this event.
  std::optional<uuid> correlation_id;
  /// Id of the event or command that directly caused this event.
  std::optional<uuid> causation_id;
  /// Who caused the event (user or service id); free text, may be empty.
  std::string actor_id;
  /// Free-form metadata: a JSON object text; empty means no metadata.
  std::string metadata;
  /// The event's fields: a JSON object text produced by the type's codec.
  std::string payload;

  stream_id stream() const {
    return {aggregate_type, aggregate_id};
  }

  friend bool operator==(const event_data&, const event_data&) = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, event_data& x) {
    return f(caf::meta::type_name("es.event_data"), x.event_id, x.event_type,
             x.event_version, x.aggregate_id, x.aggregate_type,
             x.aggregate_version, x.tenant_id, x.occurred_at, x.correlation_id,
             x.causation_id, x.actor_id, x.metadata, x.payload);
  }
};

/// An event as a store returns it: the envelope plus its place in the log.
struct recorded_event : event_data {
  /// Position in the store's global feed, from 1, in commit order.
  int64_t global_position = 0;

  friend bool operator==(const recorded_event&, const recorded_event&)
    = default;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, recorded_event& x) {
    return f(caf::meta::type_name("es.recorded_event"),
             static_cast<event_data&>(x), x.global_position);
  }
};

using event_batch = std::vector<event_data>;
using recorded_events = std::vector<recorded_event>;

} // namespace es
