// Projections: the three levels of eventsource-py, plus read models that
// commit with their checkpoint.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace es {

/// Level 1, the minimal projection: handles events and can start over.
/// Run it with `spawn_projection_actor` (or a `projection_coordinator`),
/// which feeds it from its checkpoint and applies the error policy.
class projection {
public:
  virtual ~projection();

  /// Unique among the projections of an application; names its checkpoint.
  virtual std::string name() const = 0;

  /// Event types it wants; empty means all.
  virtual std::vector<std::string> subscribed_to() const;

  /// Handles one event. An error (or an exception) goes to the error policy.
  virtual caf::error handle(const recorded_event& ev) = 0;

  /// Handles one event read in place: the view, and the strings it hands
  /// out, are valid only during the call (`event_view::to_event` keeps a
  /// copy). The projection actor calls this instead of `handle` for every
  /// event it handles, unless the projection is transactional. The default
  /// calls `handle`, with a copy of the event when the view is not of an
  /// owning one (while catching up from SQLite or PostgreSQL). Override it
  /// to read only what the handler needs, straight from the store's buffer.
  virtual caf::error handle_view(const event_view& ev);

  /// Clears the read model, for a rebuild from the beginning.
  virtual caf::error reset();

  /// Whether `handle` blocks (disk, network): its actor then runs on its
  /// own thread.
  virtual bool blocking() const;

  /// The registry that defines the event types the application knows, if
  /// the projection has one. With a registry, an event of a stream the
  /// projection follows whose type (and version) the registry does not
  /// know is not skipped like an event the projection never asked for: it
  /// fails with `unknown_event_type` under the error policy (dead letter or
  /// stop), and is counted. The streams it follows are those of the
  /// subscription's `aggregate_types` filter, or else those of the
  /// aggregate types of events it has handled.
  virtual const event_registry* type_registry() const;
};

using projection_ptr = std::shared_ptr<projection>;

/// Level 2: a projection that keeps its own checkpoint and dead letters and
/// can run without actors: `process` applies one event under the error
/// policy (skipping events at or below the checkpoint, retrying with
/// blocking backoff, dead-lettering or skipping, then moving the
/// checkpoint); `catch_up` processes everything after the checkpoint. The
/// projection actor does the same for any projection, asynchronously.
/// Not thread-safe.
class checkpoint_tracking_projection : public projection {
public:
  checkpoint_tracking_projection(checkpoint_store_ptr checkpoints = nullptr,
                                 dead_letter_store_ptr dead_letters = nullptr,
                                 error_policy policy = {});

  const checkpoint_store_ptr& checkpoints() const noexcept {
    return checkpoints_;
  }

  const dead_letter_store_ptr& dead_letters() const noexcept {
    return dead_letters_;
  }

  const error_policy& policy() const noexcept {
    return tracker_.policy();
  }

  /// The stored checkpoint position (0 without one).
  caf::expected<int64_t> checkpoint_position();

  /// Applies `ev` under the policy. Returns an error only when the
  /// projection must stop (strategy `stop`, error limit, or a failing
  /// checkpoint or dead-letter store).
  caf::error process(const recorded_event& ev);

  /// Processes every event of `store` after the checkpoint, in pages.
  /// Returns the new checkpoint position.
  caf::expected<int64_t> catch_up(event_store& store, size_t page_size = 500);

  /// Clears the read model (`clear`) and the checkpoint.
  caf::error reset() override;

  error_stats errors() const;

protected:
  /// Clears the read model; called by `reset`.
  virtual caf::error clear();

private:
  checkpoint_store_ptr checkpoints_;
  dead_letter_store_ptr dead_letters_;
  error_tracker tracker_;
  int64_t processed_ = 0;
};

/// Level 3: a declarative projection. Handlers registered with `on<E>` in
/// the constructor decode typed events (upcasting old versions); the types
/// they name are what it subscribes to.
class declarative_projection : public checkpoint_tracking_projection {
public:
  declarative_projection(std::string name,
                         std::shared_ptr<const event_registry> registry,
                         checkpoint_store_ptr checkpoints = nullptr,
                         dead_letter_store_ptr dead_letters = nullptr,
                         error_policy policy = {});

  std::string name() const override;

  std::vector<std::string> subscribed_to() const override;

  caf::error handle(const recorded_event& ev) final;

  const event_registry* type_registry() const override;

protected:
  /// Registers the handler for `E`: `fn(const E&, const recorded_event&)`
  /// returning void or `caf::error`.
  template <typed_event E, class F>
  void on(F fn) {
    handlers_.push_back(
      {std::string{E::event_type},
       [fn = std::move(fn)](const event_registry& reg,
                            const recorded_event& ev) -> caf::error {
         auto x = reg.decode_as<E>(ev);
         if (!x)
           return std::move(x.error());
         if constexpr (std::is_void_v<std::invoke_result_t<
                         F&, const E&, const recorded_event&>>) {
           fn(*x, ev);
           return caf::none;
         } else {
           return fn(*x, ev);
         }
       }});
  }

  const event_registry& registry() const {
    return *registry_;
  }

private:
  struct handler {
    std::string event_type;
    std::function<caf::error(const event_registry&, const recorded_event&)> fn;
  };

  std::string name_;
  std::shared_ptr<const event_registry> registry_;
  std::vector<handler> handlers_;
};

/// A read model in a SQL database (`read_model_db`) next to its checkpoint:
/// the projection actor runs each batch of events in one transaction with
/// the checkpoint update (and any dead letters), so every event takes effect
/// exactly once, even across crashes.
class transactional_projection : public projection {
public:
  explicit transactional_projection(read_model_db_ptr db);

  read_model_db& db() const {
    return *db_;
  }

  const read_model_db_ptr& db_ptr() const {
    return db_;
  }

  /// Applies one event with the statements of `tx`.
  virtual caf::error handle(sql_transaction& tx, const recorded_event& ev) = 0;

  /// Clears the read model's tables with the statements of `tx`.
  virtual caf::error reset(sql_transaction& tx);

  /// Applies one event in a transaction of its own (without moving any
  /// checkpoint): used for dead-letter replays.
  caf::error handle(const recorded_event& ev) final;

  /// Clears the read model and its checkpoint in one transaction.
  caf::error reset() final;

  /// The database blocks.
  bool blocking() const override;

  // -- shadow rebuilds -----------------------------------------------------

  /// The tables of the read model (plain SQL names). With tables and
  /// `with_db`, `projection_coordinator::rebuild` builds the model anew in
  /// a shadow database (`read_model_db::open_shadow`) while this one keeps
  /// serving, and swaps it in once caught up; a rebuild that fails or is
  /// interrupted leaves this one as it was. Without (the default), the
  /// rebuild clears the model and replays in place.
  virtual std::vector<std::string> tables() const;

  /// Creates the read model's tables (and indexes) with the statements of
  /// `tx`, in an empty database (the shadow).
  virtual caf::error create_tables(sql_transaction& tx);

  /// The same projection working on another database (the shadow); the
  /// default returns nullptr (no shadow rebuilds).
  virtual std::shared_ptr<transactional_projection>
  with_db(read_model_db_ptr db) const;

private:
  read_model_db_ptr db_;
};

} // namespace es
