// The optimistic-concurrency condition of an append.
#pragma once

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>

namespace es {

/// What an append expects of the stream's current version. Versions count
/// events from 1; a stream without events has version 0.
class expected_version {
public:
  enum class kind : uint8_t { any, no_stream, stream_exists, exact };

  /// No check: append whatever the stream's version is.
  static constexpr expected_version any() noexcept {
    return expected_version{kind::any, 0};
  }

  /// The stream must not exist yet (version 0).
  static constexpr expected_version no_stream() noexcept {
    return expected_version{kind::no_stream, 0};
  }

  /// The stream must have at least one event.
  static constexpr expected_version stream_exists() noexcept {
    return expected_version{kind::stream_exists, 0};
  }

  /// The stream's version must be exactly `version` (0 means no stream).
  static constexpr expected_version exact(int64_t version) noexcept {
    return version == 0 ? no_stream() : expected_version{kind::exact, version};
  }

  constexpr expected_version() noexcept = default;

  constexpr kind type() const noexcept {
    return kind_;
  }

  /// The exact version, or 0 for the other kinds.
  constexpr int64_t value() const noexcept {
    return value_;
  }

  /// Returns whether a stream at version `current` satisfies the condition.
  constexpr bool matches(int64_t current) const noexcept {
    switch (kind_) {
      case kind::any: return true;
      case kind::no_stream: return current == 0;
      case kind::stream_exists: return current > 0;
      case kind::exact: return current == value_;
    }
    return false;
  }

  friend constexpr bool operator==(expected_version, expected_version)
    = default;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, expected_version& x) {
    return f(caf::meta::type_name("es.expected_version"), x.kind_, x.value_);
  }

private:
  constexpr expected_version(kind k, int64_t v) noexcept : kind_(k), value_(v) {
    // nop
  }

  kind kind_ = kind::any;
  int64_t value_ = 0;
};

/// Returns "any", "no_stream", "stream_exists" or the number.
std::string to_string(expected_version x);

} // namespace es
