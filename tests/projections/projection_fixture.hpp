// Projections under test: a recording projection, decorators that fail on
// purpose, and a deterministic actor system with a store, a store actor and
// a bus.
#pragma once

#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>

namespace es::test {

/// Records what it handled; fails on chosen positions a chosen number of
/// times (forever with -1).
class recording_projection : public projection {
public:
  explicit recording_projection(std::string name,
                                std::vector<std::string> types = {})
    : name_(std::move(name)), types_(std::move(types)) {
    // nop
  }

  std::string name() const override {
    return name_;
  }

  std::vector<std::string> subscribed_to() const override {
    return types_;
  }

  caf::error handle(const recorded_event& ev) override {
    std::lock_guard guard{mtx_};
    auto i = failures_.find(ev.global_position);
    if (i != failures_.end() && i->second != 0) {
      if (i->second > 0)
        --i->second;
      ++attempts_[ev.global_position];
      return make_store_error(
        i->second < 0 || transient_ ? store_errc::storage_busy
                                    : store_errc::storage_busy,
        "refusing position " + std::to_string(ev.global_position));
    }
    if (throw_at_.count(ev.global_position) > 0)
      throw std::runtime_error("boom at " + std::to_string(ev.global_position));
    ++attempts_[ev.global_position];
    seen_.push_back(ev.global_position);
    return caf::none;
  }

  caf::error reset() override {
    std::lock_guard guard{mtx_};
    seen_.clear();
    ++resets_;
    return caf::none;
  }

  /// Fails position `pos` `times` times (-1: always), with a retryable
  /// error.
  void fail_at(int64_t pos, int times) {
    std::lock_guard guard{mtx_};
    failures_[pos] = times;
  }

  void throw_at(int64_t pos) {
    std::lock_guard guard{mtx_};
    throw_at_.insert(pos);
  }

  std::vector<int64_t> seen() const {
    std::lock_guard guard{mtx_};
    return seen_;
  }

  int attempts(int64_t pos) const {
    std::lock_guard guard{mtx_};
    auto i = attempts_.find(pos);
    return i == attempts_.end() ? 0 : i->second;
  }

  int resets() const {
    std::lock_guard guard{mtx_};
    return resets_;
  }

private:
  std::string name_;
  std::vector<std::string> types_;
  mutable std::mutex mtx_;
  std::vector<int64_t> seen_;
  std::map<int64_t, int> failures_;
  std::map<int64_t, int> attempts_;
  std::set<int64_t> throw_at_;
  bool transient_ = true;
  int resets_ = 0;
};

struct projection_test_config : caf::actor_system_config {
  projection_test_config() {
    add_projections_module(*this);
    set("scheduler.policy", caf::atom("testing"));
  }
};

/// A deterministic system: memory store, cooperative store actor publishing
/// to an in-process bus.
struct projection_fixture {
  projection_test_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched
    = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  caf::scoped_actor self{sys};
  event_store_ptr store = make_memory_event_store();
  bus_actor bus = spawn_in_process_bus(sys);
  store_actor writer;
  std::vector<projection_actor_handle> spawned;

  projection_fixture() {
    start_writer();
  }

  /// The same on another store.
  explicit projection_fixture(event_store_ptr s) : store(std::move(s)) {
    start_writer();
  }

  void start_writer() {
    store_actor_config sc;
    sc.detached = false;
    sc.bus = bus;
    writer = spawn_store_actor(sys, store, sc);
  }

  ~projection_fixture() {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    self->send_exit(caf::actor_cast<caf::actor>(writer),
                    caf::exit_reason::user_shutdown);
    self->send_exit(bus, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Appends directly (no bus): events written "by another process".
  void append_direct(int n) {
    auto s = new_stream();
    REQUIRE(store->append(s, expected_version::any(), make_batch(s, n)));
  }

  /// Appends through the store actor, which publishes to the bus.
  void append_published(int n, const std::string& type = "ItemAdded") {
    auto s = new_stream();
    event_batch batch;
    for (int i = 0; i < n; ++i)
      batch.push_back(make_test_event(s, i, type));
    self->send(writer, append_atom_v,
               append_request{s, expected_version::any(), batch});
  }

  subscription_config config(bool with_bus = true) {
    subscription_config c;
    c.store = store;
    if (with_bus)
      c.bus = bus;
    c.page_size = 7;
    c.errors.retry.initial_delay = std::chrono::milliseconds(10);
    c.errors.retry.max_retries = 2;
    c.errors.retry.jitter = 0;
    return c;
  }

  projection_actor_handle spawn(projection_ptr p, subscription_config c) {
    auto a = spawn_projection_actor(sys, std::move(p), std::move(c));
    spawned.push_back(a);
    sched.run();
    return a;
  }

  projection_status status(const projection_actor_handle& a) {
    auto h = self->request(a, caf::infinite, status_atom_v);
    sched.run();
    projection_status result;
    h.receive(
      [&](projection_status& s) {
        result = std::move(s);
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
    return result;
  }

  /// Advances the clock in small steps so retry timers fire.
  void advance(caf::timespan total,
               caf::timespan step = std::chrono::milliseconds(5)) {
    for (caf::timespan t{0}; t < total; t += step) {
      sched.advance_time(step);
      sched.run();
    }
  }

  std::vector<int64_t> range(int64_t from, int64_t to) {
    std::vector<int64_t> result;
    for (auto i = from; i <= to; ++i)
      result.push_back(i);
    return result;
  }
};

} // namespace es::test
