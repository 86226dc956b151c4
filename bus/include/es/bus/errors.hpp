// Error codes of the bus module.
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdint>

namespace es {

/// Error codes of the bus module. Append-only.
enum class bus_errc : uint8_t {
  /// A handler returned an error or threw; counted in `bus_stats`.
  handler_failed = 1,
  /// The subscription id is not known to the bus.
  unknown_subscription,
  /// The bus has stopped.
  bus_closed,
  /// A publish was not accepted in time (subscribers too slow).
  publish_timeout,
  /// The broker refused or lost a message; retrying can succeed.
  broker_unavailable,
};

/// Returns the name of `x`, for example "handler_failed".
const char* to_string(bus_errc x);

/// Returns whether retrying can succeed.
bool is_retryable(bus_errc x);

inline bool has_code(const caf::error& err, bus_errc code) {
  return err && err.category() == caf::atom("es_bus")
         && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

const char* render_bus_errc(uint8_t code);
bool classify_bus_errc(uint8_t code);

inline const bool bus_errors_registered = register_error_category(
  caf::atom("es_bus"), render_bus_errc, classify_bus_errc);

} // namespace detail

} // namespace es

CAF_ERROR_CODE_ENUM(es::bus_errc, "es_bus")
