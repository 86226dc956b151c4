// The base of user aggregates: state, version, uncommitted events, handlers.
#pragma once

#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/log.hpp"

#include <caf/error.hpp>

#include <algorithm>
#include <any>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

namespace es {

/// What an aggregate does with an event it has no handler for.
enum class unhandled_event_policy : uint8_t {
  /// Fail with `actors_errc::unhandled_event` (the default).
  error,
  /// Skip the event silently.
  ignore,
  /// Skip the event and log a warning.
  warn,
};

/// The base of user aggregates over a copyable `State`.
///
/// An aggregate applies events to its state, one version per event. Command
/// methods of the derived class check business rules first (fail fast, see
/// `reject`) and then `emit` events; `emit` applies the event at once and
/// keeps it as uncommitted until the caller saved it.
///
/// Two styles route events to state changes, as in eventsource-py:
/// - declarative: register a handler per event type in the constructor with
///   `on<E>(fn)`; the registered types are what the aggregate handles;
/// - explicit: override `apply_event`, which receives every event without a
///   registered handler, decoded (upcast) by the registry.
/// An event neither handles follows the `unhandled_event_policy`.
///
/// A derived class names its stream type with a static member:
/// `static constexpr std::string_view aggregate_type = "Order";` and is
/// constructible from `(uuid id, std::shared_ptr<const event_registry>)`.
///
/// Not thread-safe: one aggregate belongs to one actor or thread.
template <class State>
class aggregate {
public:
  using state_type = State;

  aggregate(std::string type, uuid id,
            std::shared_ptr<const event_registry> registry)
    : type_(std::move(type)), id_(id), registry_(std::move(registry)) {
    // nop
  }

  virtual ~aggregate() = default;

  // Handlers may refer to the aggregate: it stays where it was created.
  aggregate(const aggregate&) = delete;
  aggregate& operator=(const aggregate&) = delete;

  const uuid& id() const noexcept {
    return id_;
  }

  const std::string& type() const noexcept {
    return type_;
  }

  stream_id stream() const {
    return {type_, id_};
  }

  const State& state() const noexcept {
    return state_;
  }

  /// Events applied so far, committed or not.
  int64_t version() const noexcept {
    return version_;
  }

  /// The version as of the last load or save.
  int64_t committed_version() const noexcept {
    return committed_version_;
  }

  const event_batch& uncommitted_events() const noexcept {
    return uncommitted_;
  }

  bool has_uncommitted() const noexcept {
    return !uncommitted_.empty();
  }

  /// The tenant stamped on emitted events and required of loaded ones.
  const std::optional<uuid>& tenant_id() const noexcept {
    return tenant_;
  }

  void set_tenant(std::optional<uuid> tenant) {
    tenant_ = tenant;
  }

  /// Sets what emitted events carry as causation, correlation and actor id.
  void set_context(command_context ctx) {
    context_ = std::move(ctx);
  }

  void set_unhandled_policy(unhandled_event_policy policy) noexcept {
    policy_ = policy;
  }

  unhandled_event_policy unhandled_policy() const noexcept {
    return policy_;
  }

  const std::shared_ptr<const event_registry>& registry() const noexcept {
    return registry_;
  }

  /// Moves the uncommitted events out for saving; the aggregate keeps its
  /// version and state until `mark_committed` or `rollback`.
  event_batch take_uncommitted() {
    return std::move(uncommitted_);
  }

  /// Marks the uncommitted events as saved.
  void mark_committed() {
    uncommitted_.clear();
    committed_version_ = version_;
    saved_.reset();
  }

  /// Remembers the current state so `rollback` can return to it. Called
  /// before running a command.
  void begin_change() {
    if (!saved_)
      saved_.emplace(state_);
  }

  /// Drops uncommitted events and returns to the state of `begin_change`
  /// (or of the last commit).
  void rollback() {
    if (saved_) {
      state_ = std::move(*saved_);
      saved_.reset();
    }
    uncommitted_.clear();
    version_ = committed_version_;
  }

  /// Restores a snapshot: `state` as of `version`, nothing uncommitted.
  void restore(State state, int64_t version) {
    state_ = std::move(state);
    version_ = version;
    committed_version_ = version;
    uncommitted_.clear();
    saved_.reset();
  }

  /// Applies a stored event during loading. Its version must be the next
  /// one; its tenant must be the aggregate's. Stream control events (see
  /// `delete_stream`) are not the aggregate's: a deletion the stream was
  /// written again after empties the state, a truncation is passed over.
  caf::error apply_stored(const event_data& ev) {
    if (ev.event_type == stream_deleted_type
        && ev.aggregate_version > version_) {
      state_ = State{};
      version_ = ev.aggregate_version;
      committed_version_ = version_;
      return caf::none;
    }
    if (ev.aggregate_version != version_ + 1)
      return caf::make_error(actors_errc::version_gap,
                             "aggregate " + to_string(stream()) + " at version "
                               + std::to_string(version_)
                               + " got event version "
                               + std::to_string(ev.aggregate_version));
    if (tenant_ && ev.tenant_id != tenant_)
      return make_store_error(store_errc::tenant_mismatch,
                              "aggregate " + to_string(stream())
                                + " belongs to another tenant");
    if (!is_stream_control_type(ev.event_type))
      if (auto err = dispatch_stored(ev))
        return err;
    ++version_;
    committed_version_ = version_;
    return caf::none;
  }

  /// Applies a page of stored events in order. An error names the event
  /// (`in_event_context`).
  caf::error load_from_history(const recorded_events& events) {
    for (const auto& ev : events)
      if (auto err = apply_stored(ev))
        return in_event_context(err, ev);
    return caf::none;
  }

protected:
  /// Returns the state for handlers of derived classes that modify it
  /// directly (prefer events).
  State& mutable_state() noexcept {
    return state_;
  }

  /// Registers the handler for events of type `E`: `fn(State&, const E&)`.
  /// Used by the declarative style, typically in the constructor.
  template <typed_event E, class F>
  void on(F fn) {
    handler h;
    h.event_type = E::event_type;
    h.type = std::type_index(typeid(E));
    h.fn = [fn](State& s, const handler_input& in) -> caf::error {
      switch (in.kind) {
        case handler_input::typed:
          fn(s, *static_cast<const E*>(in.ptr));
          return caf::none;
        case handler_input::boxed:
          fn(s, std::any_cast<const E&>(*static_cast<const std::any*>(in.ptr)));
          return caf::none;
        case handler_input::stored: {
          auto x = in.registry->template decode_as<E>(
            *static_cast<const event_data*>(in.ptr));
          if (!x)
            return std::move(x.error());
          fn(s, *x);
          return caf::none;
        }
      }
      return caf::none;
    };
    auto i
      = std::find_if(handlers_.begin(), handlers_.end(), [&](const handler& x) {
          return x.event_type == h.event_type;
        });
    if (i != handlers_.end())
      *i = std::move(h);
    else
      handlers_.push_back(std::move(h));
  }

  /// The explicit style: receives each event without a registered handler,
  /// decoded to its current version. Returns whether it handled the event.
  virtual bool apply_event(State& state, const decoded_event& ev) {
    static_cast<void>(state);
    static_cast<void>(ev);
    return false;
  }

  /// Records a new event: stamps the envelope (next version, stream,
  /// tenant, command context), applies it, and keeps it uncommitted.
  /// Fails if the payload cannot be encoded or no handler takes it under
  /// the `error` policy; then nothing changes.
  template <typed_event E>
  caf::error emit(const E& payload) {
    auto ev = make_event(payload);
    if (!ev)
      return std::move(ev.error());
    ev->aggregate_id = id_;
    ev->aggregate_type = type_;
    ev->aggregate_version = version_ + 1;
    ev->tenant_id = tenant_;
    ev->causation_id = context_.command_id.is_nil()
                         ? std::nullopt
                         : std::optional<uuid>{context_.command_id};
    ev->correlation_id = context_.correlation_id;
    ev->actor_id = context_.actor_id;
    auto* h = find_handler(ev->event_type);
    if (h != nullptr && h->type == std::type_index(typeid(E))) {
      static_cast<void>(
        h->fn(state_, handler_input{handler_input::typed, &payload, nullptr}));
    } else {
      decoded_event decoded{ev->event_type, ev->event_version,
                            std::any{payload}};
      if (!apply_event(state_, decoded))
        if (auto err = unhandled(ev->event_type))
          return err;
    }
    ++version_;
    uncommitted_.push_back(std::move(*ev));
    return caf::none;
  }

private:
  /// What a handler gets: a typed payload, a payload in a std::any, or a
  /// stored event to decode with the registry.
  struct handler_input {
    enum kind_type : uint8_t { typed, boxed, stored } kind;
    const void* ptr;
    const event_registry* registry;
  };

  /// One entry of the handler table: kept small, there is a table per
  /// aggregate instance.
  struct handler {
    std::string_view event_type;
    std::type_index type = std::type_index(typeid(void));
    std::function<caf::error(State&, const handler_input&)> fn;
  };

  const handler* find_handler(std::string_view event_type) const {
    for (const auto& h : handlers_)
      if (h.event_type == event_type)
        return &h;
    return nullptr;
  }

  caf::error dispatch_stored(const event_data& ev) {
    if (const auto* h = find_handler(ev.event_type)) {
      if (!registry_)
        return make_store_error(store_errc::unknown_event_type,
                                "aggregate has no registry to decode "
                                  + ev.event_type);
      return h->fn(state_,
                   handler_input{handler_input::stored, &ev, registry_.get()});
    }
    if (!registry_)
      return unhandled(ev.event_type);
    auto decoded = registry_->decode(ev);
    if (!decoded) {
      // Not an event the aggregate chose not to handle: one the
      // application cannot read at all.
      if (has_code(decoded.error(), store_errc::unknown_event_type))
        return unknown(ev);
      return std::move(decoded.error());
    }
    // The chain may end at a type that has a declarative handler.
    const auto* h = find_handler(decoded->event_type);
    if (h != nullptr && h->type == std::type_index(decoded->value.type()))
      return h->fn(
        state_, handler_input{handler_input::boxed, &decoded->value, nullptr});
    if (apply_event(state_, *decoded))
      return caf::none;
    return unhandled(ev.event_type);
  }

  /// A stored event whose type (and version) the registry does not know:
  /// `store_errc::unknown_event_type` under the `error` policy; skipped
  /// (with a warning under `warn`) otherwise.
  caf::error unknown(const event_data& ev) {
    auto text = "aggregate " + to_string(stream()) + ": stored event "
                + ev.event_id.to_string() + " at version "
                + std::to_string(ev.aggregate_version) + " has type "
                + ev.event_type + " v" + std::to_string(ev.event_version)
                + ", which the registry does not know";
    switch (policy_) {
      case unhandled_event_policy::ignore: return caf::none;
      case unhandled_event_policy::warn:
        log(log_level::warning, text + "; event skipped",
            es::log_context{"aggregates"});
        return caf::none;
      case unhandled_event_policy::error: break;
    }
    return make_store_error(store_errc::unknown_event_type, std::move(text));
  }

  caf::error unhandled(const std::string& event_type) {
    switch (policy_) {
      case unhandled_event_policy::ignore: return caf::none;
      case unhandled_event_policy::warn:
        log(log_level::warning,
            "aggregate " + type_ + " has no handler for " + event_type
              + "; event skipped",
            es::log_context{"aggregates"});
        return caf::none;
      case unhandled_event_policy::error: break;
    }
    return caf::make_error(actors_errc::unhandled_event,
                           "aggregate " + type_ + " has no handler for "
                             + event_type);
  }

  std::string type_;
  uuid id_;
  std::shared_ptr<const event_registry> registry_;
  State state_{};
  int64_t version_ = 0;
  int64_t committed_version_ = 0;
  event_batch uncommitted_;
  std::optional<State> saved_;
  std::optional<uuid> tenant_;
  command_context context_;
  unhandled_event_policy policy_ = unhandled_event_policy::error;
  std::vector<handler> handlers_;
};

} // namespace es
