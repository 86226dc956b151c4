// What travels with a command, and what comes back.
#pragma once

#include "es/store/uuid.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace es {

/// Sent as the first element of every command message: `(command_envelope,
/// Cmd)`. Regions route on `aggregate_id`; the other fields are stamped on
/// the events the command emits.
struct command_envelope {
  uuid aggregate_id;
  /// Becomes the causation id of the emitted events.
  uuid command_id;
  std::optional<uuid> correlation_id;
  /// Who sent the command (user or service); stamped as the events'
  /// `actor_id`.
  std::string actor_id;
  /// Part of a joint command (see joint_command.hpp): the aggregate offers
  /// what it would append to the sender and waits for its verdict instead
  /// of appending.
  bool joint = false;

  /// An envelope for `aggregate_id` with a fresh command id.
  static command_envelope to(const uuid& aggregate_id) {
    return {aggregate_id, uuid::time_ordered(), std::nullopt, {}, false};
  }

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, command_envelope& x) {
    return f(caf::meta::type_name("es.command_envelope"), x.aggregate_id,
             x.command_id, x.correlation_id, x.actor_id, x.joint);
  }
};

/// The reply to a successful command.
struct command_result {
  uuid aggregate_id;
  /// The aggregate's version after the command.
  int64_t version = 0;
  /// Events the command wrote (0 for a command that changed nothing).
  uint32_t events = 0;
  /// Global position of the last written event (0 if none).
  int64_t last_position = 0;
  /// 1 + the number of times the command ran again after a version
  /// conflict.
  uint32_t attempts = 1;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, command_result& x) {
    return f(caf::meta::type_name("es.command_result"), x.aggregate_id,
             x.version, x.events, x.last_position, x.attempts);
  }
};

/// The part of a command envelope an aggregate stamps on its events.
struct command_context {
  uuid command_id;
  std::optional<uuid> correlation_id;
  std::string actor_id;
};

} // namespace es
