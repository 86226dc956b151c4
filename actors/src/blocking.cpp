#include "es/actors/blocking.hpp"

#include <caf/scoped_actor.hpp>

namespace es {

namespace {

class actor_event_store final : public event_store {
public:
  actor_event_store(caf::actor_system& sys, store_actor store,
                    std::chrono::milliseconds timeout)
    : sys_(sys), store_(std::move(store)), timeout_(timeout) {
    // nop
  }

  std::string name() const override {
    return "actor";
  }

  const store_limits& limits() const override {
    return limits_;
  }

  caf::expected<append_result> append(const stream_id& stream,
                                      expected_version expected,
                                      event_batch events) override {
    return ask<append_result>(
      append_atom_v, append_request{stream, expected, std::move(events)});
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    // Send every request before waiting for the first answer, so the
    // writer can commit them together.
    caf::scoped_actor self{sys_};
    auto send_one = [&](append_request& req) {
      return self->request(store_, caf::timespan{timeout_}, append_atom_v,
                           std::move(req));
    };
    using handle_type = decltype(send_one(requests.front()));
    std::vector<handle_type> handles;
    handles.reserve(requests.size());
    for (auto& req : requests)
      handles.push_back(send_one(req));
    std::vector<caf::expected<append_result>> results;
    results.reserve(requests.size());
    for (auto& h : handles)
      h.receive(
        [&](append_result& res) {
          results.emplace_back(res);
        },
        [&](caf::error& err) {
          results.emplace_back(translate(err));
        });
    return results;
  }

  caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests) override {
    return ask<std::vector<append_result>>(append_atomic_atom_v,
                                           std::move(requests));
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& opts) override {
    return ask<stream_slice>(read_stream_atom_v, stream, opts);
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& opts) override {
    return ask<all_slice>(read_correlated_atom_v, correlation_id, opts);
  }

  caf::expected<all_slice> read_all(const read_all_options& opts) override {
    return ask<all_slice>(read_all_atom_v, opts);
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    return ask<int64_t>(stream_version_atom_v, stream);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& id) override {
    auto res = ask<recorded_events>(find_event_atom_v, id);
    if (!res)
      return std::move(res.error());
    if (res->empty())
      return std::optional<recorded_event>{};
    return std::optional<recorded_event>{std::move(res->front())};
  }

  caf::expected<int64_t> head_position() override {
    return ask<int64_t>(head_position_atom_v);
  }

  store_metrics metrics() const override {
    auto res = const_cast<actor_event_store*>(this)->ask<store_metrics>(
      metrics_atom_v);
    return res ? *res : store_metrics{};
  }

private:
  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    caf::scoped_actor self{sys_};
    caf::expected<T> result{caf::error{}};
    self->request(store_, caf::timespan{timeout_}, std::forward<Ts>(xs)...)
      .receive(
        [&](T& x) {
          result = std::move(x);
        },
        [&](caf::error& err) {
          result = translate(err);
        });
    return result;
  }

  caf::error translate(caf::error& err) const {
    if (err == caf::sec::request_timeout)
      return make_store_error(store_errc::timeout,
                              "store actor did not answer in "
                                + std::to_string(timeout_.count()) + " ms");
    return std::move(err);
  }

  caf::actor_system& sys_;
  store_actor store_;
  std::chrono::milliseconds timeout_;
  store_limits limits_;
};

} // namespace

event_store_ptr make_actor_event_store(caf::actor_system& sys,
                                       store_actor store,
                                       std::chrono::milliseconds timeout) {
  return std::make_shared<actor_event_store>(sys, std::move(store), timeout);
}

} // namespace es
