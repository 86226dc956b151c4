// The leader/follower queue behind group commit, shared by the adapters.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "es/store/event_store.hpp"

namespace es::detail {

/// One caller's requests on their way through the queue.
struct write_job {
  std::vector<append_request>* requests = nullptr;
  /// Per request: the validation error, or none.
  std::vector<caf::error>* rejected = nullptr;
  /// Filled by the leader, one result per request.
  std::vector<caf::expected<append_result>> results;
  bool done = false;
  std::condition_variable cv;
};

/// Callers queue their jobs; the caller at the head becomes the leader and
/// commits the jobs queued behind it (up to `max_group` requests) with one
/// call of the commit function, while the others wait. New callers queue
/// during that commit and form the next group. This is LevelDB's writer
/// queue, used for transactions instead of log writes.
class group_commit_queue {
public:
  /// Fills every job's `results` (one per request). Called by the leader
  /// without the queue lock.
  using commit_fn = std::function<void(const std::vector<write_job*>&)>;

  group_commit_queue(size_t max_group, commit_fn fn)
    : max_group_(max_group == 0 ? 1 : max_group), commit_(std::move(fn)) {
    // nop
  }

  /// Returns once `job.results` holds the outcome of every request.
  void submit(write_job& job) {
    std::unique_lock guard{mtx_};
    queue_.push_back(&job);
    while (!job.done && queue_.front() != &job)
      job.cv.wait(guard);
    if (job.done)
      return;
    std::vector<write_job*> group;
    size_t requests = 0;
    for (auto* j : queue_) {
      if (!group.empty() && requests + j->requests->size() > max_group_)
        break;
      group.push_back(j);
      requests += j->requests->size();
    }
    guard.unlock();
    commit_(group);
    guard.lock();
    for (auto* j : group) {
      queue_.pop_front();
      j->done = true;
      if (j != &job)
        j->cv.notify_one();
    }
    if (!queue_.empty())
      queue_.front()->cv.notify_one();
  }

private:
  size_t max_group_;
  commit_fn commit_;
  std::mutex mtx_;
  std::deque<write_job*> queue_;
};

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
