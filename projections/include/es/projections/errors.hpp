// Error codes of the projections module.
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdint>

namespace es {

/// Error codes of the projections module: what went wrong with a
/// projection, as opposed to the store or the bus it reads from (whose
/// errors keep their own codes). Append-only.
enum class projections_errc : uint8_t {
  /// A projection's handler threw. (A handler that returns an error keeps
  /// its error's code.)
  handler_failed = 1,
  /// The projection stopped and needs an operator: its error policy gave up
  /// on an event, positions were missing from the feed for longer than
  /// `hole_timeout`, or another instance took it over. The description
  /// says which; `projection_status::detail` too.
  projection_stopped,
  /// A wait (caught up, a rebuild) did not end before its deadline; the
  /// projection goes on. Retryable.
  not_caught_up,
  /// No projection of that name is registered with the coordinator.
  unknown_projection,
  /// A projection of that name is registered already.
  duplicate_projection,
  /// The projection's actor is restarting, or has failed for good (see
  /// `projection_coordinator::supervision`). Retryable.
  not_running,
  /// The configuration cannot work (no projection, no store, ...).
  invalid_config,
  /// The projection cannot be rebuilt in a shadow: it does not say how to
  /// run on another database (`transactional_projection::with_db`).
  shadow_unsupported,
};

/// Returns the name of `x`, for example "projection_stopped".
const char* to_string(projections_errc x);

/// Returns whether retrying can succeed.
bool is_retryable(projections_errc x);

inline bool has_code(const caf::error& err, projections_errc code) {
  return err && err.category() == caf::atom("es_proj")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_projections_errc(uint8_t code);
bool classify_projections_errc(uint8_t code);

inline const bool projections_errors_registered = register_error_category(
  caf::atom("es_proj"), render_projections_errc, classify_projections_errc);

} // namespace detail

} // namespace es

CAF_ERROR_CODE_ENUM(es::projections_errc, "es_proj")
