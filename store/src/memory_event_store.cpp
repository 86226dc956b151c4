#include "es/store/memory_event_store.hpp"

#include "es/store/errors.hpp"

#include "append_rules.hpp"

#include <algorithm>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace es {

namespace {

struct stream_hash {
  size_t operator()(const stream_id& x) const noexcept {
    return std::hash<std::string>{}(x.aggregate_type) * 31
           + std::hash<uuid>{}(x.aggregate_id);
  }
};

class memory_event_store final : public event_store {
public:
  explicit memory_event_store(memory_store_config cfg) : cfg_(std::move(cfg)) {
    // nop
  }

  std::string name() const override {
    return "memory";
  }

  bool blocking() const override {
    return false;
  }

  const store_limits& limits() const override {
    return cfg_.limits;
  }

  caf::expected<append_result> append(const stream_id& stream,
                                      expected_version expected,
                                      event_batch events) override {
    detail::metrics_counter::call_timer timer{metrics_};
    if (auto err = detail::normalize_append(stream, expected, events,
                                            cfg_.limits, cfg_.registry.get())) {
      metrics_.count(err);
      return err;
    }
    std::unique_lock guard{mtx_};
    auto res = append_locked(stream, expected, std::move(events));
    metrics_.count(res);
    if (res && !res->deduplicated)
      metrics_.count_transaction(1);
    return res;
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    detail::metrics_counter::call_timer timer{metrics_};
    auto invalid
      = detail::normalize_requests(requests, cfg_.limits, cfg_.registry.get());
    std::vector<caf::expected<append_result>> results;
    results.reserve(requests.size());
    std::unique_lock guard{mtx_};
    for (size_t i = 0; i < requests.size(); ++i) {
      auto& req = requests[i];
      if (invalid[i])
        results.emplace_back(std::move(invalid[i]));
      else
        results.emplace_back(
          append_locked(req.stream, req.expected, std::move(req.events)));
      metrics_.count(results.back());
    }
    metrics_.count_transaction(requests.size());
    return results;
  }

  caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests) override {
    detail::metrics_counter::call_timer timer{metrics_};
    if (auto err = detail::normalize_atomic(requests, cfg_.limits,
                                            cfg_.registry.get())) {
      metrics_.count(err);
      return err;
    }
    std::vector<caf::expected<append_result>> results;
    results.reserve(requests.size());
    std::unique_lock guard{mtx_};
    auto mark = log_.size();
    bool failed = false;
    for (auto& req : requests) {
      results.emplace_back(
        append_locked(req.stream, req.expected, std::move(req.events)));
      failed = failed || !results.back();
    }
    if (failed)
      undo_to(mark);
    auto answer = detail::settle_atomic(std::move(results));
    if (!answer) {
      metrics_.count(answer.error());
      return answer;
    }
    bool wrote = false;
    for (const auto& res : *answer) {
      metrics_.count(res);
      wrote = wrote || !res.deduplicated;
    }
    if (wrote)
      metrics_.count_transaction(answer->size());
    return answer;
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& opts) override {
    auto page = detail::page_size(opts.max_count, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = *page;
    std::shared_lock guard{mtx_};
    all_slice result;
    auto matches = [&](size_t index) {
      const auto& ev = log_[index];
      return ev.global_position > opts.after_position
             && opts.filter.matches(ev);
    };
    std::vector<size_t> chain;
    if (auto i = by_id_.find(correlation_id);
        i != by_id_.end() && matches(i->second))
      chain.push_back(i->second);
    if (auto i = correlated_.find(correlation_id); i != correlated_.end())
      for (auto index : i->second)
        if (matches(index) && (chain.empty() || chain.front() != index))
          chain.push_back(index);
    std::sort(chain.begin(), chain.end());
    result.end_of_feed = chain.size() <= count;
    if (chain.size() > count)
      chain.resize(count);
    for (auto index : chain)
      result.events.push_back(log_[index]);
    result.next_position
      = result.end_of_feed
          ? std::max(opts.after_position, static_cast<int64_t>(log_.size()))
          : result.events.back().global_position;
    metrics_.count_read(result.events.size());
    return result;
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& opts) override {
    auto page = detail::page_size(opts.max_count, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = *page;
    std::shared_lock guard{mtx_};
    stream_slice result;
    auto i = streams_.find(stream);
    if (i == streams_.end())
      return result;
    const auto& idx = i->second;
    auto version = static_cast<int64_t>(idx.size());
    std::vector<detail::control_event> controls;
    if (auto c = controls_.find(stream); c != controls_.end())
      for (auto pos : c->second)
        controls.push_back({log_[pos].event_type, log_[pos].aggregate_version,
                            log_[pos].payload});
    auto vis = detail::visibility_of(version, controls);
    if (vis.deleted)
      return detail::make_stream_deleted(stream,
                                         !controls.empty()
                                           && controls.back().event_type
                                                == stream_tombstoned_type,
                                         log_[idx.back()].tenant_id);
    result.stream_version = version;
    result.first_version = vis.first_version;
    if (opts.direction == read_direction::forwards) {
      auto from = std::max<int64_t>(opts.from_version, vis.first_version);
      auto to
        = opts.to_version > 0 ? std::min(opts.to_version, version) : version;
      auto v = from;
      for (; v <= to && result.events.size() < count; ++v)
        result.events.push_back(log_[idx[v - 1]]);
      result.next_version = v;
      result.end_of_stream = v > to;
    } else {
      auto from = opts.from_version > 0 ? std::min(opts.from_version, version)
                                        : version;
      auto lowest = std::max<int64_t>(opts.to_version, vis.first_version);
      auto v = from;
      for (; v >= lowest && result.events.size() < count; --v)
        result.events.push_back(log_[idx[v - 1]]);
      result.next_version = v;
      result.end_of_stream = v < lowest;
    }
    metrics_.count_read(result.events.size());
    return result;
  }

  caf::expected<all_slice> read_all(const read_all_options& opts) override {
    auto page = detail::feed_page_size(opts, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = *page;
    std::shared_lock guard{mtx_};
    all_slice result;
    auto head = static_cast<int64_t>(log_.size());
    auto pos = opts.after_position;
    while (pos < head && result.events.size() < count) {
      const auto& ev = log_[static_cast<size_t>(pos)];
      ++pos;
      if (opts.filter.matches(ev))
        result.events.push_back(ev);
    }
    result.next_position = std::max(pos, opts.after_position);
    result.end_of_feed = pos >= head;
    metrics_.count_read(result.events.size());
    return result;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    std::shared_lock guard{mtx_};
    auto i = streams_.find(stream);
    if (i == streams_.end())
      return int64_t{0};
    detail::stream_head head;
    head.set_last_type(log_[i->second.back()].event_type);
    if (head.deleted || head.tombstoned)
      return detail::make_stream_deleted(stream, head.tombstoned,
                                         log_[i->second.back()].tenant_id);
    return static_cast<int64_t>(i->second.size());
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    std::shared_lock guard{mtx_};
    auto i = by_id_.find(event_id);
    if (i == by_id_.end())
      return std::optional<recorded_event>{};
    return std::optional<recorded_event>{log_[i->second]};
  }

  caf::expected<int64_t> head_position() override {
    std::shared_lock guard{mtx_};
    return static_cast<int64_t>(log_.size());
  }

  store_metrics metrics() const override {
    return metrics_.snapshot();
  }

private:
  caf::expected<append_result> append_locked(const stream_id& stream,
                                             expected_version expected,
                                             event_batch events) {
    auto lookup = [this](const uuid& id)
      -> caf::expected<std::optional<detail::stored_location>> {
      auto i = by_id_.find(id);
      if (i == by_id_.end())
        return std::optional<detail::stored_location>{};
      const auto& ev = log_[i->second];
      return std::optional<detail::stored_location>{detail::stored_location{
        ev.stream(), ev.aggregate_version, ev.global_position,
        detail::content_digest(ev)}};
    };
    auto replay = detail::check_replay(stream, events, lookup, true);
    if (!replay)
      return std::move(replay.error());
    if (*replay)
      return std::move(**replay);
    detail::stream_head head;
    auto& idx = streams_[stream];
    if (!idx.empty()) {
      head.version = static_cast<int64_t>(idx.size());
      head.tenant_id = log_[idx.back()].tenant_id;
      head.set_last_type(log_[idx.back()].event_type);
    }
    if (auto err
        = detail::check_and_assign_versions(stream, expected, head, events)) {
      if (idx.empty())
        streams_.erase(stream);
      return err;
    }
    append_result result;
    result.stream = stream;
    result.first_version = events.front().aggregate_version;
    result.last_version = events.back().aggregate_version;
    result.first_position = static_cast<int64_t>(log_.size()) + 1;
    for (auto& ev : events) {
      recorded_event rec;
      static_cast<event_data&>(rec) = std::move(ev);
      rec.global_position = static_cast<int64_t>(log_.size()) + 1;
      by_id_.emplace(rec.event_id, log_.size());
      if (rec.correlation_id)
        correlated_[*rec.correlation_id].push_back(log_.size());
      if (is_stream_control_type(rec.event_type))
        controls_[stream].push_back(log_.size());
      idx.push_back(log_.size());
      log_.push_back(std::move(rec));
    }
    result.last_position = static_cast<int64_t>(log_.size());
    return result;
  }

  /// Removes every event from position `mark` + 1 on: an atomic append
  /// that failed after writing some of its requests.
  void undo_to(size_t mark) {
    while (log_.size() > mark) {
      const auto& ev = log_.back();
      by_id_.erase(ev.event_id);
      if (ev.correlation_id) {
        auto i = correlated_.find(*ev.correlation_id);
        i->second.pop_back();
        if (i->second.empty())
          correlated_.erase(i);
      }
      if (is_stream_control_type(ev.event_type)) {
        auto c = controls_.find(ev.stream());
        c->second.pop_back();
        if (c->second.empty())
          controls_.erase(c);
      }
      auto j = streams_.find(ev.stream());
      j->second.pop_back();
      if (j->second.empty())
        streams_.erase(j);
      log_.pop_back();
    }
  }

  memory_store_config cfg_;
  detail::metrics_counter metrics_;
  mutable std::shared_mutex mtx_;
  /// The global feed; element i has position i + 1.
  std::deque<recorded_event> log_;
  /// Indexes into `log_` per stream, in version order.
  std::unordered_map<stream_id, std::vector<size_t>, stream_hash> streams_;
  std::unordered_map<uuid, size_t> by_id_;
  /// Indexes into `log_` of each stream's control events.
  std::unordered_map<stream_id, std::vector<size_t>, stream_hash> controls_;
  /// Indexes into `log_` per correlation id, in position order.
  std::unordered_map<uuid, std::vector<size_t>> correlated_;
};

} // namespace

event_store_ptr make_memory_event_store(memory_store_config config) {
  return std::make_shared<memory_event_store>(std::move(config));
}

} // namespace es
