#include "es/testing/concurrent_writer_store.hpp"

#include <mutex>
#include <utility>

namespace es::testing {

namespace {

class concurrent_writer_store : public event_store {
public:
  concurrent_writer_store(event_store_ptr inner, stream_id stream,
                          event_batch events)
    : inner_(std::move(inner)), stream_(std::move(stream)),
      events_(std::move(events)) {
    // nop
  }

  std::string name() const override {
    return inner_->name();
  }

  bool blocking() const override {
    return inner_->blocking();
  }

  caf::expected<append_result> append(const stream_id& stream,
                                      expected_version expected,
                                      event_batch events) override {
    if (stream == stream_)
      if (auto err = interfere())
        return err;
    return inner_->append(stream, expected, std::move(events));
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    for (const auto& req : requests)
      if (req.stream == stream_) {
        if (auto err = interfere())
          return std::vector<caf::expected<append_result>>(requests.size(),
                                                           err);
        break;
      }
    return inner_->append_many(std::move(requests));
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& options) override {
    return inner_->read_stream(stream, options);
  }

  caf::expected<all_slice> read_all(const read_all_options& options) override {
    return inner_->read_all(options);
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    return inner_->stream_version(stream);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    return inner_->find_event(event_id);
  }

  caf::expected<bool> event_exists(const uuid& event_id) override {
    return inner_->event_exists(event_id);
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
  /// Appends the other writer's events once.
  caf::error interfere() {
    std::lock_guard guard{mtx_};
    if (done_)
      return caf::none;
    done_ = true;
    if (events_.empty())
      return caf::none;
    auto res
      = inner_->append(stream_, expected_version::any(), std::move(events_));
    if (!res)
      return std::move(res.error());
    return caf::none;
  }

  event_store_ptr inner_;
  stream_id stream_;
  std::mutex mtx_;
  event_batch events_;
  bool done_ = false;
};

} // namespace

event_store_ptr make_concurrent_writer_store(event_store_ptr inner,
                                             stream_id stream,
                                             event_batch events) {
  return std::make_shared<concurrent_writer_store>(
    std::move(inner), std::move(stream), std::move(events));
}

} // namespace es::testing
