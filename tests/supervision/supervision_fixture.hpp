// Shared pieces of the supervision tests: a deterministic actor system (CAF's
// test_coordinator and its clock), a threaded one for detached actors, a log
// sink that records, and a scripted target actor.
#pragma once

#include "es/store/errors.hpp"
#include "es/store/log.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/type_ids.hpp"

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/expected.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace es::test {

// -- logging ------------------------------------------------------------------

/// Records what the library logs while it lives; restores a sink that prints
/// to stderr afterwards. Thread-safe.
class log_recorder {
public:
  struct line {
    log_level level;
    std::string text;
  };

  log_recorder() : shared_(std::make_shared<shared>()) {
    set_log_sink([s = shared_](log_level level, std::string_view text) {
      std::lock_guard guard{s->mtx};
      s->lines.push_back(line{level, std::string{text}});
    });
  }

  log_recorder(const log_recorder&) = delete;
  log_recorder& operator=(const log_recorder&) = delete;

  ~log_recorder() {
    set_log_sink([](log_level level, std::string_view text) {
      std::cerr << "[eventsource " << to_string(level) << "] " << text << '\n';
    });
  }

  std::vector<line> lines() const {
    std::lock_guard guard{shared_->mtx};
    return shared_->lines;
  }

  /// Lines of `level` that contain `needle`.
  size_t count(log_level level, std::string_view needle = {}) const {
    std::lock_guard guard{shared_->mtx};
    size_t n = 0;
    for (const auto& l : shared_->lines)
      if (l.level == level && l.text.find(needle) != std::string::npos)
        ++n;
    return n;
  }

private:
  struct shared {
    std::mutex mtx;
    std::vector<line> lines;
  };
  std::shared_ptr<shared> shared_;
};

// -- a deterministic actor system ---------------------------------------------

/// An actor system on CAF's test_coordinator: nothing runs until the test
/// calls `sched.run()`, and time moves only with `sched.advance_time(...)`.
/// The scoped actor `self` is the client; its requests are answered into
/// its mailbox, which `collect` checks before it receives, so a missing
/// answer fails the test instead of blocking it.
struct deterministic_fixture {
  /// First member: outlives the actor system.
  log_recorder logged;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  caf::scoped_actor self;
  /// Actors the test spawned; ended by the destructor.
  std::vector<caf::actor> spawned;

  deterministic_fixture()
    : sys(init(cfg)),
      sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
      self(sys) {
    // nop
  }

  ~deterministic_fixture() {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    add_supervision_module(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    return cfg;
  }

  /// Remembers `a` for the destructor and returns it.
  template <class Handle>
  Handle keep(Handle a) {
    spawned.push_back(caf::actor_cast<caf::actor>(a));
    return a;
  }

  /// Whether an answer waits in the client's mailbox.
  bool has_answer() {
    return self->has_next_message();
  }

  /// Takes the answer of `h` from the client's mailbox; fails the test when
  /// there is none yet.
  template <class T, class Handle>
  caf::expected<T> collect(Handle& h) {
    REQUIRE(self->has_next_message());
    if constexpr (std::is_void_v<T>) {
      caf::expected<void> result;
      h.receive([] {},
                [&](caf::error& err) {
                  result = std::move(err);
                });
      return result;
    } else {
      caf::expected<T> result{
        caf::make_error(caf::sec::invalid_argument, "no answer")};
      h.receive(
        [&](T& x) {
          result = std::move(x);
        },
        [&](caf::error& err) {
          result = std::move(err);
        });
      return result;
    }
  }

  /// Sends a request from the client, runs every ready job and returns the
  /// answer (without moving the clock).
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dst, Ts&&... xs) {
    auto h = self->request(dst, caf::infinite, std::forward<Ts>(xs)...);
    sched.run();
    return collect<T>(h);
  }
};

// -- a threaded actor system --------------------------------------------------

/// An actor system on CAF's threaded scheduler, for detached actors (which
/// run on their own threads even under the test_coordinator). Requests
/// block with a generous timeout, so a lost answer fails instead of
/// hanging.
struct threaded_fixture {
  log_recorder logged;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  std::vector<caf::actor> spawned;

  threaded_fixture() : sys(init(cfg)), self(sys) {
    // nop
  }

  ~threaded_fixture() {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    add_supervision_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    cfg.set("logger.verbosity", caf::atom("quiet"));
    return cfg;
  }

  template <class Handle>
  Handle keep(Handle a) {
    spawned.push_back(caf::actor_cast<caf::actor>(a));
    return a;
  }

  template <class T, class Handle>
  caf::expected<T> collect(Handle&& h) {
    caf::expected<T> result{
      caf::make_error(caf::sec::invalid_argument, "no answer")};
    h.receive(
      [&](T& x) {
        result = std::move(x);
      },
      [&](caf::error& err) {
        result = std::move(err);
      });
    return result;
  }

  /// Sends a request and blocks for its answer (at most 30 seconds).
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dst, Ts&&... xs) {
    return collect<T>(
      self->request(dst, std::chrono::seconds(30), std::forward<Ts>(xs)...));
  }
};

// -- a scripted target --------------------------------------------------------

/// What a scripted target saw and how it answers. Only touched from the
/// test thread and the target's behavior, never at the same time (the
/// test_coordinator runs everything on the test thread).
struct target_script {
  /// Requests handled (the `int32_t` and the `std::string` ones).
  int calls = 0;
  std::vector<int32_t> received;
  /// Answers for the next `int32_t` calls, in order; then `always`, then
  /// `x + 1000` (or a held answer when `hold`).
  std::deque<caf::error> errors;
  caf::error always;
  /// Keeps `int32_t` requests unanswered until `(caf::ok_atom)`.
  bool hold = false;
  std::vector<std::pair<caf::typed_response_promise<int32_t>, int32_t>> held;
};

using target_script_ptr = std::shared_ptr<target_script>;

/// Answers `(int32_t x)` with `x + 1000` or a scripted error, `(std::string)`
/// with nothing (a void answer), and `(caf::ok_atom)` by releasing held
/// answers.
inline caf::behavior scripted_target(caf::event_based_actor* self,
                                     target_script_ptr script) {
  return {
    [self, script](int32_t x) -> caf::result<int32_t> {
      ++script->calls;
      script->received.push_back(x);
      if (!script->errors.empty()) {
        auto err = std::move(script->errors.front());
        script->errors.pop_front();
        return err;
      }
      if (script->always)
        return script->always;
      if (script->hold) {
        auto rp = self->make_response_promise<int32_t>();
        script->held.emplace_back(rp, x);
        return rp;
      }
      return x + 1000;
    },
    [script](const std::string&) {
      ++script->calls;
    },
    [script](caf::ok_atom) {
      for (auto& [rp, x] : script->held)
        rp.deliver(x + 1000);
      script->held.clear();
    },
  };
}

// -- errors -------------------------------------------------------------------

inline caf::error busy() {
  return make_store_error(store_errc::storage_busy, "database is locked");
}

inline caf::error connection_lost() {
  return make_store_error(store_errc::connection_failed, "connection lost");
}

inline caf::error version_conflict_error() {
  return caf::make_error(store_errc::wrong_expected_version,
                         "stream Order/1: expected 3, actual 5");
}

inline caf::error malformed() {
  return make_store_error(store_errc::malformed_payload, "not JSON");
}

} // namespace es::test
