// Which payload fields of which event types are personal data, and whose.
#pragma once

#include "es/shred/errors.hpp"
#include "es/store/codec.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace es {

/// Returns the subject id of an event as appended (its payload is still
/// plaintext). An error, or an empty id, refuses the append with
/// `missing_subject`.
using subject_function
  = std::function<caf::expected<std::string>(const event_data&)>;

/// The subject of an event is its aggregate: for streams that are the data
/// subject themselves (a customer aggregate).
subject_function subject_from_aggregate_id();

namespace detail {

/// What a `fields` function says about one member, for policy checks.
struct shred_field_info {
  /// A `std::string` (or string-like) member: an erased value becomes
  /// `erased_marker`.
  bool is_string = false;
  /// A `std::optional` member: an erased value becomes null.
  bool is_optional = false;
};

/// Collects the top-level members a `fields` function names.
struct shred_field_probe {
  std::map<std::string, shred_field_info, std::less<>>& out;

  template <class T>
  bool operator()(std::string_view name, T&) {
    shred_field_info info;
    info.is_string = std::is_same_v<T, std::string>;
    info.is_optional = is_optional<T>::value;
    out.emplace(std::string{name}, info);
    return true;
  }
};

} // namespace detail

/// Per event type: the top-level payload members that are personal data,
/// and where the id of the data subject they belong to comes from.
///
/// Personal members are encrypted with the subject's key when appended
/// through a shredding store (`make_shredding_store`); once the subject is
/// forgotten they read as `erased_marker` (strings) or null (anything else),
/// so a personal member that is not a string must be optional in the
/// event's struct for old events to keep decoding.
///
/// Built before the store, then read-only: not thread-safe while it is
/// being changed.
class shredding_policy {
public:
  /// One event type's rule.
  struct rule {
    std::vector<std::string> fields;
    /// The payload member holding the subject id (a string or an integer),
    /// empty when `subject` is used instead. It stays plaintext.
    std::string subject_field;
    subject_function subject;
  };

  /// Declares the personal `fields` of `event_type`, whose subject id is
  /// the payload member `subject_field`. Errors: `invalid_policy` (no
  /// fields, an empty name, a type declared twice, the subject field among
  /// the personal ones).
  [[nodiscard]] caf::error add(std::string event_type,
                               std::vector<std::string> fields,
                               std::string subject_field);

  /// Declares the personal `fields` of `event_type`, whose subject id
  /// `subject` computes from the event.
  [[nodiscard]] caf::error add(std::string event_type,
                               std::vector<std::string> fields,
                               subject_function subject);

  /// Declares the personal `fields` of the typed event `T` (see
  /// event_registry.hpp) with its subject id in member `subject_field`,
  /// checking them against `T`'s `fields` function: each must be a member,
  /// and a `std::string` or a `std::optional`. Errors: `invalid_policy`.
  ///
  ///   policy.add<customer_registered>({"email", "name"}, "customer_id");
  template <typed_event T>
  [[nodiscard]] caf::error
  add(std::vector<std::string> fields, std::string subject_field) {
    if (auto err = check<T>(fields, &subject_field))
      return err;
    return add(std::string{T::event_type}, std::move(fields),
               std::move(subject_field));
  }

  /// Declares the personal `fields` of the typed event `T`, with its
  /// subject id computed by `subject`.
  template <typed_event T>
  [[nodiscard]] caf::error
  add(std::vector<std::string> fields, subject_function subject) {
    if (auto err = check<T>(fields, nullptr))
      return err;
    return add(std::string{T::event_type}, std::move(fields),
               std::move(subject));
  }

  /// The rule of `event_type`, or nullptr when its events hold no personal
  /// data.
  const rule* find(std::string_view event_type) const;

  /// Whether no event type has a rule.
  bool empty() const noexcept {
    return rules_.empty();
  }

private:
  template <class T>
  caf::error check(const std::vector<std::string>& personal,
                   const std::string* subject_field) {
    std::map<std::string, detail::shred_field_info, std::less<>> members;
    detail::shred_field_probe probe{members};
    T tmp{};
    fields(probe, tmp);
    return check_members(T::event_type, members, personal, subject_field);
  }

  caf::error add_rule(std::string event_type, rule r);

  static caf::error check_members(
    std::string_view event_type,
    const std::map<std::string, detail::shred_field_info, std::less<>>& members,
    const std::vector<std::string>& personal, const std::string* subject_field);

  std::map<std::string, rule, std::less<>> rules_;
};

} // namespace es
