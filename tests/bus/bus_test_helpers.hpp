// Fixtures, event builders and recorders shared by the bus tests.
#pragma once

#include "es/bus/errors.hpp"
#include "es/bus/event_bus.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/bus/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace es::test {

/// Generous bound for `drain` in tests that expect it to succeed.
inline constexpr auto drain_timeout = std::chrono::milliseconds{10'000};

/// Builds `count` recorded events of `type` at global positions
/// `first_position`, `first_position + 1`, ... in one new stream.
inline recorded_events make_recorded(int64_t first_position, int count,
                                     const std::string& type = "ItemAdded") {
  auto stream = new_stream();
  recorded_events result;
  result.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    auto pos = first_position + i;
    recorded_event ev;
    static_cast<event_data&>(ev)
      = make_test_event(stream, static_cast<int>(pos), type);
    ev.aggregate_version = i + 1;
    ev.global_position = pos;
    result.push_back(std::move(ev));
  }
  return result;
}

/// Returns `first, first + 1, ..., first + count - 1`.
inline std::vector<int64_t> positions_from(int64_t first, int64_t count) {
  std::vector<int64_t> result;
  for (int64_t i = 0; i < count; ++i)
    result.push_back(first + i);
  return result;
}

inline void require_ok(const caf::error& err) {
  INFO("error: " << describe(err));
  REQUIRE_FALSE(err);
}

/// Records what a handler saw; handlers run on CAF threads.
class recorder {
public:
  void add(const recorded_event& ev) {
    std::lock_guard<std::mutex> guard{mtx_};
    positions_.push_back(ev.global_position);
    types_.push_back(ev.event_type);
  }

  std::vector<int64_t> positions() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return positions_;
  }

  std::vector<std::string> types() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return types_;
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return positions_.size();
  }

private:
  mutable std::mutex mtx_;
  std::vector<int64_t> positions_;
  std::vector<std::string> types_;
};

using recorder_ptr = std::shared_ptr<recorder>;

/// A handler that records every event and succeeds.
inline event_handler_fn recording_handler(recorder_ptr rec) {
  return [rec](const recorded_event& ev) -> caf::error {
    rec->add(ev);
    return caf::none;
  };
}

/// Blocks handlers until the test opens it.
class gate {
public:
  void wait() {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this] {
      return open_;
    });
  }

  void open() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      open_ = true;
    }
    cv_.notify_all();
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// Opens a gate when the test leaves its scope, even on a failed REQUIRE,
/// so that the actor system can shut down.
class gate_guard {
public:
  explicit gate_guard(std::shared_ptr<gate> g) : gate_(std::move(g)) {
    // nop
  }

  gate_guard(const gate_guard&) = delete;
  gate_guard& operator=(const gate_guard&) = delete;

  ~gate_guard() {
    gate_->open();
  }

private:
  std::shared_ptr<gate> gate_;
};

/// Counts the library's log lines instead of printing them (handler
/// failures are logged), and restores a stderr sink when done.
class log_capture {
public:
  log_capture() : lines_(std::make_shared<std::atomic<size_t>>(0)) {
    set_log_sink([lines = lines_](log_level, std::string_view) {
      ++*lines;
    });
  }

  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  ~log_capture() {
    set_log_sink([](log_level level, std::string_view text) {
      std::cerr << "[eventsource " << to_string(level) << "] " << text << '\n';
    });
  }

  size_t lines() const {
    return *lines_;
  }

private:
  std::shared_ptr<std::atomic<size_t>> lines_;
};

/// An actor system on CAF's threaded scheduler with the blocking facade.
struct bus_fixture {
  /// First member: outlives the actor system, whose threads may log.
  log_capture logged;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  event_bus_ptr bus;

  bus_fixture() : sys(init(cfg)), bus(make_in_process_bus(sys)) {
    // nop
  }

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    add_bus_module(cfg);
    cfg.set("scheduler.max-threads", 2);
    return cfg;
  }
};

} // namespace es::test
