// The repository: load and save aggregates from code that is not an actor.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/errors.hpp"
#include "es/bus/event_bus.hpp"
#include "es/store/event_store.hpp"

#include <caf/expected.hpp>

#include <memory>
#include <optional>

namespace es {

/// Options of `aggregate_repository`.
struct repository_options {
  std::shared_ptr<const event_registry> registry;
  /// When set, saved events carry this tenant and loading or saving
  /// another tenant's aggregate fails with `store_errc::tenant_mismatch`.
  std::optional<uuid> tenant_id;
  /// When set, saved events are published here after the append committed.
  event_bus_ptr bus;
  /// Events per page when loading.
  size_t page_size = 1000;
};

/// Loads aggregates of class `A` from their streams and saves their new
/// events, with optimistic concurrency: `save` appends with the version the
/// aggregate was loaded at, so a concurrent writer makes it fail with
/// `store_errc::wrong_expected_version` (reload and retry).
///
/// Blocking: use it from threads, not from cooperative actors (actors send
/// commands to an `aggregate_region` instead). Thread-safe as far as the
/// store is; aggregates themselves are not.
template <class A>
class aggregate_repository {
public:
  aggregate_repository(event_store_ptr store, repository_options opts)
    : store_(std::move(store)), opts_(std::move(opts)) {
    // nop
  }

  /// Returns a new aggregate with no events.
  std::unique_ptr<A> create_new(const uuid& id) const {
    auto result = std::make_unique<A>(id, opts_.registry);
    result->set_tenant(opts_.tenant_id);
    return result;
  }

  /// Loads the aggregate from its stream. Errors: `aggregate_not_found`
  /// for a stream without events, `tenant_mismatch`, store errors.
  caf::expected<std::unique_ptr<A>> load(const uuid& id) const {
    auto result = create_new(id);
    read_stream_options ro;
    ro.max_count = opts_.page_size;
    auto err = for_each_in_stream(
      *store_, result->stream(), ro, [&](recorded_event& ev) {
        return in_event_context(result->apply_stored(ev), ev);
      });
    if (err)
      return err;
    if (result->version() == 0)
      return caf::make_error(actors_errc::aggregate_not_found,
                             "no events for " + to_string(result->stream()));
    return result;
  }

  /// Loads the aggregate, or returns a new one if its stream is empty.
  caf::expected<std::unique_ptr<A>> load_or_create(const uuid& id) const {
    auto res = load(id);
    if (!res && has_code(res.error(), actors_errc::aggregate_not_found))
      return create_new(id);
    return res;
  }

  /// Appends the aggregate's uncommitted events (expecting the version it
  /// was loaded at), marks them committed and publishes them. Saving an
  /// aggregate without new events does nothing and returns its version.
  caf::expected<append_result> save(A& agg) const {
    if (opts_.tenant_id && agg.tenant_id() != opts_.tenant_id)
      return make_store_error(store_errc::tenant_mismatch,
                              "aggregate " + to_string(agg.stream())
                                + " belongs to another tenant");
    append_result result;
    result.stream = agg.stream();
    if (!agg.has_uncommitted()) {
      result.first_version = result.last_version = agg.version();
      return result;
    }
    auto events = agg.uncommitted_events();
    auto res = store_->append(
      agg.stream(), expected_version::exact(agg.committed_version()), events);
    if (!res)
      return res;
    agg.mark_committed();
    if (opts_.bus && !res->deduplicated) {
      recorded_events published;
      published.reserve(events.size());
      for (size_t i = 0; i < events.size(); ++i) {
        recorded_event rec;
        static_cast<event_data&>(rec) = std::move(events[i]);
        rec.aggregate_version = res->first_version + static_cast<int64_t>(i);
        rec.global_position = res->first_position + static_cast<int64_t>(i);
        published.push_back(std::move(rec));
      }
      if (auto err = opts_.bus->publish(std::move(published)))
        log(log_level::warning,
            "saved events of " + to_string(agg.stream())
              + " not published: " + describe(err),
            es::log_context{"aggregates"});
    }
    return res;
  }

  /// Returns whether the aggregate's stream has events.
  caf::expected<bool> exists(const uuid& id) const {
    auto v = get_version(id);
    if (!v)
      return std::move(v.error());
    return *v > 0;
  }

  /// Returns the version of the aggregate's stream (0 if it has none).
  caf::expected<int64_t> get_version(const uuid& id) const {
    return store_->stream_version(
      stream_id{std::string{A::aggregate_type}, id});
  }

private:
  event_store_ptr store_;
  repository_options opts_;
};

} // namespace es
