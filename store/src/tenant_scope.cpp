#include "es/store/tenant_scope.hpp"

#include "es/store/errors.hpp"

#include <algorithm>
#include <utility>

namespace es {

namespace {

// -- deciding whose a stream is -----------------------------------------------

enum class stream_owner {
  /// The stream has no events (or none the store shows).
  none,
  /// Its events are the tenant's.
  tenant,
  /// Its events are another tenant's, or of no tenant.
  other,
};

struct stream_probe {
  stream_owner owner = stream_owner::none;
  /// The stream's version, as the store reported it.
  int64_t version = 0;
};

/// Reads the last event of `stream` from `store` (scoped or not) and tells
/// whose the stream is. All events of a stream share one tenant (the
/// adapters refuse anything else), so the last one decides. Errors: those
/// of `read_stream`, `stream_deleted` included.
caf::expected<stream_probe>
probe_stream(event_store& store, const stream_id& stream, const uuid& tenant) {
  read_stream_options opts;
  opts.direction = read_direction::backwards;
  opts.max_count = 1;
  auto page = store.read_stream(stream, opts);
  if (!page) {
    // A deleted stream: the answer names its tenant.
    if (has_code(page.error(), store_errc::stream_deleted)
        && deleted_stream_tenant(page.error()) != tenant)
      return stream_probe{stream_owner::other, 0};
    return std::move(page.error());
  }
  stream_probe result;
  result.version = page->stream_version;
  if (page->events.empty())
    // A version without a visible last event cannot be attributed: treat
    // the stream as another's rather than guess.
    result.owner
      = page->stream_version == 0 ? stream_owner::none : stream_owner::other;
  else
    result.owner = page->events.front().tenant_id == tenant
                     ? stream_owner::tenant
                     : stream_owner::other;
  return result;
}

caf::error other_tenant_stream(const stream_id& stream) {
  return make_store_error(store_errc::tenant_mismatch,
                          "stream " + to_string(stream)
                            + " belongs to another tenant");
}

/// What the adapters answer for a deletion or truncation of a stream that
/// does not exist: what a scoped caller gets for another tenant's stream.
caf::error no_such_stream(const stream_id& stream) {
  return make_store_error(store_errc::invalid_argument,
                          "stream " + to_string(stream)
                            + " does not exist: nothing to delete or truncate");
}

/// Whether an append carries a stream control event (a deletion or a
/// truncation): the "es." type prefix is the store's own.
bool is_control(const event_batch& events) {
  return !events.empty() && events.front().event_type.rfind("es.", 0) == 0;
}

// -- the scoped event store ---------------------------------------------------

class tenant_event_store final : public event_store {
public:
  tenant_event_store(event_store_ptr inner, uuid tenant)
    : inner_(std::move(inner)), tenant_(tenant) {
    // nop
  }

  const uuid& tenant() const noexcept {
    return tenant_;
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
    if (auto err = claim(events))
      return err;
    bool control = is_control(events);
    auto res = inner_->append(stream, expected, std::move(events));
    return settle(stream, control, std::move(res));
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    std::vector<caf::expected<append_result>> results(requests.size(),
                                                      caf::error{});
    std::vector<append_request> accepted;
    std::vector<size_t> where;
    std::vector<bool> control;
    accepted.reserve(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      if (auto err = claim(requests[i].events)) {
        results[i] = std::move(err);
        continue;
      }
      where.push_back(i);
      control.push_back(is_control(requests[i].events));
      accepted.push_back(std::move(requests[i]));
    }
    if (accepted.empty())
      return results;
    std::vector<stream_id> streams;
    streams.reserve(accepted.size());
    for (const auto& req : accepted)
      streams.push_back(req.stream);
    // One call, so the adapter still commits the requests together.
    auto got = inner_->append_many(std::move(accepted));
    for (size_t k = 0; k < got.size() && k < where.size(); ++k)
      results[where[k]] = settle(streams[k], control[k], std::move(got[k]));
    return results;
  }

  caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests) override {
    for (auto& req : requests)
      if (auto err = claim(req.events))
        return err;
    std::vector<stream_id> streams;
    std::vector<bool> control;
    for (const auto& req : requests) {
      streams.push_back(req.stream);
      control.push_back(is_control(req.events));
    }
    auto res = inner_->append_atomic(std::move(requests));
    if (res) {
      for (size_t k = 0; k < res->size() && k < streams.size(); ++k)
        if ((*res)[k].deduplicated)
          if (auto err = refuse_if_other(streams[k], control[k]))
            return err;
      return res;
    }
    auto& err = res.error();
    if (has_code(err, store_errc::duplicate_event_id))
      return event_id_taken();
    if (has_code(err, store_errc::wrong_expected_version)
        || has_code(err, store_errc::idempotency_conflict)) {
      // Only streams named by a conflict (or, for an idempotency conflict,
      // any stream of the call) can be another tenant's.
      auto named = get_version_conflicts(err);
      for (size_t k = 0; k < streams.size(); ++k) {
        bool involved = named.empty();
        for (const auto& c : named)
          involved = involved || c.stream == to_string(streams[k]);
        if (involved)
          if (auto other = refuse_if_other(streams[k], control[k]))
            return other;
      }
    }
    return res;
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& options) override {
    auto page = inner_->read_stream(stream, options);
    if (!page) {
      // Another tenant's deleted stream reads as missing, like its live
      // streams.
      if (has_code(page.error(), store_errc::stream_deleted)
          && deleted_stream_tenant(page.error()) != tenant_)
        return stream_slice{};
      return page;
    }
    bool visible = true;
    if (!page->events.empty()) {
      for (const auto& ev : page->events)
        visible = visible && ev.tenant_id == tenant_;
    } else if (page->stream_version > 0) {
      auto probe = probe_stream(*inner_, stream, tenant_);
      if (!probe)
        return std::move(probe.error());
      visible = probe->owner == stream_owner::tenant;
    }
    if (!visible)
      return stream_slice{};
    return page;
  }

  caf::expected<all_slice> read_all(const read_all_options& options) override {
    auto opts = options;
    if (auto err = scope_filter(opts.filter))
      return err;
    auto page = inner_->read_all(opts);
    if (page)
      drop_others(page->events);
    return page;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    // The version and the tenant of the last event from one read.
    auto probe = probe_stream(*inner_, stream, tenant_);
    if (!probe)
      return std::move(probe.error());
    return probe->owner == stream_owner::tenant ? probe->version : 0;
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& options) override {
    auto opts = options;
    if (auto err = scope_filter(opts.filter))
      return err;
    auto page = inner_->read_correlated(correlation_id, opts);
    if (page)
      drop_others(page->events);
    return page;
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    auto found = inner_->find_event(event_id);
    if (found && *found && (*found)->tenant_id != tenant_)
      return std::optional<recorded_event>{};
    return found;
  }

  caf::expected<bool> event_exists(const uuid& event_id) override {
    // The inner store's answer says nothing about the tenant.
    auto found = find_event(event_id);
    if (!found)
      return std::move(found.error());
    return found->has_value();
  }

  caf::expected<int64_t> head_position() override {
    return inner_->head_position();
  }

  store_metrics metrics() const override {
    return inner_->metrics();
  }

  store_health check_health() override {
    return inner_->check_health();
  }

  const store_limits& limits() const override {
    return inner_->limits();
  }

private:
  /// Gives events without a tenant the scope's; refuses another tenant's.
  caf::error claim(event_batch& events) const {
    for (const auto& ev : events)
      if (ev.tenant_id && *ev.tenant_id != tenant_)
        return make_store_error(store_errc::tenant_mismatch,
                                "event " + ev.event_id.to_string()
                                  + " names tenant " + ev.tenant_id->to_string()
                                  + ", the store is scoped to tenant "
                                  + tenant_.to_string());
    for (auto& ev : events)
      if (!ev.tenant_id)
        ev.tenant_id = tenant_;
    return caf::none;
  }

  caf::error scope_filter(event_filter& filter) const {
    if (filter.tenant_id && *filter.tenant_id != tenant_)
      return make_store_error(
        store_errc::tenant_mismatch,
        "the filter names tenant " + filter.tenant_id->to_string()
          + ", the store is scoped to tenant " + tenant_.to_string());
    filter.tenant_id = tenant_;
    return caf::none;
  }

  /// Adapters filter by tenant already; this only guards against one that
  /// does not.
  void drop_others(recorded_events& events) const {
    events.erase(std::remove_if(events.begin(), events.end(),
                                [this](const recorded_event& ev) {
                                  return ev.tenant_id != tenant_;
                                }),
                 events.end());
  }

  static caf::error event_id_taken() {
    // The adapter's text names the stream holding the id, which may be
    // another tenant's.
    return make_store_error(store_errc::duplicate_event_id,
                            "an event id of the batch is already stored in "
                            "another stream (event ids are unique across "
                            "tenants)");
  }

  /// Returns `tenant_mismatch` (or, for a deletion, what a missing stream
  /// gives) when `stream` is another tenant's; none otherwise. A retryable
  /// error of the read is returned (the call can be retried); a permanent
  /// one means the stream cannot be read (a deleted stream), so whose it
  /// is cannot be told and none is returned.
  caf::error refuse_if_other(const stream_id& stream, bool control) {
    auto probe = probe_stream(*inner_, stream, tenant_);
    if (!probe) {
      if (is_retryable(probe.error()))
        return std::move(probe.error());
      return caf::none;
    }
    if (probe->owner != stream_owner::other)
      return caf::none;
    return control ? no_such_stream(stream) : other_tenant_stream(stream);
  }

  /// Turns an append's outcome into what the scoped caller may see: a
  /// replay of another tenant's events, or a version conflict with another
  /// tenant's stream, becomes `tenant_mismatch` (no version, no position).
  caf::expected<append_result> settle(const stream_id& stream, bool control,
                                      caf::expected<append_result> res) {
    if (res) {
      if (res->deduplicated)
        if (auto err = refuse_if_other(stream, control))
          return err;
      return res;
    }
    auto& err = res.error();
    if (has_code(err, store_errc::duplicate_event_id))
      return event_id_taken();
    if (has_code(err, store_errc::wrong_expected_version)
        || has_code(err, store_errc::idempotency_conflict)) {
      if (auto other = refuse_if_other(stream, control))
        return other;
      return res;
    }
    if (control && has_code(err, store_errc::tenant_mismatch))
      return no_such_stream(stream);
    return res;
  }

  event_store_ptr inner_;
  uuid tenant_;
};

// -- snapshots ----------------------------------------------------------------

class tenant_snapshot_store final : public snapshot_store {
public:
  tenant_snapshot_store(snapshot_store_ptr inner, event_store_ptr events,
                        uuid tenant)
    : inner_(std::move(inner)), events_(std::move(events)), tenant_(tenant) {
    // nop
  }

  bool blocking() const override {
    return inner_->blocking() || events_->blocking();
  }

  caf::expected<bool> save(const snapshot& snap) override {
    auto owned = owns(snap.stream);
    if (!owned)
      return std::move(owned.error());
    if (!*owned)
      return make_store_error(
        store_errc::tenant_mismatch,
        "stream " + to_string(snap.stream) + " has no events of tenant "
          + tenant_.to_string() + ": its snapshot is not stored");
    return inner_->save(snap);
  }

  caf::expected<std::optional<snapshot>>
  load(const stream_id& stream) override {
    auto owned = owns(stream);
    if (!owned)
      return std::move(owned.error());
    if (!*owned)
      return std::optional<snapshot>{};
    return inner_->load(stream);
  }

  caf::expected<bool> remove(const stream_id& stream) override {
    auto owned = owns(stream);
    if (!owned)
      return std::move(owned.error());
    if (!*owned)
      return false;
    return inner_->remove(stream);
  }

private:
  caf::expected<bool> owns(const stream_id& stream) {
    auto probe = probe_stream(*events_, stream, tenant_);
    if (!probe)
      return std::move(probe.error());
    return probe->owner == stream_owner::tenant;
  }

  snapshot_store_ptr inner_;
  event_store_ptr events_;
  uuid tenant_;
};

// -- checkpoints --------------------------------------------------------------

class tenant_lease final : public projection_lease {
public:
  tenant_lease(projection_lease_ptr inner, std::string name)
    : inner_(std::move(inner)), name_(std::move(name)) {
    // nop
  }

  const std::string& projection() const override {
    return name_;
  }

  caf::error check() override {
    return inner_->check();
  }

private:
  projection_lease_ptr inner_;
  std::string name_;
};

class tenant_checkpoint_store final : public checkpoint_store {
public:
  tenant_checkpoint_store(checkpoint_store_ptr inner, const uuid& tenant)
    : inner_(std::move(inner)), prefix_(tenant_checkpoint_prefix(tenant)) {
    // nop
  }

  bool blocking() const override {
    return inner_->blocking();
  }

  caf::expected<checkpoint> save(const checkpoint& cp) override {
    return strip(inner_->save(prefixed(cp)));
  }

  caf::expected<checkpoint> save_if(const checkpoint& cp,
                                    int64_t expected_position) override {
    return strip(inner_->save_if(prefixed(cp), expected_position));
  }

  caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) override {
    auto lease = inner_->try_lease(prefix_ + name);
    if (!lease)
      return std::move(lease.error());
    return projection_lease_ptr{new tenant_lease(std::move(*lease), name)};
  }

  caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) override {
    auto got = inner_->load(prefix_ + projection);
    if (got && *got)
      (*got)->projection = projection;
    return got;
  }

  caf::expected<bool> reset(const std::string& projection) override {
    return inner_->reset(prefix_ + projection);
  }

  caf::expected<std::vector<checkpoint>> list() override {
    auto all = inner_->list();
    if (!all)
      return all;
    std::vector<checkpoint> result;
    for (auto& cp : *all)
      if (cp.projection.compare(0, prefix_.size(), prefix_) == 0) {
        cp.projection.erase(0, prefix_.size());
        result.push_back(std::move(cp));
      }
    return result;
  }

private:
  checkpoint prefixed(checkpoint cp) const {
    cp.projection.insert(0, prefix_);
    return cp;
  }

  caf::expected<checkpoint> strip(caf::expected<checkpoint> cp) const {
    if (cp && cp->projection.compare(0, prefix_.size(), prefix_) == 0)
      cp->projection.erase(0, prefix_.size());
    return cp;
  }

  checkpoint_store_ptr inner_;
  std::string prefix_;
};

// -- dead letters -------------------------------------------------------------

class tenant_dead_letter_store final : public dead_letter_store {
public:
  tenant_dead_letter_store(dead_letter_store_ptr inner, event_store_ptr events,
                           uuid tenant)
    : inner_(std::move(inner)), events_(std::move(events)), tenant_(tenant) {
    // nop
  }

  bool blocking() const override {
    return inner_->blocking() || events_->blocking();
  }

  caf::expected<int64_t> add(const dead_letter& entry) override {
    auto mine = is_mine(entry);
    if (!mine)
      return std::move(mine.error());
    if (!*mine)
      return make_store_error(store_errc::tenant_mismatch,
                              "event " + entry.event_id.to_string()
                                + " is not an event of tenant "
                                + tenant_.to_string());
    return inner_->add(entry);
  }

  caf::expected<std::optional<dead_letter>> get(int64_t id) override {
    auto got = inner_->get(id);
    if (!got || !*got)
      return got;
    auto mine = is_mine(**got);
    if (!mine)
      return std::move(mine.error());
    if (!*mine)
      return std::optional<dead_letter>{};
    return got;
  }

  caf::expected<std::vector<dead_letter>>
  list(const dead_letter_query& q) override {
    std::vector<dead_letter> result;
    size_t skipped = 0;
    auto err = for_each_mine(q, [&](dead_letter& e) {
      if (skipped < q.offset) {
        ++skipped;
        return true;
      }
      if (result.size() >= q.limit)
        return false;
      result.push_back(std::move(e));
      return result.size() < q.limit;
    });
    if (err)
      return err;
    return result;
  }

  caf::expected<bool> mark_retrying(int64_t id) override {
    auto got = get(id);
    if (!got)
      return std::move(got.error());
    if (!*got)
      return false;
    return inner_->mark_retrying(id);
  }

  caf::expected<bool> mark_resolved(int64_t id,
                                    const std::string& by) override {
    auto got = get(id);
    if (!got)
      return std::move(got.error());
    if (!*got)
      return false;
    return inner_->mark_resolved(id, by);
  }

  caf::expected<dead_letter_stats> stats() override {
    dead_letter_stats result;
    auto err = for_each_mine(dead_letter_query{}, [&](dead_letter& e) {
      ++result.total;
      switch (e.status) {
        case dead_letter_status::failed: ++result.failed; break;
        case dead_letter_status::retrying: ++result.retrying; break;
        case dead_letter_status::resolved: ++result.resolved; break;
      }
      if (e.status != dead_letter_status::resolved) {
        ++result.by_projection[e.projection];
        if (!result.oldest_unresolved
            || e.first_failed_at < *result.oldest_unresolved)
          result.oldest_unresolved = e.first_failed_at;
      }
      return true;
    });
    if (err)
      return err;
    return result;
  }

  caf::expected<int64_t> purge_resolved(std::chrono::seconds) override {
    return make_store_error(store_errc::permission_denied,
                            "a dead-letter store scoped to tenant "
                              + tenant_.to_string()
                              + " cannot purge: purging removes every "
                                "tenant's resolved entries, use the "
                                "unscoped store");
  }

private:
  /// Entries read from the inner store per call while scanning.
  static constexpr size_t scan_page = 500;

  /// Whether `entry`'s event is the tenant's: the event it carries says so,
  /// or, when that does not decode, the stored event with its id.
  caf::expected<bool> is_mine(const dead_letter& entry) {
    if (auto ev = decode_recorded_event(entry.event_data))
      return ev->tenant_id == tenant_
             && (entry.event_id.is_nil() || ev->event_id == entry.event_id);
    auto found = events_->find_event(entry.event_id);
    if (!found)
      return std::move(found.error());
    return *found && (*found)->tenant_id == tenant_;
  }

  /// Calls `fn` for the tenant's entries matching `q` (its limit and
  /// offset aside), oldest first, until `fn` returns false.
  template <class F>
  caf::error for_each_mine(const dead_letter_query& q, F fn) {
    auto page_q = q;
    page_q.limit = scan_page;
    page_q.offset = 0;
    for (;;) {
      auto page = inner_->list(page_q);
      if (!page)
        return std::move(page.error());
      for (auto& e : *page) {
        auto mine = is_mine(e);
        if (!mine)
          return std::move(mine.error());
        if (*mine && !fn(e))
          return caf::none;
      }
      if (page->size() < scan_page)
        return caf::none;
      page_q.offset += page->size();
    }
  }

  dead_letter_store_ptr inner_;
  event_store_ptr events_;
  uuid tenant_;
};

} // namespace

event_store_ptr for_tenant(event_store_ptr store, uuid tenant) {
  if (!store)
    return nullptr;
  return std::make_shared<tenant_event_store>(std::move(store), tenant);
}

std::optional<uuid> scoped_tenant(const event_store& store) {
  if (auto* scoped = dynamic_cast<const tenant_event_store*>(&store))
    return scoped->tenant();
  return std::nullopt;
}

snapshot_store_ptr for_tenant(snapshot_store_ptr snapshots,
                              event_store_ptr events, uuid tenant) {
  if (!snapshots || !events)
    return nullptr;
  return std::make_shared<tenant_snapshot_store>(std::move(snapshots),
                                                 std::move(events), tenant);
}

std::string tenant_checkpoint_prefix(const uuid& tenant) {
  return "tenant/" + tenant.to_string() + "/";
}

checkpoint_store_ptr for_tenant(checkpoint_store_ptr checkpoints, uuid tenant) {
  if (!checkpoints)
    return nullptr;
  return std::make_shared<tenant_checkpoint_store>(std::move(checkpoints),
                                                   tenant);
}

dead_letter_store_ptr for_tenant(dead_letter_store_ptr dead_letters,
                                 event_store_ptr events, uuid tenant) {
  if (!dead_letters || !events)
    return nullptr;
  return std::make_shared<tenant_dead_letter_store>(std::move(dead_letters),
                                                    std::move(events), tenant);
}

} // namespace es
