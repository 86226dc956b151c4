// The collectors, sample events and helpers of the bus contract suite
// (es/testing/bus_contract.hpp), also for a bus's own tests.
//
// Part of the header-only contract suite: it includes <catch2/catch.hpp>,
// so only Catch2 v2 test programs include it; the es::testing library does
// not.
#pragma once

#include "es/bus/event_bus.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/supervision/actors.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace es::testing::bus_contract {

/// How long a test waits for events that must arrive.
inline constexpr auto arrival_timeout = std::chrono::seconds(20);

/// Records what a handler saw; waits for counts with a timeout. Handlers
/// share the record, so a delivery still under way when a test ends early
/// (a failed REQUIRE before the bus stopped) finds it alive.
class collector {
public:
  void add(const recorded_event& ev) {
    record_->add(ev);
  }

  /// A handler that records and succeeds.
  event_handler_fn handler() {
    return [record = record_](const recorded_event& ev) {
      record->add(ev);
      return caf::error{};
    };
  }

  /// Waits until `n` distinct events arrived; false on timeout.
  bool wait_for(size_t n) {
    auto& r = *record_;
    std::unique_lock guard{r.mtx};
    return r.cv.wait_for(guard, arrival_timeout, [&] {
      return r.distinct_locked() >= n;
    });
  }

  std::vector<recorded_event> events() const {
    std::lock_guard guard{record_->mtx};
    return record_->events;
  }

  /// Event ids seen, each once.
  std::set<uuid> ids() const {
    std::lock_guard guard{record_->mtx};
    std::set<uuid> result;
    for (const auto& ev : record_->events)
      result.insert(ev.event_id);
    return result;
  }

  size_t distinct() const {
    std::lock_guard guard{record_->mtx};
    return record_->distinct_locked();
  }

private:
  struct record {
    std::mutex mtx;
    std::condition_variable cv;
    std::vector<recorded_event> events;

    void add(const recorded_event& ev) {
      std::lock_guard guard{mtx};
      events.push_back(ev);
      cv.notify_all();
    }

    size_t distinct_locked() const {
      std::set<uuid> seen;
      for (const auto& ev : events)
        seen.insert(ev.event_id);
      return seen.size();
    }
  };

  std::shared_ptr<record> record_ = std::make_shared<record>();
};

/// Subscribes to the types given at construction.
class typed_collector : public event_subscriber {
public:
  explicit typed_collector(std::vector<std::string> types)
    : types_(std::move(types)) {
    // nop
  }

  std::vector<std::string> subscribed_to() const override {
    return types_;
  }

  caf::error handle(const recorded_event& ev) override {
    seen.add(ev);
    return caf::none;
  }

  collector seen;

private:
  std::vector<std::string> types_;
};

/// `aggregates` streams with `per_aggregate` events each, interleaved
/// (a1v1, a2v1, ..., a1v2, ...), at global positions from `first`;
/// event types cycle through `types`.
inline recorded_events
make_events(int aggregates, int per_aggregate, int64_t first = 1,
            const std::vector<std::string>& types = {"ItemAdded"}) {
  std::vector<uuid> ids;
  for (int a = 0; a < aggregates; ++a)
    ids.push_back(uuid::random());
  auto now = std::chrono::time_point_cast<timestamp::duration>(
    std::chrono::system_clock::now());
  recorded_events result;
  auto pos = first;
  for (int v = 1; v <= per_aggregate; ++v)
    for (int a = 0; a < aggregates; ++a) {
      recorded_event ev;
      ev.event_id = uuid::random();
      ev.event_type = types[static_cast<size_t>(pos) % types.size()];
      ev.event_version = 1;
      ev.aggregate_type = "Order";
      ev.aggregate_id = ids[static_cast<size_t>(a)];
      ev.aggregate_version = v;
      ev.global_position = pos++;
      ev.occurred_at = now;
      ev.correlation_id = uuid::random();
      ev.actor_id = "contract";
      ev.metadata = R"({"source":"bus-contract"})";
      // Compact JSON with UTF-8 as is: what the codecs write and the
      // stores hold, so it comes back byte for byte from any bus.
      ev.payload = "{\"sku\":\"pen \xc3\xa9\",\"quantity\":" + std::to_string(v)
                   + ",\"aggregate\":" + std::to_string(a) + "}";
      result.push_back(std::move(ev));
    }
  return result;
}

/// Publishes `events` in batches of `batch`.
inline void publish_all(event_bus& bus, const recorded_events& events,
                        size_t batch = 10) {
  for (size_t i = 0; i < events.size(); i += batch) {
    recorded_events part(
      events.begin() + static_cast<ptrdiff_t>(i),
      events.begin()
        + static_cast<ptrdiff_t>(std::min(events.size(), i + batch)));
    auto err = bus.publish(std::move(part));
    INFO(describe(err));
    REQUIRE_FALSE(err);
  }
}

inline void require_started(event_bus& bus) {
  auto err = bus.start();
  INFO(describe(err));
  REQUIRE_FALSE(err);
}

/// The events of `all` whose ids are in `ids`.
inline std::set<uuid> ids_of(const recorded_events& all) {
  std::set<uuid> result;
  for (const auto& ev : all)
    result.insert(ev.event_id);
  return result;
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; for states
/// nothing announces (a supervisor's restart, a broker's counters).
template <class F>
bool eventually(F cond,
                std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// What a broker bus's supervisor reports about its consumers.
inline std::vector<child_status> children_of(caf::actor_system& sys,
                                             const supervisor_actor& sup) {
  caf::scoped_actor self{sys};
  std::vector<child_status> result;
  self->request(sup, caf::infinite, children_atom_v)
    .receive(
      [&](std::vector<child_status>& xs) {
        result = std::move(xs);
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
  return result;
}

/// The running consumer of `group` under a broker bus's supervisor.
inline caf::actor consumer_of(caf::actor_system& sys,
                              const supervisor_actor& sup,
                              const std::string& group) {
  caf::scoped_actor self{sys};
  caf::actor result;
  self->request(sup, caf::infinite, child_atom_v, "consumer:" + group)
    .receive(
      [&](caf::actor& a) {
        result = std::move(a);
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
  return result;
}

} // namespace es::testing::bus_contract
