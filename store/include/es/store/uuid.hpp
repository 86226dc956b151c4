// A 128-bit UUID value type backed by libuuid.
#pragma once

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace es {

/// A universally unique identifier (RFC 9562). The default value is the nil
/// UUID. Values are plain bytes: cheap to copy, compare and hash.
class uuid {
public:
  using bytes_type = std::array<uint8_t, 16>;

  constexpr uuid() noexcept = default;

  constexpr explicit uuid(const bytes_type& bytes) noexcept : bytes_(bytes) {
    // nop
  }

  /// Returns a random (version 4) UUID: 122 random bits from the kernel's
  /// CSPRNG. Cheap (no system call per id); safe across fork().
  static uuid random();

  /// Returns a time-ordered (version 7) UUID: the Unix time in milliseconds
  /// in the first 48 bits followed by 74 random bits from the kernel's
  /// CSPRNG. Ids made in a later millisecond sort after earlier ones, which
  /// keeps B-tree inserts local. Cheap (no system call per id); safe across
  /// fork().
  static uuid time_ordered();

  /// Parses the canonical 36-character form (either letter case). Returns
  /// `store_errc::invalid_uuid` for anything else.
  static caf::expected<uuid> parse(std::string_view text);

  /// Returns the canonical lower-case 36-character form.
  std::string to_string() const;

  /// Returns whether all bits are zero.
  bool is_nil() const noexcept {
    return bytes_ == bytes_type{};
  }

  /// Returns the version nibble (4 for random, 7 for time-ordered).
  int version() const noexcept {
    return bytes_[6] >> 4;
  }

  const bytes_type& bytes() const noexcept {
    return bytes_;
  }

  bytes_type& bytes() noexcept {
    return bytes_;
  }

  /// Returns a 64-bit hash of the value (FNV-1a over the bytes). Shards
  /// and projection partitions are chosen by it, in every process and
  /// version alike: it must never change.
  uint64_t hash() const noexcept;

  friend auto operator<=>(const uuid&, const uuid&) = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, uuid& x) {
    return f(caf::meta::type_name("es.uuid"), x.bytes_);
  }

private:
  bytes_type bytes_{};
};

/// @relates uuid
inline std::string to_string(const uuid& x) {
  return x.to_string();
}

/// Inspects an optional UUID as a flag followed by the value, so optional
/// ids can travel in CAF messages. Found by argument-dependent lookup.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, std::optional<uuid>& x) {
  if constexpr (Inspector::reads_state) {
    bool flag = x.has_value();
    uuid tmp = x.value_or(uuid{});
    return f(flag, tmp);
  } else {
    bool flag = false;
    uuid tmp;
    auto result = f(flag, tmp);
    if (flag)
      x = tmp;
    else
      x.reset();
    return result;
  }
}

} // namespace es

template <>
struct std::hash<es::uuid> {
  size_t operator()(const es::uuid& x) const noexcept {
    return static_cast<size_t>(x.hash());
  }
};
