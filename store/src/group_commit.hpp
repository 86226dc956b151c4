// The leader/follower queue behind group commit, shared by the adapters.
#pragma once

#include "es/store/event_store.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "append_rules.hpp"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace es::detail {

/// One caller's requests on their way through the queue.
struct write_job {
  std::vector<append_request>* requests = nullptr;
  /// Per request: the validation error, or none.
  std::vector<caf::error>* rejected = nullptr;
  /// Filled by the leader, one result per request.
  std::vector<caf::expected<append_result>> results;
  /// All requests or none: the leader writes the job's requests only if
  /// every one of them is accepted (`append_atomic`).
  bool atomic = false;
  bool done = false;
  std::condition_variable cv;
};

/// Callers queue their jobs; the caller at the head becomes a leader and
/// commits the jobs queued behind it (up to `max_group` requests) with one
/// call of the commit function, while the others wait. New callers queue
/// during that commit and form the next group. This is LevelDB's writer
/// queue, used for transactions instead of log writes. With `max_leaders`
/// above one, up to that many groups are committed at once (by different
/// threads, on different connections); a group is claimed in queue order,
/// but groups in flight together may finish in any order.
class group_commit_queue {
public:
  /// Fills every job's `results` (one per request). Called by the leader
  /// without the queue lock.
  using commit_fn = std::function<void(const std::vector<write_job*>&)>;

  group_commit_queue(size_t max_group, commit_fn fn, size_t max_leaders = 1,
                     std::chrono::microseconds gather = {})
    : max_group_(max_group == 0 ? 1 : max_group),
      max_leaders_(max_leaders == 0 ? 1 : max_leaders), gather_(gather),
      commit_(std::move(fn)) {
    // nop
  }

  /// Returns once `job.results` holds the outcome of every request.
  void submit(write_job& job) {
    std::unique_lock guard{mtx_};
    queue_.push_back(&job);
    // A gathering leader waits for the size of the last group: wake it
    // only then, not for every caller on the way (each wake-up is a system
    // call and a context switch).
    if (gathering_ != nullptr && queue_.size() >= last_jobs_)
      gathering_->cv.notify_one();
    while (!job.done && (queue_.front() != &job || leaders_ >= max_leaders_))
      job.cv.wait(guard);
    if (job.done)
      return;
    // Callers whose previous appends just finished are likely on their way
    // back: wait a little for the group to reach the size of the last one.
    if (gather_.count() > 0 && queue_.size() < last_jobs_) {
      gathering_ = &job;
      auto deadline = std::chrono::steady_clock::now() + gather_;
      while (queue_.size() < last_jobs_
             && job.cv.wait_until(guard, deadline) != std::cv_status::timeout)
        ; // re-check
      gathering_ = nullptr;
    }
    // Claim the group: this job and those queued behind it.
    std::vector<write_job*> group;
    size_t requests = 0;
    while (!queue_.empty()) {
      auto* j = queue_.front();
      if (!group.empty() && requests + j->requests->size() > max_group_)
        break;
      group.push_back(j);
      requests += j->requests->size();
      queue_.pop_front();
    }
    ++leaders_;
    last_jobs_ = group.size();
    // Another leader may start on what is left while this group commits.
    if (!queue_.empty() && leaders_ < max_leaders_)
      queue_.front()->cv.notify_one();
    guard.unlock();
    commit_(group);
    guard.lock();
    --leaders_;
    for (auto* j : group) {
      j->done = true;
      if (j != &job)
        j->cv.notify_one();
    }
    if (!queue_.empty())
      queue_.front()->cv.notify_one();
  }

private:
  size_t max_group_;
  size_t max_leaders_;
  std::chrono::microseconds gather_;
  commit_fn commit_;
  std::mutex mtx_;
  /// Jobs not yet claimed by a leader, in arrival order.
  std::deque<write_job*> queue_;
  size_t leaders_ = 0;
  /// Jobs in the last group claimed.
  size_t last_jobs_ = 0;
  /// The leader waiting for its group to fill, if any.
  write_job* gathering_ = nullptr;
};

/// Runs an `append_atomic` call as one all-or-nothing job of `queue`:
/// validates the requests, waits for the job's group to commit, counts the
/// outcome in `metrics` and returns the call's answer.
inline caf::expected<std::vector<append_result>>
append_atomic_through(group_commit_queue& queue,
                      std::vector<append_request> requests,
                      const store_limits& limits,
                      const event_registry* registry,
                      metrics_counter& metrics) {
  metrics_counter::call_timer timer{metrics};
  if (auto err = normalize_atomic(requests, limits, registry)) {
    metrics.count(err);
    return err;
  }
  std::vector<caf::error> rejected(requests.size());
  write_job job;
  job.requests = &requests;
  job.rejected = &rejected;
  job.atomic = true;
  queue.submit(job);
  auto answer = settle_atomic(std::move(job.results));
  if (!answer)
    metrics.count(answer.error());
  else
    for (const auto& res : *answer)
      metrics.count(res);
  return answer;
}

/// Gives every request of `group` its validation error or `err`.
inline void fail_group(const std::vector<write_job*>& group,
                       const caf::error& err) {
  for (auto* j : group) {
    j->results.clear();
    for (size_t i = 0; i < j->requests->size(); ++i)
      j->results.emplace_back((*j->rejected)[i] ? (*j->rejected)[i] : err);
  }
}

} // namespace es::detail
