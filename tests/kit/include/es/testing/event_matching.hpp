// Comparing events by type and payload, ignoring ids, versions and times.
#pragma once

#include "es/store/codec.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"

#include <caf/expected.hpp>

#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace es::testing {

/// Returns `text` re-encoded canonically: object members sorted by name, no
/// white space, numbers and strings as `json::writer` writes them. Errors:
/// those of `json::document::parse`.
caf::expected<std::string> canonical_json(std::string_view text);

/// Lists where two JSON texts differ, member by member ("quantity: expected
/// 2, got 3; note: missing"); empty when they are equal up to member order.
/// A text that does not parse is compared as it is.
std::string json_difference(std::string_view expected, std::string_view actual);

/// "OrderPaid {"amount_cents":300,...}": the type and the canonical payload
/// of `ev`, for failure messages.
std::string describe_payload(const event_data& ev);

/// One event a scenario expects: a type and a payload. Matching ignores
/// everything else in the envelope (event id, stream, version, time,
/// metadata, causation).
///
/// Built from a typed event (implicitly: `expected_event{order_paid{...}}`),
/// it decodes the actual event into the same struct through the registry
/// (upcasting older versions), then compares with `operator==` when the type
/// has one, else the canonical JSON of both. Built with `json`, it compares
/// the type name and the canonical payload text.
class expected_event {
public:
  template <typed_event E>
  expected_event(const E& x) // NOLINT(google-explicit-constructor)
    : type_(E::event_type) {
    auto text = to_json(x);
    payload_ = text ? *text : std::string{};
    match_ = [x](const event_registry* reg,
                 const event_data& actual) -> std::string {
      return match_typed(x, reg, actual);
    };
  }

  /// Expects an event of type `type` whose payload equals `payload_json` up
  /// to member order.
  static expected_event json(std::string type, std::string payload_json);

  const std::string& type() const noexcept {
    return type_;
  }

  /// "OrderPaid {...}", for failure messages.
  std::string describe() const;

  /// Returns an empty string if `actual` matches, else what differs.
  std::string difference(const event_registry* reg,
                         const event_data& actual) const;

private:
  expected_event() = default;

  template <typed_event E>
  static std::string match_typed(const E& expected, const event_registry* reg,
                                 const event_data& actual) {
    if (actual.event_type != E::event_type)
      return type_mismatch(std::string{E::event_type}, actual);
    caf::expected<E> decoded{caf::error{}};
    if (reg != nullptr
        && reg->contains(actual.event_type, actual.event_version))
      decoded = reg->template decode_as<E>(actual);
    else
      decoded = from_json<E>(actual.payload);
    if (!decoded)
      return undecodable(actual, decoded.error());
    if constexpr (std::equality_comparable<E>) {
      if (*decoded == expected)
        return {};
      auto diff = typed_difference(to_json(expected), to_json(*decoded));
      return diff.empty() ? std::string{"operator== says the events differ, "
                                        "though their JSON is the same"}
                          : diff;
    } else {
      return typed_difference(to_json(expected), to_json(*decoded));
    }
  }

  static std::string type_mismatch(const std::string& expected,
                                   const event_data& actual);

  static std::string undecodable(const event_data& actual,
                                 const caf::error& err);

  static std::string typed_difference(const caf::expected<std::string>& lhs,
                                      const caf::expected<std::string>& rhs);

  std::string type_;
  std::string payload_;
  std::function<std::string(const event_registry*, const event_data&)> match_;
};

/// Compares `actual` with `expected`, in order. Returns an empty string if
/// they match, else the first difference: a count that differs (naming the
/// missing or extra events) or the first event that differs.
std::string compare_events(const std::vector<expected_event>& expected,
                           const event_batch& actual,
                           const event_registry* reg);

/// "[OrderCreated, ItemAdded]" or "no events".
std::string list_types(const event_batch& events);

/// The same for expected events.
std::string list_types(const std::vector<expected_event>& events);

} // namespace es::testing
