// Error codes of the supervision module.
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <optional>

namespace es {

/// Error codes of the supervision module. Append-only.
enum class supervision_errc : uint8_t {
  /// The circuit breaker is open. Context: (description, milliseconds until
  /// the breaker lets a test call through).
  circuit_open = 1,
  /// An operation failed on every attempt; context has the last error.
  retries_exhausted,
  /// A subscription saw more errors than its policy allows.
  too_many_errors,
  /// A supervised actor crashed more often than its restart limit.
  restart_limit_reached,
  /// An unknown dead-letter entry or supervised child.
  not_found,
};

const char* to_string(supervision_errc x);

bool is_retryable(supervision_errc x);

inline bool has_code(const caf::error& err, supervision_errc code) {
  return err && err.category() == caf::atom("es_superv")
         && err.code() == static_cast<uint8_t>(code);
}

/// For `circuit_open` errors: milliseconds until the breaker half-opens.
std::optional<int64_t> retry_after_ms(const caf::error& err);

namespace detail {

const char* render_supervision_errc(uint8_t code);
bool classify_supervision_errc(uint8_t code);

inline const bool supervision_errors_registered = register_error_category(
  caf::atom("es_superv"), render_supervision_errc, classify_supervision_errc);

} // namespace detail

} // namespace es

CAF_ERROR_CODE_ENUM(es::supervision_errc, "es_superv")
