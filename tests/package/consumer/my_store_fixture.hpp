// An event store adapter written outside the framework, as an adapter
// author would start one: it implements the port by keeping an audit count
// of the appends it passed to the store underneath (here the in-memory
// one). The fixture hands the contract suite a new, empty store per call.
#pragma once

#include "es/store/event_store.hpp"
#include "es/store/memory_event_store.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

class audited_store : public es::event_store {
public:
  explicit audited_store(es::event_store_ptr inner)
    : inner_(std::move(inner)) {}

  std::string name() const override {
    return "audited(" + inner_->name() + ")";
  }

  bool blocking() const override {
    return inner_->blocking();
  }

  caf::expected<es::append_result> append(const es::stream_id& stream,
                                          es::expected_version expected,
                                          es::event_batch events) override {
    ++appends_;
    return inner_->append(stream, expected, std::move(events));
  }

  std::vector<caf::expected<es::append_result>>
  append_many(std::vector<es::append_request> requests) override {
    appends_ += requests.size();
    return inner_->append_many(std::move(requests));
  }

  caf::expected<std::vector<es::append_result>>
  append_atomic(std::vector<es::append_request> requests) override {
    appends_ += requests.size();
    return inner_->append_atomic(std::move(requests));
  }

  caf::expected<es::all_slice>
  read_correlated(const es::uuid& correlation_id,
                  const es::read_all_options& options) override {
    return inner_->read_correlated(correlation_id, options);
  }

  caf::expected<es::stream_slice>
  read_stream(const es::stream_id& stream,
              const es::read_stream_options& options) override {
    return inner_->read_stream(stream, options);
  }

  caf::expected<es::all_slice>
  read_all(const es::read_all_options& options) override {
    return inner_->read_all(options);
  }

  caf::expected<int64_t> stream_version(const es::stream_id& stream) override {
    return inner_->stream_version(stream);
  }

  caf::expected<std::optional<es::recorded_event>>
  find_event(const es::uuid& event_id) override {
    return inner_->find_event(event_id);
  }

  caf::expected<int64_t> head_position() override {
    return inner_->head_position();
  }

  es::store_metrics metrics() const override {
    return inner_->metrics();
  }

  const es::store_limits& limits() const override {
    return inner_->limits();
  }

  uint64_t appends() const {
    return appends_;
  }

private:
  es::event_store_ptr inner_;
  std::atomic<uint64_t> appends_{0};
};

struct my_store_fixture {
  es::event_store_ptr open(std::shared_ptr<const es::event_registry> registry
                           = {},
                           es::store_limits limits = {}) {
    es::memory_store_config cfg;
    cfg.registry = std::move(registry);
    cfg.limits = limits;
    return std::make_shared<audited_store>(
      es::make_memory_event_store(std::move(cfg)));
  }
};
