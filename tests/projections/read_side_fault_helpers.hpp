// Faults of the read side under test: a feed with holes, projections whose
// handler fails with chosen store errors, a projection with a registry, and
// bounded scheduler runs that turn a busy loop into a failed check.
#pragma once

#include "es/projections/projection.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"

#include <caf/scheduler/test_coordinator.hpp>

#include "projection_fixture.hpp"
#include "read_model_helpers.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace es::test {

/// An event store whose `read_all` leaves out chosen positions, as a feed
/// with holes would (damage, partial restores, erasure); `next_position`
/// still covers them. Counts the calls of `read_all`, and fails every call
/// beyond a budget (or from a chosen call on), so a reader that spins ends
/// with an error instead of hanging the test. Thread-safe.
class holey_store : public event_store {
public:
  explicit holey_store(event_store_ptr inner) : inner_(std::move(inner)) {
    // nop
  }

  /// Leaves `pos` out of every later read.
  void hide(int64_t pos) {
    std::lock_guard guard{mtx_};
    hidden_.insert(pos);
  }

  /// Shows `pos` again: the hole filled.
  void reveal(int64_t pos) {
    std::lock_guard guard{mtx_};
    hidden_.erase(pos);
  }

  /// Calls of `read_all` so far.
  int reads() const {
    return reads_;
  }

  /// Calls beyond this many fail with `internal` (a spin, not a fault).
  std::atomic<int> budget{1000};

  /// From this call on (counting from 1), every call fails with
  /// `connection_failed`; -1: never.
  std::atomic<int> fail_from{-1};

  std::string name() const override {
    return "holey";
  }

  caf::expected<append_result> append(const stream_id& s, expected_version e,
                                      event_batch events) override {
    return inner_->append(s, e, std::move(events));
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& s, const read_stream_options& o) override {
    return inner_->read_stream(s, o);
  }

  caf::expected<all_slice> read_all(const read_all_options& o) override {
    auto n = ++reads_;
    if (n > budget)
      return make_store_error(store_errc::internal,
                              "read_all called " + std::to_string(n)
                                + " times: the reader spins");
    if (fail_from > 0 && n >= fail_from)
      return make_store_error(store_errc::connection_failed,
                              "injected read failure");
    auto page = inner_->read_all(o);
    if (!page)
      return page;
    std::lock_guard guard{mtx_};
    std::erase_if(page->events, [this](const recorded_event& ev) {
      return hidden_.count(ev.global_position) > 0;
    });
    return page;
  }

  caf::expected<int64_t> stream_version(const stream_id& s) override {
    return inner_->stream_version(s);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& id) override {
    return inner_->find_event(id);
  }

  caf::expected<int64_t> head_position() override {
    return inner_->head_position();
  }

  store_metrics metrics() const override {
    return inner_->metrics();
  }

  const store_limits& limits() const override {
    return inner_->limits();
  }

private:
  event_store_ptr inner_;
  mutable std::mutex mtx_;
  std::set<int64_t> hidden_;
  std::atomic<int> reads_{0};
};

/// A recording projection whose handler fails on chosen positions with a
/// chosen store error, every time.
class failing_projection : public recording_projection {
public:
  using recording_projection::recording_projection;

  void fail_with(int64_t pos, store_errc code) {
    std::lock_guard guard{mtx_};
    codes_[pos] = code;
  }

  /// Calls of the handler for `pos`, failed or not.
  int calls(int64_t pos) const {
    std::lock_guard guard{mtx_};
    auto i = calls_.find(pos);
    return i == calls_.end() ? 0 : i->second;
  }

  caf::error handle(const recorded_event& ev) override {
    {
      std::lock_guard guard{mtx_};
      ++calls_[ev.global_position];
      auto i = codes_.find(ev.global_position);
      if (i != codes_.end())
        return make_store_error(i->second,
                                "injected failure at position "
                                  + std::to_string(ev.global_position));
    }
    return recording_projection::handle(ev);
  }

private:
  mutable std::mutex mtx_;
  std::map<int64_t, store_errc> codes_;
  std::map<int64_t, int> calls_;
};

/// A counting read model whose handler reports a failing disk
/// (`io_error`) at one position.
class disk_failing_read_model : public counting_read_model {
public:
  using counting_read_model::counting_read_model;

  caf::error handle(sql_transaction& tx, const recorded_event& ev) override {
    if (ev.global_position == fail_at)
      return make_store_error(store_errc::io_error, "disk full");
    return counting_read_model::handle(tx, ev);
  }

  using counting_read_model::handle;

  std::atomic<int64_t> fail_at{-1};
};

/// A declarative projection with the test registry that handles
/// `item_added` only (the registry also knows `note_written`).
class item_view : public declarative_projection {
public:
  explicit item_view(std::shared_ptr<const event_registry> reg)
    : declarative_projection("items", std::move(reg)) {
    on<item_added>([this](const item_added&, const recorded_event& ev) {
      std::lock_guard guard{mtx_};
      seen_.push_back(ev.global_position);
    });
  }

  std::vector<int64_t> seen() const {
    std::lock_guard guard{mtx_};
    return seen_;
  }

private:
  mutable std::mutex mtx_;
  std::vector<int64_t> seen_;
};

/// Appends one event of `type` to `stream` directly; returns its position.
inline int64_t append_one(event_store& store, const stream_id& stream,
                          const std::string& type) {
  auto res = store.append(stream, expected_version::any(),
                          {make_test_event(stream, 0, type)});
  REQUIRE(res);
  return res->last_position;
}

/// Runs the test scheduler until it is idle, and fails the test when that
/// takes more than `max_jobs` jobs: a busy loop shows as a failed check.
inline void run_bounded(caf::scheduler::test_coordinator& sched,
                        size_t max_jobs = 10'000) {
  auto n = sched.run(max_jobs);
  INFO("jobs run: " << n);
  REQUIRE(n < max_jobs);
}

/// Advances the test clock by `total` in steps of `step`, running the
/// scheduler (bounded) after each step so that timers fire.
inline void advance_bounded(caf::scheduler::test_coordinator& sched,
                            caf::timespan total,
                            caf::timespan step = std::chrono::milliseconds(5)) {
  for (caf::timespan t{0}; t < total; t += step) {
    sched.advance_time(step);
    run_bounded(sched);
  }
}

} // namespace es::test
