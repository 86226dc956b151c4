// Error codes of the actors module.
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace es {

/// Error codes of the actors module. Append-only.
enum class actors_errc : uint8_t {
  /// A command broke a business rule; nothing was written. Context:
  /// (description, reason); see `rejection_reason`.
  command_rejected = 1,
  /// An event reached an aggregate that has no handler for its type and
  /// the aggregate's policy is `unhandled_event_policy::error`.
  unhandled_event,
  /// The aggregate's stream has no events.
  aggregate_not_found,
  /// A command handler threw; the aggregate actor restarts on the next
  /// command.
  handler_failed,
  /// Loading the aggregate from its stream failed.
  recovery_failed,
  /// A stored event does not follow the aggregate's version.
  version_gap,
  /// A message to an aggregate or region did not carry a command envelope.
  invalid_command,
  /// An actor did not answer in time.
  timeout,
  /// The node that got the command does not own the aggregate's shard (any
  /// more); nothing was done. Retryable: the sender looks up the owner
  /// again. Context: (description, shard).
  shard_moved,
  /// No live node owned the aggregate's shard before the command's deadline;
  /// nothing was done. Retryable.
  no_shard_owner,
  /// The node running the command went down (or stopped answering) after
  /// the command reached it: it may or may not have been applied. Look for
  /// events caused by the command id before sending it again.
  outcome_unknown,
};

/// Returns the name of `x`, for example "command_rejected".
const char* to_string(actors_errc x);

/// Returns whether retrying can succeed.
bool is_retryable(actors_errc x);

inline bool has_code(const caf::error& err, actors_errc code) {
  return err && err.category() == caf::atom("es_actors")
         && err.code() == static_cast<uint8_t>(code);
}

/// Builds the error a command handler returns when a business rule fails:
/// `reason` is a short stable code for statistics (for example
/// "not_paid"), `description` a sentence for humans.
caf::error reject(std::string reason, std::string description);

/// Returns the reason of a `command_rejected` error, else an empty string.
std::string rejection_reason(const caf::error& err);

namespace detail {

const char* render_actors_errc(uint8_t code);
bool classify_actors_errc(uint8_t code);

inline const bool actors_errors_registered = register_error_category(
  caf::atom("es_actors"), render_actors_errc, classify_actors_errc);

} // namespace detail

} // namespace es

CAF_ERROR_CODE_ENUM(es::actors_errc, "es_actors")
