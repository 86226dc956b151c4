// The in-memory state stores and what all adapters share.
#include "es/store/state_stores.hpp"

#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/json.hpp"
#include "es/store/outbox.hpp"

#include "state_common.hpp"

#include <algorithm>
#include <mutex>
#include <set>
#include <unordered_map>

namespace es {

outbox_claim::~outbox_claim() {
  // nop
}

caf::error validate(const outbox_partition& p) {
  if (p.count >= 1 && p.count <= 256 && p.index < p.count)
    return caf::none;
  return make_store_error(store_errc::invalid_argument,
                          "an outbox partition is an index below a count of "
                          "1 to 256, not "
                            + std::to_string(p.index) + " of "
                            + std::to_string(p.count));
}

outbox::~outbox() {
  // nop
}

snapshot_store::~snapshot_store() {
  // nop
}

projection_lease::~projection_lease() {
  // nop
}

checkpoint_store::~checkpoint_store() {
  // nop
}

dead_letter_store::~dead_letter_store() {
  // nop
}

const char* to_string(dead_letter_status x) {
  switch (x) {
    case dead_letter_status::failed: return "failed";
    case dead_letter_status::retrying: return "retrying";
    case dead_letter_status::resolved: return "resolved";
  }
  return "failed";
}

std::optional<dead_letter_status> parse_dead_letter_status(std::string_view x) {
  if (x == "failed")
    return dead_letter_status::failed;
  if (x == "retrying")
    return dead_letter_status::retrying;
  if (x == "resolved")
    return dead_letter_status::resolved;
  return std::nullopt;
}

namespace detail {

caf::error make_checkpoint_conflict(const std::string& projection,
                                    int64_t expected_position,
                                    std::optional<int64_t> found_position) {
  std::string msg = "the checkpoint of projection '" + projection
                    + "' moved under this writer: expected position "
                    + std::to_string(expected_position) + ", found ";
  msg += found_position ? "position " + std::to_string(*found_position)
                        : std::string{"no checkpoint"};
  msg += " (another instance of the projection is running?)";
  return make_store_error(store_errc::checkpoint_conflict, std::move(msg));
}

caf::error check_plain_sql_name(const std::string& name, size_t max_size) {
  bool ok = !name.empty() && name.size() <= max_size;
  for (char c : name)
    ok = ok
         && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
             || (c >= '0' && c <= '9') || c == '_');
  if (!ok)
    return make_store_error(store_errc::invalid_argument,
                            "not a plain SQL name of at most "
                              + std::to_string(max_size)
                              + " letters, digits and _: " + name);
  return caf::none;
}

} // namespace detail

// -- recorded events as JSON --------------------------------------------------

namespace {

/// The JSON form of an envelope. Payload and metadata stay text, so they
/// come back byte for byte.
struct event_json {
  int64_t global_position = 0;
  uuid event_id;
  std::string event_type;
  int32_t event_version = 1;
  uuid aggregate_id;
  std::string aggregate_type;
  int64_t aggregate_version = 0;
  std::optional<uuid> tenant_id;
  int64_t occurred_at_us = 0;
  std::optional<uuid> correlation_id;
  std::optional<uuid> causation_id;
  std::string actor_id;
  std::string metadata;
  std::string payload;
};

template <class F>
bool fields(F& f, event_json& x) {
  return f("global_position", x.global_position) && f("event_id", x.event_id)
         && f("event_type", x.event_type) && f("event_version", x.event_version)
         && f("aggregate_id", x.aggregate_id)
         && f("aggregate_type", x.aggregate_type)
         && f("aggregate_version", x.aggregate_version)
         && f("tenant_id", x.tenant_id) && f("occurred_at_us", x.occurred_at_us)
         && f("correlation_id", x.correlation_id)
         && f("causation_id", x.causation_id) && f("actor_id", x.actor_id)
         && f("metadata", x.metadata) && f("payload", x.payload);
}

} // namespace

std::string encode_recorded_event(const recorded_event& ev) {
  event_json x{ev.global_position,
               ev.event_id,
               ev.event_type,
               ev.event_version,
               ev.aggregate_id,
               ev.aggregate_type,
               ev.aggregate_version,
               ev.tenant_id,
               ev.occurred_at.time_since_epoch().count(),
               ev.correlation_id,
               ev.causation_id,
               ev.actor_id,
               ev.metadata,
               ev.payload};
  auto text = to_json(x);
  return text ? std::move(*text) : std::string{};
}

caf::expected<recorded_event> decode_recorded_event(std::string_view text) {
  auto x = from_json<event_json>(text);
  if (!x)
    return std::move(x.error());
  recorded_event ev;
  ev.global_position = x->global_position;
  ev.event_id = x->event_id;
  ev.event_type = std::move(x->event_type);
  ev.event_version = x->event_version;
  ev.aggregate_id = x->aggregate_id;
  ev.aggregate_type = std::move(x->aggregate_type);
  ev.aggregate_version = x->aggregate_version;
  ev.tenant_id = x->tenant_id;
  ev.occurred_at = timestamp{std::chrono::microseconds{x->occurred_at_us}};
  ev.correlation_id = x->correlation_id;
  ev.causation_id = x->causation_id;
  ev.actor_id = std::move(x->actor_id);
  ev.metadata = std::move(x->metadata);
  ev.payload = std::move(x->payload);
  return ev;
}

// -- memory adapters ----------------------------------------------------------

namespace {

struct stream_hash {
  size_t operator()(const stream_id& x) const noexcept {
    return std::hash<std::string>{}(x.aggregate_type) * 31
           + std::hash<uuid>{}(x.aggregate_id);
  }
};

class memory_snapshot_store final : public snapshot_store {
public:
  bool blocking() const override {
    return false;
  }

  caf::expected<bool> save(const snapshot& snap) override {
    std::lock_guard guard{mtx_};
    auto i = snaps_.find(snap.stream);
    if (i != snaps_.end() && i->second.version > snap.version)
      return false;
    snaps_.insert_or_assign(snap.stream, snap);
    return true;
  }

  caf::expected<std::optional<snapshot>>
  load(const stream_id& stream) override {
    std::lock_guard guard{mtx_};
    auto i = snaps_.find(stream);
    if (i == snaps_.end())
      return std::optional<snapshot>{};
    return std::optional<snapshot>{i->second};
  }

  caf::expected<bool> remove(const stream_id& stream) override {
    std::lock_guard guard{mtx_};
    return snaps_.erase(stream) > 0;
  }

private:
  std::mutex mtx_;
  std::unordered_map<stream_id, snapshot, stream_hash> snaps_;
};

/// The leases of one in-memory checkpoint store, shared with the leases it
/// granted (which may outlive it).
struct memory_lease_table {
  std::mutex mtx;
  std::set<std::string> held;
};

class memory_lease final : public projection_lease {
public:
  memory_lease(std::shared_ptr<memory_lease_table> table, std::string name)
    : table_(std::move(table)), name_(std::move(name)) {
    // nop
  }

  ~memory_lease() override {
    std::lock_guard guard{table_->mtx};
    table_->held.erase(name_);
  }

  const std::string& projection() const override {
    return name_;
  }

  caf::error check() override {
    // Nothing can take it away.
    return caf::none;
  }

private:
  std::shared_ptr<memory_lease_table> table_;
  std::string name_;
};

class memory_checkpoint_store final : public checkpoint_store {
public:
  bool blocking() const override {
    return false;
  }

  caf::expected<checkpoint> save_if(const checkpoint& cp,
                                    int64_t expected_position) override {
    std::lock_guard guard{mtx_};
    auto i = cps_.find(cp.projection);
    if (i == cps_.end()) {
      if (expected_position != 0)
        return detail::make_checkpoint_conflict(
          cp.projection, expected_position, std::nullopt);
    } else if (i->second.position != expected_position) {
      return detail::make_checkpoint_conflict(cp.projection, expected_position,
                                              i->second.position);
    } else if (i->second.position > cp.position) {
      return i->second;
    }
    cps_.insert_or_assign(cp.projection, cp);
    return cp;
  }

  caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) override {
    std::lock_guard guard{leases_->mtx};
    if (!leases_->held.insert(name).second)
      return make_store_error(store_errc::lease_held,
                              "projection '" + name
                                + "' is leased by another holder in this"
                                  " process");
    return projection_lease_ptr{std::make_unique<memory_lease>(leases_, name)};
  }

  caf::expected<checkpoint> save(const checkpoint& cp) override {
    std::lock_guard guard{mtx_};
    auto i = cps_.find(cp.projection);
    if (i != cps_.end() && i->second.position > cp.position)
      return i->second;
    cps_.insert_or_assign(cp.projection, cp);
    return cp;
  }

  caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) override {
    std::lock_guard guard{mtx_};
    auto i = cps_.find(projection);
    if (i == cps_.end())
      return std::optional<checkpoint>{};
    return std::optional<checkpoint>{i->second};
  }

  caf::expected<bool> reset(const std::string& projection) override {
    std::lock_guard guard{mtx_};
    return cps_.erase(projection) > 0;
  }

  caf::expected<std::vector<checkpoint>> list() override {
    std::lock_guard guard{mtx_};
    std::vector<checkpoint> result;
    for (auto& [name, cp] : cps_)
      result.push_back(cp);
    return result;
  }

private:
  std::mutex mtx_;
  std::map<std::string, checkpoint> cps_;
  std::shared_ptr<memory_lease_table> leases_
    = std::make_shared<memory_lease_table>();
};

class memory_dead_letter_store final : public dead_letter_store {
public:
  bool blocking() const override {
    return false;
  }

  caf::expected<int64_t> add(const dead_letter& entry) override {
    std::lock_guard guard{mtx_};
    for (auto& [id, e] : entries_)
      if (e.projection == entry.projection && e.event_id == entry.event_id) {
        ++e.retry_count;
        e.last_failed_at = entry.last_failed_at;
        e.error_message = entry.error_message;
        e.error_context = entry.error_context;
        e.status = dead_letter_status::failed;
        e.resolved_at.reset();
        e.resolved_by.clear();
        return id;
      }
    auto e = entry;
    e.id = next_id_++;
    e.status = dead_letter_status::failed;
    e.resolved_at.reset();
    e.resolved_by.clear();
    entries_.emplace(e.id, e);
    return e.id;
  }

  caf::expected<std::optional<dead_letter>> get(int64_t id) override {
    std::lock_guard guard{mtx_};
    auto i = entries_.find(id);
    if (i == entries_.end())
      return std::optional<dead_letter>{};
    return std::optional<dead_letter>{i->second};
  }

  caf::expected<std::vector<dead_letter>>
  list(const dead_letter_query& q) override {
    std::lock_guard guard{mtx_};
    std::vector<dead_letter> result;
    size_t skipped = 0;
    for (auto& [id, e] : entries_) {
      if (q.projection && e.projection != *q.projection)
        continue;
      if (q.status && e.status != *q.status)
        continue;
      if (skipped++ < q.offset)
        continue;
      if (result.size() >= q.limit)
        break;
      result.push_back(e);
    }
    return result;
  }

  caf::expected<bool> mark_retrying(int64_t id) override {
    std::lock_guard guard{mtx_};
    auto i = entries_.find(id);
    if (i == entries_.end())
      return false;
    i->second.status = dead_letter_status::retrying;
    return true;
  }

  caf::expected<bool> mark_resolved(int64_t id,
                                    const std::string& by) override {
    std::lock_guard guard{mtx_};
    auto i = entries_.find(id);
    if (i == entries_.end())
      return false;
    i->second.status = dead_letter_status::resolved;
    i->second.resolved_at = now_utc();
    i->second.resolved_by = by;
    return true;
  }

  caf::expected<dead_letter_stats> stats() override {
    std::lock_guard guard{mtx_};
    dead_letter_stats result;
    for (auto& [id, e] : entries_) {
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
    }
    return result;
  }

  caf::expected<int64_t> purge_resolved(std::chrono::seconds age) override {
    std::lock_guard guard{mtx_};
    auto limit = now_utc() - age;
    int64_t n = 0;
    for (auto i = entries_.begin(); i != entries_.end();) {
      if (i->second.status == dead_letter_status::resolved
          && i->second.resolved_at && *i->second.resolved_at < limit) {
        i = entries_.erase(i);
        ++n;
      } else {
        ++i;
      }
    }
    return n;
  }

private:
  std::mutex mtx_;
  std::map<int64_t, dead_letter> entries_;
  int64_t next_id_ = 1;
};

} // namespace

snapshot_store_ptr make_memory_snapshot_store() {
  return std::make_shared<memory_snapshot_store>();
}

checkpoint_store_ptr make_memory_checkpoint_store() {
  return std::make_shared<memory_checkpoint_store>();
}

dead_letter_store_ptr make_memory_dead_letter_store() {
  return std::make_shared<memory_dead_letter_store>();
}

} // namespace es
