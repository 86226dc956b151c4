// The group-commit queue shared by the SQLite and PostgreSQL adapters: one
// or several leaders, group limits, gathering, and every caller answered
// exactly once.
#include "group_commit.hpp"
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace es;
using namespace std::chrono_literals;

namespace {

struct run_stats {
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> groups{0};
  std::atomic<int> oversized{0};
  std::atomic<int64_t> next_position{0};
};

/// A commit function that numbers every request and records concurrency.
detail::group_commit_queue::commit_fn numbering_commit(run_stats& st,
                                                       size_t max_group) {
  return [&st, max_group](const std::vector<detail::write_job*>& group) {
    auto now = ++st.in_flight;
    auto seen = st.max_in_flight.load();
    while (now > seen && !st.max_in_flight.compare_exchange_weak(seen, now))
      ; // retry
    size_t requests = 0;
    for (auto* j : group) {
      requests += j->requests->size();
      j->results.clear();
      for (size_t i = 0; i < j->requests->size(); ++i) {
        append_result res;
        res.first_position = res.last_position = ++st.next_position;
        j->results.emplace_back(res);
      }
    }
    if (group.size() > 1 && requests > max_group)
      ++st.oversized;
    ++st.groups;
    --st.in_flight;
  };
}

/// Submits `per_thread` jobs of `requests` requests from each of `threads`
/// threads; checks every job got one result per request; returns all
/// positions handed out.
std::vector<int64_t> hammer(detail::group_commit_queue& q, int threads,
                            int per_thread, size_t requests) {
  std::mutex mtx;
  std::vector<int64_t> positions;
  std::atomic<int> wrong_counts{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int k = 0; k < per_thread; ++k) {
        std::vector<append_request> reqs(requests);
        std::vector<caf::error> rejected(requests);
        detail::write_job job;
        job.requests = &reqs;
        job.rejected = &rejected;
        q.submit(job);
        if (job.results.size() != requests) {
          ++wrong_counts;
          continue;
        }
        std::lock_guard guard{mtx};
        for (auto& r : job.results)
          positions.push_back(r ? r->first_position : -1);
      }
    });
  for (auto& t : ts)
    t.join();
  CHECK(wrong_counts == 0);
  return positions;
}

void check_each_once(std::vector<int64_t> positions, size_t expected) {
  std::sort(positions.begin(), positions.end());
  REQUIRE(positions.size() == expected);
  for (size_t i = 0; i < positions.size(); ++i)
    CHECK(positions[i] == static_cast<int64_t>(i + 1));
}

} // namespace

TEST_CASE("one leader commits groups one at a time and answers every "
          "caller once",
          "[group_commit]") {
  run_stats st;
  detail::group_commit_queue q{8, numbering_commit(st, 8)};
  auto positions = hammer(q, 12, 60, 2);
  check_each_once(positions, 12 * 60 * 2);
  CHECK(st.max_in_flight == 1);
  CHECK(st.oversized == 0);
  CHECK(st.groups <= 12 * 60);
}

TEST_CASE("several leaders commit groups at once, never more than allowed",
          "[group_commit]") {
  run_stats st;
  // The first group holds its commit until a second group is in flight (or
  // fails the test after a time limit rather than hanging).
  std::mutex mtx;
  std::condition_variable cv;
  bool overlapped = false;
  bool first = true;
  auto numbering = numbering_commit(st, 4);
  detail::group_commit_queue q{
    4,
    [&](const std::vector<detail::write_job*>& group) {
      std::unique_lock guard{mtx};
      if (first) {
        first = false;
        cv.wait_for(guard, 10s, [&] {
          return overlapped;
        });
        guard.unlock();
      } else {
        overlapped = true;
        cv.notify_all();
        guard.unlock();
      }
      numbering(group);
    },
    3};
  auto positions = hammer(q, 12, 60, 1);
  check_each_once(positions, 12 * 60);
  CHECK(overlapped);
  CHECK(st.max_in_flight <= 3);
  CHECK(st.oversized == 0);
}

TEST_CASE("a leader gathering for a bigger group still answers every caller "
          "once",
          "[group_commit]") {
  run_stats st;
  detail::group_commit_queue q{64, numbering_commit(st, 64), 1, 200us};
  auto positions = hammer(q, 16, 50, 1);
  check_each_once(positions, 16 * 50);
  CHECK(st.max_in_flight == 1);
  // A lone caller afterwards is not held back by the last group's size
  // forever: it gets its answer.
  auto alone = hammer(q, 1, 3, 1);
  CHECK(alone.size() == 3);
}
