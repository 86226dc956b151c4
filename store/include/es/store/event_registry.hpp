// Maps (event type, schema version) to codecs and upcasters.
#pragma once

#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/event_view.hpp"
#include "es/store/json.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <any>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <typeindex>
#include <utility>
#include <vector>

namespace es {

/// A typed event: a struct with `fields` (see codec.hpp) that names its type
/// and schema version:
///
///   struct order_created {
///     static constexpr std::string_view event_type = "OrderCreated";
///     static constexpr int32_t event_version = 2;
///     ...
///   };
template <class T>
concept typed_event = has_fields<T> && requires {
  { T::event_type } -> std::convertible_to<std::string_view>;
  { T::event_version } -> std::convertible_to<int32_t>;
};

/// A payload decoded into the current version of its type.
struct decoded_event {
  std::string event_type;
  int32_t event_version = 0;
  /// Holds the registered struct of (`event_type`, `event_version`).
  std::any value;

  /// Returns the payload as `T`, or nullptr if it holds another type.
  template <class T>
  const T* as() const noexcept {
    return std::any_cast<T>(&value);
  }
};

/// Turns an older payload's JSON text into the JSON text of the next
/// schema version.
using json_upcaster
  = std::function<caf::expected<std::string>(std::string_view payload)>;

/// Maps (event type, schema version) to a codec, and older versions to
/// upcasters that turn them into newer ones before decoding.
///
/// An entry is one of:
/// - a typed codec (`add<T>`), optionally with a typed upcaster to a newer
///   struct (`add_upcaster<From, To>`);
/// - a JSON upcaster (`add_json_upcaster`) for a version that has no struct
///   any more: it rewrites the text into a newer version's text.
/// Decoding follows the chain from the stored version to a version with no
/// outgoing upcaster: the current one.
///
/// Thread-safety: registration and lookups may run concurrently; lookups
/// take a shared lock.
class event_registry {
public:
  event_registry();
  ~event_registry();
  event_registry(const event_registry&) = delete;
  event_registry& operator=(const event_registry&) = delete;

  /// Registers `T` under (`T::event_type`, `T::event_version`). Registering
  /// the same pair twice returns `duplicate_registration`.
  template <typed_event T>
  caf::error add() {
    entry_codec codec;
    codec.type = std::type_index(typeid(T));
    codec.decode
      = [](std::string_view text,
           const json::parse_limits& limits) -> caf::expected<std::any> {
      T tmp{};
      if (auto err = from_json(text, tmp, limits))
        return err;
      return std::any{std::move(tmp)};
    };
    codec.decode_to
      = [](std::string_view text, const json::parse_limits& limits, void* out) {
          return from_json(text, *static_cast<T*>(out), limits);
        };
    return add_codec(std::string{T::event_type}, T::event_version,
                     std::move(codec));
  }

  /// Registers a typed upcaster from `From` to `To`; both must be registered
  /// with `add`. `fn` is `To(const From&)` or `caf::expected<To>(const
  /// From&)`. The target must have a higher version or another type name.
  template <typed_event From, typed_event To, class F>
  caf::error add_upcaster(F fn) {
    upcast_fn up
      = [fn = std::move(fn)](std::any& in) -> caf::expected<std::any> {
      const auto* from = std::any_cast<From>(&in);
      if (from == nullptr)
        return make_store_error(store_errc::internal,
                                "upcaster input has the wrong type");
      if constexpr (std::is_same_v<std::invoke_result_t<F&, const From&>, To>) {
        return std::any{fn(*from)};
      } else {
        auto res = fn(*from);
        if (!res)
          return std::move(res.error());
        return std::any{std::move(*res)};
      }
    };
    return add_typed_upcaster(std::string{From::event_type},
                              From::event_version, std::string{To::event_type},
                              To::event_version, std::move(up));
  }

  /// Registers a JSON upcaster for (`type`, `from_version`), a version that
  /// has no struct; its output is decoded as (`to_type`, `to_version`).
  caf::error add_json_upcaster(std::string type, int32_t from_version,
                               std::string to_type, int32_t to_version,
                               json_upcaster fn);

  /// Returns whether (`type`, `version`) has a codec or an upcaster.
  bool contains(std::string_view type, int32_t version) const;

  /// Returns the version a stored payload of `type` decodes into, following
  /// upcasters from its newest registered version.
  std::optional<int32_t> current_version(std::string_view type) const;

  /// Returns every registered (type, version).
  std::vector<std::pair<std::string, int32_t>> registered() const;

  /// Decodes the payload of `ev` into the current version of its type.
  /// Errors: `unknown_event_type`, `malformed_payload`, `upcast_failed`.
  caf::expected<decoded_event> decode(const event_data& ev) const;

  /// Decodes the payload of `ev` into `T`, upcasting older versions. Fails
  /// with `upcast_failed` if the chain ends at another type than `T`.
  template <typed_event T>
  caf::expected<T> decode_as(const event_data& ev) const {
    // A payload stored as `T` itself decodes straight into the result.
    T result{};
    caf::error err;
    if (decode_direct(ev.event_type, ev.event_version, ev.payload,
                      std::type_index(typeid(T)), &result, err)) {
      if (err)
        return err;
      return result;
    }
    auto res = decode_into(ev, std::type_index(typeid(T)), nullptr);
    if (!res)
      return std::move(res.error());
    return std::any_cast<T>(std::move(*res));
  }

  /// Decodes the payload of a view (see `projection::handle_view`) into
  /// `T`, as `decode_as(const event_data&)`; copies the event only when the
  /// payload is not stored as `T` itself (an upcaster has to run, or the
  /// type is unknown or another).
  template <typed_event T>
  caf::expected<T> decode_as(const event_view& ev) const {
    T result{};
    caf::error err;
    if (decode_direct(ev.event_type(), ev.event_version(), ev.payload(),
                      std::type_index(typeid(T)), &result, err)) {
      if (err)
        return err;
      return result;
    }
    if (const auto* own = ev.owned())
      return decode_as<T>(*own);
    return decode_as<T>(ev.to_event());
  }

  /// Checks that `ev` has a registered type and a decodable payload.
  caf::error validate(const event_data& ev) const;

  /// Limits applied when parsing payloads for decoding.
  void set_parse_limits(json::parse_limits limits);

private:
  using decode_fn = std::function<caf::expected<std::any>(
    std::string_view, const json::parse_limits&)>;
  using decode_to_fn = std::function<caf::error(
    std::string_view, const json::parse_limits&, void*)>;
  using upcast_fn = std::function<caf::expected<std::any>(std::any&)>;

  struct entry_codec {
    std::type_index type = std::type_index(typeid(void));
    decode_fn decode;
    /// Decodes into an existing struct of `type`.
    decode_to_fn decode_to;
  };

  caf::error add_codec(std::string type, int32_t version, entry_codec codec);

  caf::error add_typed_upcaster(std::string from_type, int32_t from_version,
                                std::string to_type, int32_t to_version,
                                upcast_fn fn);

  /// Decodes `ev` along its upcaster chain; `wanted` (unless `void`) must be
  /// the struct at the chain's end. Stores the final type and version in
  /// `info` when given.
  caf::expected<std::any> decode_into(const event_data& ev,
                                      std::type_index wanted,
                                      decoded_event* info) const;

  /// Decodes `payload`, stored as (`type`, `version`), into `*out`, a
  /// `wanted`, if that type and version have the codec of `wanted` and no
  /// upcaster; sets `err` as `decode_into` would. Returns false, doing
  /// nothing, for any other payload.
  bool decode_direct(std::string_view type, int32_t version,
                     std::string_view payload, std::type_index wanted,
                     void* out, caf::error& err) const;

  struct impl;
  std::unique_ptr<impl> impl_;
};

using event_registry_ptr = std::shared_ptr<event_registry>;

/// Builds an event from a typed payload: a fresh time-ordered event id, the
/// type and version of `T`, the current time and the encoded payload. The
/// caller (usually an aggregate) fills in the stream fields.
template <typed_event T>
caf::expected<event_data> make_event(const T& payload) {
  auto text = to_json(payload);
  if (!text)
    return std::move(text.error());
  event_data ev;
  ev.event_id = uuid::time_ordered();
  ev.event_type = std::string{T::event_type};
  ev.event_version = T::event_version;
  ev.occurred_at = now_utc();
  ev.payload = std::move(*text);
  return ev;
}

} // namespace es
