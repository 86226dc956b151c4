// An actor system on CAF's deterministic test scheduler, for scenarios.
#pragma once

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace es::testing {

/// Adds an application's types to the config before the system starts (for
/// example `cfg.add_message_types<caf::id_block::orders>()`). Local messages
/// need no type ids in CAF 0.17, so most scenarios need none.
using configure_fn = std::function<void(caf::actor_system_config&)>;

/// An actor system whose scheduler is CAF's `test_coordinator`: nothing runs
/// until `run` (or `advance_time`) is called, and then everything runs on
/// the calling thread in a fixed order, so tests need no sleeps. The
/// framework's modules (`add_projections_module`, with those below it) are
/// registered. Actors that are not spawned `caf::detached` run here; store
/// actors and projection actors must be told so (`detached = false`).
///
/// Not thread-safe: one test thread owns it.
class deterministic_system {
public:
  explicit deterministic_system(const configure_fn& configure = {});

  /// Stops the actors passed to `stop_at_end` and runs until idle.
  ~deterministic_system();

  deterministic_system(const deterministic_system&) = delete;
  deterministic_system& operator=(const deterministic_system&) = delete;

  caf::actor_system& system() noexcept;

  caf::scheduler::test_coordinator& scheduler() noexcept;

  /// Runs every job until none is left; returns how many ran. Timers do
  /// not fire (see `advance_time`).
  size_t run();

  /// Moves the clock by `step` (firing due timers) and runs until idle;
  /// repeated until `total` has passed.
  void advance_time(caf::timespan total, caf::timespan step);

  /// Ends `handle` with `user_shutdown` when the system goes away.
  void stop_at_end(const caf::actor& handle);

  template <class Handle>
  void stop_at_end(const Handle& handle) {
    stop_at_end(caf::actor_cast<caf::actor>(handle));
  }

  /// Sends `xs...` to `dest` as a request from a helper actor, runs until
  /// idle and returns the answer: a value of type `R`, or the error it was
  /// answered with. `std::nullopt` means no answer came (the receiver waits
  /// for a timer or a message that never arrives): unlike a blocking
  /// request this never hangs.
  template <class R, class Handle, class... Ts>
  std::optional<caf::expected<R>> ask(const Handle& dest, Ts... xs) {
    auto answer = std::make_shared<std::optional<caf::expected<R>>>();
    system().spawn([answer, dest, xs...](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
        .then(
          [answer](R& x) {
            *answer = std::move(x);
          },
          [answer](caf::error& err) {
            *answer = std::move(err);
          });
    });
    run();
    return std::move(*answer);
  }

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace es::testing
