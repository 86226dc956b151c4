// Stored events read in place, without copying them out of the store.
#pragma once

#include "es/store/event.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace es {

/// A stored event as a store's read buffer holds it: each field is read when
/// asked for, and strings point into the buffer. A view is valid only during
/// the call that hands it out (`event_store::visit_all`,
/// `projection::handle_view`); `to_event()` makes the owning copy a caller
/// needs to keep the event.
class event_view {
public:
  virtual int64_t global_position() const = 0;
  virtual uuid event_id() const = 0;
  virtual std::string_view event_type() const = 0;
  virtual int32_t event_version() const = 0;
  virtual std::string_view aggregate_type() const = 0;
  virtual uuid aggregate_id() const = 0;
  virtual int64_t aggregate_version() const = 0;
  virtual std::optional<uuid> tenant_id() const = 0;
  virtual timestamp occurred_at() const = 0;
  virtual std::optional<uuid> correlation_id() const = 0;
  virtual std::optional<uuid> causation_id() const = 0;
  virtual std::string_view actor_id() const = 0;
  virtual std::string_view metadata() const = 0;
  virtual std::string_view payload() const = 0;

  /// The owning event behind the view, when there is one (a view of a
  /// `recorded_event`); null for a view into a store's buffer.
  virtual const recorded_event* owned() const noexcept {
    return nullptr;
  }

  /// Returns an owning copy of the event.
  recorded_event to_event() const;

protected:
  ~event_view() = default;
};

/// A view of an owning event, for code that holds `recorded_event`s and
/// calls something that takes views.
class recorded_event_view final : public event_view {
public:
  explicit recorded_event_view(const recorded_event& ev) noexcept : ev_(ev) {
    // nop
  }

  int64_t global_position() const override {
    return ev_.global_position;
  }
  uuid event_id() const override {
    return ev_.event_id;
  }
  std::string_view event_type() const override {
    return ev_.event_type;
  }
  int32_t event_version() const override {
    return ev_.event_version;
  }
  std::string_view aggregate_type() const override {
    return ev_.aggregate_type;
  }
  uuid aggregate_id() const override {
    return ev_.aggregate_id;
  }
  int64_t aggregate_version() const override {
    return ev_.aggregate_version;
  }
  std::optional<uuid> tenant_id() const override {
    return ev_.tenant_id;
  }
  timestamp occurred_at() const override {
    return ev_.occurred_at;
  }
  std::optional<uuid> correlation_id() const override {
    return ev_.correlation_id;
  }
  std::optional<uuid> causation_id() const override {
    return ev_.causation_id;
  }
  std::string_view actor_id() const override {
    return ev_.actor_id;
  }
  std::string_view metadata() const override {
    return ev_.metadata;
  }
  std::string_view payload() const override {
    return ev_.payload;
  }
  const recorded_event* owned() const noexcept override {
    return &ev_;
  }

private:
  const recorded_event& ev_;
};

} // namespace es
