#include "es/store/postgres_event_store.hpp"

#include "es/store/errors.hpp"

#include "append_rules.hpp"
#include "group_commit.hpp"
#include "postgres/connection.hpp"
#include "postgres/pool.hpp"
#include "postgres/schema.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace es {

namespace {

using detail::pg::connection;
using detail::pg::params;
using detail::pg::pool;
using detail::pg::result;

constexpr const char* event_columns
  = "e.global_position, e.event_id, e.event_type, e.event_version,"
    " e.aggregate_type, e.aggregate_id, e.aggregate_version, e.tenant_id,"
    " e.occurred_at, e.correlation_id, e.causation_id, e.actor_id,"
    " e.metadata, e.payload";

/// Reads the event columns starting at column `c` (binary format).
recorded_event read_event(const result& r, int row, int c) {
  recorded_event ev;
  ev.global_position = r.int8(row, c + 0);
  ev.event_id = r.uuid_at(row, c + 1);
  ev.event_type = r.text(row, c + 2);
  ev.event_version = r.int4(row, c + 3);
  ev.aggregate_type = r.text(row, c + 4);
  ev.aggregate_id = r.uuid_at(row, c + 5);
  ev.aggregate_version = r.int8(row, c + 6);
  ev.tenant_id = r.opt_uuid(row, c + 7);
  ev.occurred_at = r.time_at(row, c + 8);
  ev.correlation_id = r.opt_uuid(row, c + 9);
  ev.causation_id = r.opt_uuid(row, c + 10);
  ev.actor_id = r.text(row, c + 11);
  ev.metadata = r.text(row, c + 12);
  ev.payload = r.text(row, c + 13);
  return ev;
}

/// One statement of a pipeline.
struct call {
  const char* name;
  const std::string* sql;
  params ps;
  bool binary = true;
};

const std::string begin_sql = "BEGIN";
const std::string lock_sql
  = "SELECT position FROM es_position WHERE id = 1 FOR UPDATE";
// Heads of the group's streams (rows with a NULL event id) and the stored
// events with the group's event ids, in one statement. The partitioned
// variant finds event ids in event_ids.
const std::string lookup_partitioned_sql
  = "SELECT NULL::uuid, s.t, s.i, h.aggregate_version, h.tenant_id,"
    " NULL::bigint FROM unnest($1::text[], $2::uuid[]) AS s(t, i)"
    " JOIN LATERAL (SELECT aggregate_version, tenant_id FROM events"
    " WHERE aggregate_type = s.t AND aggregate_id = s.i"
    " ORDER BY aggregate_version DESC LIMIT 1) h ON true"
    " UNION ALL SELECT event_id, aggregate_type, aggregate_id,"
    " aggregate_version, NULL::uuid, global_position FROM event_ids"
    " WHERE event_id = ANY ($3::uuid[])";
const std::string lookup_sql
  = "SELECT NULL::uuid, s.t, s.i, h.aggregate_version, h.tenant_id,"
    " NULL::bigint FROM unnest($1::text[], $2::uuid[]) AS s(t, i)"
    " JOIN LATERAL (SELECT aggregate_version, tenant_id FROM events"
    " WHERE aggregate_type = s.t AND aggregate_id = s.i"
    " ORDER BY aggregate_version DESC LIMIT 1) h ON true"
    " UNION ALL SELECT event_id, aggregate_type, aggregate_id,"
    " aggregate_version, NULL::uuid, global_position FROM events"
    " WHERE event_id = ANY ($3::uuid[])";
// Heads alone, read outside any transaction and without the position lock
// (the optimistic path).
const std::string heads_sql
  = "SELECT s.t, s.i, h.aggregate_version, h.tenant_id"
    " FROM unnest($1::text[], $2::uuid[]) AS s(t, i)"
    " JOIN LATERAL (SELECT aggregate_version, tenant_id FROM events"
    " WHERE aggregate_type = s.t AND aggregate_id = s.i"
    " ORDER BY aggregate_version DESC LIMIT 1) h ON true";
// Moves the counter by $14 events (taking the position lock, or keeping
// it on the locked path), inserts the rows at the positions after the old
// value and returns that value. Under READ COMMITTED a caller that waited
// for the lock sees the counter as its previous holder committed it.
const std::string insert_columns_sql
  = "global_position, event_id, event_type,"
    " event_version, aggregate_type, aggregate_id, aggregate_version,"
    " tenant_id, occurred_at, correlation_id, causation_id, actor_id,"
    " metadata, payload)"
    " SELECT p.base + t.ord, t.id, t.etype, t.ever, t.atype, t.aid, t.aver,"
    " t.tenant, 'epoch'::timestamptz + t.occ * interval '1 microsecond',"
    " t.corr, t.caus, t.actor, t.meta, t.payload::json"
    " FROM p, unnest($1::uuid[], $2::text[], $3::integer[], $4::text[],"
    " $5::uuid[], $6::bigint[], $7::uuid[], $8::bigint[], $9::uuid[],"
    " $10::uuid[], $11::text[], $12::text[], $13::text[])"
    " WITH ORDINALITY AS t(id, etype, ever, atype, aid, aver, tenant, occ,"
    " corr, caus, actor, meta, payload, ord)";
const std::string insert_sql
  = "WITH p AS (UPDATE es_position SET position = position + $14"
    " WHERE id = 1 RETURNING position - $14 AS base),"
    " ins AS (INSERT INTO events ("
    + insert_columns_sql
    + " RETURNING 1)"
      " SELECT base FROM p";
const std::string insert_partitioned_sql
  = "WITH p AS (UPDATE es_position SET position = position + $14"
    " WHERE id = 1 RETURNING position - $14 AS base),"
    " ins AS (INSERT INTO events ("
    + insert_columns_sql
    + " RETURNING event_id,"
      " aggregate_type, aggregate_id, aggregate_version, global_position),"
      " ids AS (INSERT INTO event_ids SELECT * FROM ins)"
      " SELECT base FROM p";
// Outbox rows, after the insert: the counter already holds the group's
// last position ($6 events in the group).
const std::string outbox_sql
  = "INSERT INTO event_outbox (event_id, global_position, event_type,"
    " aggregate_type, aggregate_id, tenant_id)"
    " SELECT t.id, (SELECT position FROM es_position WHERE id = 1) - $6"
    " + t.ord, t.etype, t.atype, t.aid, t.tenant"
    " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[],"
    " $5::uuid[]) WITH ORDINALITY AS t(id, etype, atype, aid, tenant, ord)";
const std::string commit_sql = "COMMIT";
const std::string rollback_sql = "ROLLBACK";
const std::string unique_violation = "23505";
/// Most stream heads `known_heads_` keeps before it starts over.
constexpr size_t max_known_heads = 65'536;

struct stream_hash {
  size_t operator()(const stream_id& x) const noexcept {
    return std::hash<std::string>{}(x.aggregate_type) * 31
           ^ std::hash<uuid>{}(x.aggregate_id);
  }
};

/// Collects array columns of the rows one group inserts.
struct insert_columns {
  // Values in binary format; an empty string in a nullable uuid column is
  // NULL.
  std::vector<std::string> id, etype, ever, atype, aid, aver, tenant, occ, corr,
    caus, actor, meta, payload;

  void add(const event_data& ev) {
    using namespace detail::pg;
    id.push_back(binary_uuid(ev.event_id));
    etype.push_back(ev.event_type);
    ever.push_back(binary_int4(ev.event_version));
    atype.push_back(ev.aggregate_type);
    aid.push_back(binary_uuid(ev.aggregate_id));
    aver.push_back(binary_int8(ev.aggregate_version));
    tenant.push_back(ev.tenant_id ? binary_uuid(*ev.tenant_id) : "");
    occ.push_back(binary_int8(ev.occurred_at.time_since_epoch().count()));
    corr.push_back(ev.correlation_id ? binary_uuid(*ev.correlation_id) : "");
    caus.push_back(ev.causation_id ? binary_uuid(*ev.causation_id) : "");
    actor.push_back(ev.actor_id);
    meta.push_back(ev.metadata);
    payload.push_back(ev.payload);
  }

  bool empty() const {
    return id.empty();
  }

  /// Parameters of `insert_sql` (and its partitioned twin).
  params insert_params() const {
    using namespace detail::pg;
    params ps;
    put_binary(ps, uuid_oid, id);
    put_binary(ps, text_oid, etype);
    put_binary(ps, int4_oid, ever);
    put_binary(ps, text_oid, atype);
    put_binary(ps, uuid_oid, aid);
    put_binary(ps, int8_oid, aver);
    put_binary(ps, uuid_oid, tenant, true);
    put_binary(ps, int8_oid, occ);
    put_binary(ps, uuid_oid, corr, true);
    put_binary(ps, uuid_oid, caus, true);
    put_binary(ps, text_oid, actor);
    put_binary(ps, text_oid, meta);
    put_binary(ps, text_oid, payload);
    ps.add(static_cast<int64_t>(id.size()));
    return ps;
  }

  /// Parameters of `outbox_sql`.
  params outbox_params() const {
    using namespace detail::pg;
    params ps;
    put_binary(ps, uuid_oid, id);
    put_binary(ps, text_oid, etype);
    put_binary(ps, text_oid, atype);
    put_binary(ps, uuid_oid, aid);
    put_binary(ps, uuid_oid, tenant, true);
    ps.add(static_cast<int64_t>(id.size()));
    return ps;
  }

  /// Adds `xs` as a text-format array parameter; with `nullable`, empty
  /// strings are NULL.
  static void put(params& ps, const std::vector<std::string>& xs,
                  bool nullable = false) {
    ps.add_array(items(xs, nullable));
  }

  /// Adds a column of binary values as a binary array of `oid` elements;
  /// with `nullable`, empty strings are NULL.
  static void put_binary(params& ps, uint32_t oid,
                         const std::vector<std::string>& xs,
                         bool nullable = false) {
    ps.add_binary_array(oid, items(xs, nullable));
  }

  static std::vector<std::optional<std::string_view>>
  items(const std::vector<std::string>& xs, bool nullable) {
    std::vector<std::optional<std::string_view>> result;
    result.reserve(xs.size());
    for (const auto& x : xs)
      result.push_back(nullable && x.empty()
                         ? std::nullopt
                         : std::optional<std::string_view>{x});
    return result;
  }
};

class postgres_event_store final : public event_store {
public:
  postgres_event_store(postgres_config cfg, bool partitioned)
    : cfg_(cfg), partitioned_(partitioned), readers_(cfg, cfg.read_connections),
      writers_(cfg, cfg.writer_connections),
      queue_(
        cfg.max_group_size,
        [this](const std::vector<detail::write_job*>& group) {
          commit_group(group);
        },
        cfg.writer_connections, cfg.group_gather) {
    // nop
  }

  std::string name() const override {
    return "postgres";
  }

  const store_limits& limits() const override {
    return cfg_.limits;
  }

  store_metrics metrics() const override {
    return metrics_.snapshot();
  }

  caf::expected<append_result> append(const stream_id& stream,
                                      expected_version expected,
                                      event_batch events) override {
    std::vector<append_request> requests;
    requests.push_back(append_request{stream, expected, std::move(events)});
    auto results = append_many(std::move(requests));
    return std::move(results.front());
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    std::vector<caf::error> rejected(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      auto& req = requests[i];
      rejected[i] = detail::normalize_append(
        req.stream, req.expected, req.events, cfg_.limits, cfg_.registry.get());
    }
    detail::write_job job;
    job.requests = &requests;
    job.rejected = &rejected;
    queue_.submit(job);
    for (const auto& res : job.results)
      metrics_.count(res);
    return std::move(job.results);
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& opts) override {
    if (opts.max_count == 0)
      return make_store_error(store_errc::invalid_argument,
                              "max_count must be positive");
    auto count = static_cast<int64_t>(
      std::min(opts.max_count, cfg_.limits.max_page_size));
    bool forwards = opts.direction == read_direction::forwards;
    constexpr auto max = std::numeric_limits<int64_t>::max();
    int64_t from = forwards ? std::max<int64_t>(opts.from_version, 1)
                            : (opts.from_version > 0 ? opts.from_version : max);
    int64_t bound = forwards ? (opts.to_version > 0 ? opts.to_version : max)
                             : std::max<int64_t>(opts.to_version, 1);
    std::string sql = "WITH h AS (SELECT COALESCE(MAX(aggregate_version), 0)"
                      " AS v FROM events WHERE aggregate_type = $1"
                      " AND aggregate_id = $2::uuid) SELECT h.v, ";
    sql += event_columns;
    sql += forwards ? " FROM h LEFT JOIN LATERAL (SELECT * FROM events"
                      " WHERE aggregate_type = $1 AND aggregate_id = $2::uuid"
                      " AND aggregate_version >= $3 AND aggregate_version <= $4"
                      " ORDER BY aggregate_version ASC LIMIT $5) e ON true"
                      " ORDER BY e.aggregate_version ASC"
                    : " FROM h LEFT JOIN LATERAL (SELECT * FROM events"
                      " WHERE aggregate_type = $1 AND aggregate_id = $2::uuid"
                      " AND aggregate_version <= $3 AND aggregate_version >= $4"
                      " ORDER BY aggregate_version DESC LIMIT $5) e ON true"
                      " ORDER BY e.aggregate_version DESC";
    params ps;
    ps.add(stream.aggregate_type);
    ps.add(stream.aggregate_id);
    ps.add(from);
    ps.add(bound);
    ps.add(count);
    auto r = with_reader([&](connection& c) {
      return c.run(forwards ? "es_read_stream_fwd" : "es_read_stream_bwd", sql,
                   ps, true);
    });
    if (!r)
      return std::move(r.error());
    stream_slice slice;
    for (int row = 0; row < r->rows(); ++row) {
      slice.stream_version = r->int8(row, 0);
      if (!r->is_null(row, 1))
        slice.events.push_back(read_event(*r, row, 1));
    }
    if (slice.events.empty()) {
      slice.end_of_stream = true;
      slice.next_version = from;
      return slice;
    }
    auto last = slice.events.back().aggregate_version;
    if (forwards) {
      slice.next_version = last + 1;
      slice.end_of_stream = last >= std::min(bound, slice.stream_version);
    } else {
      slice.next_version = last - 1;
      slice.end_of_stream = last <= bound;
    }
    return slice;
  }

  caf::expected<all_slice> read_all(const read_all_options& opts) override {
    if (opts.max_count == 0)
      return make_store_error(store_errc::invalid_argument,
                              "max_count must be positive");
    if (opts.after_position < 0)
      return make_store_error(store_errc::invalid_argument,
                              "after_position must not be negative");
    auto count = static_cast<int64_t>(
      std::min(opts.max_count, cfg_.limits.max_page_size));
    const auto& f = opts.filter;
    int64_t window = f.empty() ? count : std::max<int64_t>(count * 64, 65536);
    // One statement, one snapshot: the head and the page must agree, or a
    // filtered reader could skip events committed between two queries.
    std::string name = "es_read_all_";
    std::string where = " WHERE global_position > $1 AND global_position <="
                        " LEAST(h.p, $2)";
    params ps;
    ps.add(opts.after_position);
    ps.add(opts.after_position > std::numeric_limits<int64_t>::max() - window
             ? std::numeric_limits<int64_t>::max()
             : opts.after_position + window);
    ps.add(count);
    // Only the filters in use become parameters, numbered from $4.
    auto next_param = [&] {
      return "$" + std::to_string(ps.size() + 1);
    };
    auto add_list = [&](const std::vector<std::string>& xs) {
      std::vector<std::optional<std::string_view>> items;
      for (const auto& x : xs)
        items.emplace_back(x);
      ps.add_array(items);
    };
    if (!f.event_types.empty()) {
      where += " AND event_type = ANY (" + next_param() + "::text[])";
      add_list(f.event_types);
      name += 't';
    }
    if (!f.aggregate_types.empty()) {
      where += " AND aggregate_type = ANY (" + next_param() + "::text[])";
      add_list(f.aggregate_types);
      name += 'a';
    }
    if (f.tenant_id) {
      where += " AND tenant_id = " + next_param() + "::uuid";
      ps.add(*f.tenant_id);
      name += 'n';
    }
    std::string sql = "WITH h AS (SELECT position AS p FROM es_position"
                      " WHERE id = 1) SELECT h.p, ";
    sql += event_columns;
    sql += " FROM h LEFT JOIN LATERAL (SELECT * FROM events";
    sql += where;
    sql += " ORDER BY global_position ASC LIMIT $3) e ON true"
           " ORDER BY e.global_position ASC";
    auto r = with_reader([&](connection& c) {
      return c.run(name.c_str(), sql, ps, true);
    });
    if (!r)
      return std::move(r.error());
    all_slice slice;
    int64_t head = 0;
    for (int row = 0; row < r->rows(); ++row) {
      head = r->int8(row, 0);
      if (!r->is_null(row, 1))
        slice.events.push_back(read_event(*r, row, 1));
    }
    auto upper = std::min(head, opts.after_position + window);
    if (static_cast<int64_t>(slice.events.size()) == count)
      slice.next_position = slice.events.back().global_position;
    else
      slice.next_position = std::max(upper, opts.after_position);
    slice.end_of_feed = slice.next_position >= head;
    return slice;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    params ps;
    ps.add(stream.aggregate_type);
    ps.add(stream.aggregate_id);
    auto r = with_reader([&](connection& c) {
      return c.run("es_stream_version",
                   "SELECT COALESCE(MAX(aggregate_version), 0)"
                   " FROM events WHERE aggregate_type = $1"
                   " AND aggregate_id = $2::uuid",
                   ps, true);
    });
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    params ps;
    ps.add(event_id);
    std::string sql = "SELECT ";
    sql += event_columns;
    // Partitioned: find the stream through event_ids, so only its partition
    // is searched.
    sql += partitioned_ ? " FROM event_ids i JOIN events e"
                          " ON e.aggregate_type = i.aggregate_type"
                          " AND e.aggregate_id = i.aggregate_id"
                          " AND e.aggregate_version = i.aggregate_version"
                          " WHERE i.event_id = $1::uuid"
                        : " FROM events e WHERE e.event_id = $1::uuid";
    auto r = with_reader([&](connection& c) {
      return c.run(partitioned_ ? "es_find_event_p" : "es_find_event", sql, ps,
                   true);
    });
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return std::optional<recorded_event>{};
    return std::optional<recorded_event>{read_event(*r, 0, 0)};
  }

  caf::expected<int64_t> head_position() override {
    auto r = with_reader([&](connection& c) {
      return c.run("es_head", "SELECT position FROM es_position WHERE id = 1",
                   params{}, true);
    });
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

private:
  /// Runs a read on a pooled connection. Reads are idempotent: when the
  /// connection turns out to be broken (the server restarted or killed it),
  /// the read runs once more on a fresh connection.
  template <class F>
  auto with_reader(F fn) -> decltype(fn(std::declval<connection&>())) {
    for (int attempt = 0;; ++attempt) {
      auto conn = readers_.take();
      if (!conn)
        return std::move(conn.error());
      auto res = fn(**conn);
      if (res || attempt > 0 || (*conn)->ok()
          || !has_code(res.error(), store_errc::connection_failed))
        return res;
    }
  }

  /// One request of a group: job and index.
  struct slot {
    detail::write_job* job;
    size_t index;
  };

  using head_map
    = std::unordered_map<stream_id, detail::stream_head, stream_hash>;

  static append_request& request_of(const slot& s) {
    return (*s.job->requests)[s.index];
  }

  static caf::expected<append_result>& result_of(const slot& s) {
    return s.job->results[s.index];
  }

  /// Commits a group: optimistically first (one round trip while nothing
  /// is locked, see `commit_optimistic`), and under the position lock when
  /// that cannot decide every request (see `commit_locked`).
  void commit_group(const std::vector<detail::write_job*>& group) {
    std::vector<slot> slots;
    for (auto* j : group) {
      j->results.clear();
      for (size_t i = 0; i < j->requests->size(); ++i) {
        if ((*j->rejected)[i])
          j->results.emplace_back((*j->rejected)[i]);
        else {
          j->results.emplace_back(caf::error{});
          slots.push_back({j, i});
        }
      }
    }
    if (slots.empty())
      return;
    auto fail = [&](const caf::error& err) {
      for (auto& s : slots)
        s.job->results[s.index] = err;
    };
    auto conn = writers_.take();
    if (!conn) {
      fail(conn.error());
      return;
    }
    if (!commit_optimistic(**conn, slots)) {
      metrics_.count_decided_again();
      commit_locked(**conn, slots);
    }
  }

  /// Tries to commit the group without holding the position lock while
  /// deciding. Stream heads come from the last heads this store wrote or
  /// read (`known_heads_`), from the assumption that a `no_stream` stream
  /// is new, or from one read outside any transaction; the requests are
  /// decided on them and the accepted rows go out as one pipeline (one
  /// implicit transaction) whose insert takes the position lock itself, so
  /// the lock is held only while the server inserts and commits.
  ///
  /// A head can only be stale by being behind (versions never go away), and
  /// versions are contiguous, so a stale head makes the insert hit the
  /// unique (aggregate, version) key; a stored event id hits the unique
  /// event id key. Either way nothing is written and the group goes to the
  /// locked path, which decides again on fresh state. So does any request
  /// this path would refuse (conflict, tenant, replay), so that refusals
  /// always come from the locked path's fresh reads. Returns false when the
  /// group needs the locked path; the requests are then as they came.
  bool commit_optimistic(connection& conn, std::vector<slot>& slots) {
    head_map heads;
    std::vector<std::string> types;
    std::vector<std::string> ids;
    {
      std::lock_guard guard{heads_mtx_};
      for (auto& s : slots) {
        const auto& req = request_of(s);
        if (heads.count(req.stream) > 0)
          continue;
        auto i = known_heads_.find(req.stream);
        if (i != known_heads_.end()) {
          heads.emplace(req.stream, i->second);
          continue;
        }
        heads.emplace(req.stream, detail::stream_head{});
        if (req.expected.type() != expected_version::kind::no_stream) {
          types.push_back(req.stream.aggregate_type);
          ids.push_back(req.stream.aggregate_id.to_string());
        }
      }
    }
    if (!types.empty()) {
      std::vector<call> calls;
      params ps;
      insert_columns::put(ps, types);
      insert_columns::put(ps, ids);
      calls.push_back({"es_heads", &heads_sql, std::move(ps), true});
      auto got = run_pipeline(conn, calls);
      if (!got)
        return false;
      const auto& found = (*got)[0];
      for (int row = 0; row < found.rows(); ++row)
        heads[stream_id{found.text(row, 0), found.uuid_at(row, 1)}]
          = detail::stream_head{found.int8(row, 2), found.opt_uuid(row, 3)};
    }
    // Versions as they came, to put back before the locked path decides.
    std::vector<int64_t> given;
    for (auto& s : slots)
      for (const auto& ev : request_of(s).events)
        given.push_back(ev.aggregate_version);
    auto restore = [&] {
      size_t n = 0;
      for (auto& s : slots)
        for (auto& ev : request_of(s).events)
          ev.aggregate_version = given[n++];
      return false;
    };
    std::unordered_set<uuid> seen;
    insert_columns rows;
    std::vector<append_result> decided;
    decided.reserve(slots.size());
    int64_t position = 0; // relative to the group's first position - 1
    for (auto& s : slots) {
      auto& req = request_of(s);
      for (const auto& ev : req.events)
        if (!seen.insert(ev.event_id).second)
          return restore();
      auto& head = heads[req.stream];
      if (detail::check_and_assign_versions(req.stream, req.expected, head,
                                            req.events))
        return restore();
      append_result res;
      res.stream = req.stream;
      res.first_version = req.events.front().aggregate_version;
      res.last_version = req.events.back().aggregate_version;
      res.first_position = position + 1;
      for (const auto& ev : req.events)
        rows.add(ev);
      position += static_cast<int64_t>(req.events.size());
      res.last_position = position;
      head.version = res.last_version;
      head.tenant_id = req.events.front().tenant_id;
      decided.push_back(std::move(res));
    }
    // No BEGIN and COMMIT: the statements of one pipeline sync run in one
    // implicit transaction, which commits at the sync (or rolls back
    // entirely at the first error).
    std::vector<call> calls;
    add_writes(calls, rows);
    std::string state;
    auto done = run_pipeline(conn, calls, &state);
    if (!done) {
      abandon(conn);
      if (state == unique_violation && conn.ok())
        return restore();
      for (auto& s : slots)
        result_of(s) = done.error();
      return true;
    }
    int64_t base = (*done)[0].int8(0, 0);
    for (size_t k = 0; k < slots.size(); ++k) {
      decided[k].first_position += base;
      decided[k].last_position += base;
      result_of(slots[k]) = std::move(decided[k]);
    }
    remember(heads);
    metrics_.count_transaction();
    return true;
  }

  /// Adds the statements that write `rows` (and their outbox rows).
  void add_writes(std::vector<call>& calls, const insert_columns& rows) {
    if (partitioned_)
      calls.push_back(
        {"es_insert_p", &insert_partitioned_sql, rows.insert_params(), true});
    else
      calls.push_back({"es_insert", &insert_sql, rows.insert_params(), true});
    if (cfg_.outbox)
      calls.push_back({"es_outbox", &outbox_sql, rows.outbox_params(), false});
  }

  /// Records heads seen or written; a head never moves back.
  template <class Map>
  void remember(const Map& heads) {
    std::lock_guard guard{heads_mtx_};
    if (known_heads_.size() + heads.size() > max_known_heads)
      known_heads_.clear();
    for (const auto& [sid, head] : heads) {
      if (head.version == 0)
        continue;
      auto& known = known_heads_[sid];
      if (head.version > known.version)
        known = head;
    }
  }

  /// Commits a group in one transaction and two round trips. The first
  /// takes the position lock and fetches, for every stream and event id of
  /// the group, what the store holds; the rules of `append_rules.hpp` then
  /// decide each request in order, exactly as on the other adapters; the
  /// second round trip inserts the accepted events with one statement,
  /// moves the position counter and commits.
  void commit_locked(connection& conn, std::vector<slot>& slots) {
    auto fail = [&](const caf::error& err) {
      for (auto& s : slots)
        result_of(s) = err;
    };
    // Round trip 1: lock, then read heads and stored ids (fresh snapshots
    // after the lock, so nothing committed before it is missed).
    std::vector<std::string> types;
    std::vector<std::string> ids;
    std::vector<std::string> event_ids;
    for (auto& s : slots) {
      const auto& req = (*s.job->requests)[s.index];
      types.push_back(req.stream.aggregate_type);
      ids.push_back(req.stream.aggregate_id.to_string());
      for (const auto& ev : req.events)
        event_ids.push_back(ev.event_id.to_string());
    }
    std::vector<call> first;
    first.push_back({"es_begin", &begin_sql, {}, false});
    first.push_back({"es_lock", &lock_sql, {}, true});
    {
      params ps;
      insert_columns::put(ps, types);
      insert_columns::put(ps, ids);
      insert_columns::put(ps, event_ids);
      if (partitioned_)
        first.push_back(
          {"es_lookup_p", &lookup_partitioned_sql, std::move(ps), true});
      else
        first.push_back({"es_lookup", &lookup_sql, std::move(ps), true});
    }
    auto got = run_pipeline(conn, first);
    if (!got) {
      abandon(conn);
      fail(got.error());
      return;
    }
    auto& rs = *got;
    int64_t position = rs[1].int8(0, 0);
    std::map<stream_id, detail::stream_head> heads;
    std::unordered_map<uuid, detail::stored_location> stored;
    const auto& found = rs[2];
    for (int row = 0; row < found.rows(); ++row) {
      stream_id sid{found.text(row, 1), found.uuid_at(row, 2)};
      if (found.is_null(row, 0))
        heads[sid]
          = detail::stream_head{found.int8(row, 3), found.opt_uuid(row, 4)};
      else
        stored[found.uuid_at(row, 0)] = detail::stored_location{
          sid, found.int8(row, 3), found.int8(row, 5)};
    }
    // Decide every request in order; accepted ones become visible to the
    // later requests of the same group.
    insert_columns rows;
    auto lookup = [&](const uuid& id)
      -> caf::expected<std::optional<detail::stored_location>> {
      auto i = stored.find(id);
      if (i == stored.end())
        return std::optional<detail::stored_location>{};
      return std::optional<detail::stored_location>{i->second};
    };
    std::vector<size_t> accepted;
    for (size_t k = 0; k < slots.size(); ++k) {
      auto& req = (*slots[k].job->requests)[slots[k].index];
      auto& out = slots[k].job->results[slots[k].index];
      auto replay = detail::check_replay(req.stream, req.events, lookup, true);
      if (!replay) {
        out = std::move(replay.error());
        continue;
      }
      if (*replay) {
        out = std::move(**replay);
        continue;
      }
      auto& head = heads[req.stream];
      if (auto err = detail::check_and_assign_versions(req.stream, req.expected,
                                                       head, req.events)) {
        out = std::move(err);
        continue;
      }
      append_result res;
      res.stream = req.stream;
      res.first_version = req.events.front().aggregate_version;
      res.last_version = req.events.back().aggregate_version;
      res.first_position = position + 1;
      for (const auto& ev : req.events) {
        rows.add(ev);
        ++position;
        stored[ev.event_id]
          = detail::stored_location{req.stream, ev.aggregate_version, position};
      }
      res.last_position = position;
      head.version = res.last_version;
      head.tenant_id = req.events.front().tenant_id;
      out = std::move(res);
      accepted.push_back(k);
    }
    // Round trip 2: write and commit, or just end the transaction. The
    // insert moves the counter from the locked value, which is where this
    // transaction's positions start.
    std::vector<call> second;
    if (!rows.empty()) {
      add_writes(second, rows);
      second.push_back({"es_commit", &commit_sql, {}, false});
    } else {
      second.push_back({"es_rollback", &rollback_sql, {}, false});
    }
    auto done = run_pipeline(conn, second);
    if (!done) {
      // Nothing of the group was committed.
      abandon(conn);
      for (auto k : accepted)
        slots[k].job->results[slots[k].index] = done.error();
      return;
    }
    remember(heads);
    if (!rows.empty())
      metrics_.count_transaction();
  }

  /// Leaves a failed transaction so the connection can be reused.
  static void abandon(connection& conn) {
    if (conn.ok() && PQtransactionStatus(conn.handle()) != PQTRANS_IDLE)
      static_cast<void>(conn.exec("ROLLBACK"));
  }

  /// Sends all calls and one sync; returns their results, or the first
  /// error (after which the server skipped the rest).
  static caf::expected<std::vector<result>>
  run_pipeline(connection& conn, std::vector<call>& calls,
               std::string* failed_state = nullptr) {
    auto* pg = conn.handle();
    for (auto& c : calls)
      if (auto err
          = conn.ensure_prepared(c.name, *c.sql, static_cast<int>(c.ps.size())))
        return err;
    if (PQenterPipelineMode(pg) != 1)
      return detail::pg::translate(nullptr, pg, "cannot enter pipeline mode");
    caf::error failure;
    size_t sent = 0;
    for (auto& c : calls) {
      auto ptrs = c.ps.pointers();
      auto lengths = c.ps.lengths();
      auto formats = c.ps.formats();
      if (PQsendQueryPrepared(pg, c.name, static_cast<int>(c.ps.size()),
                              ptrs.data(), lengths.data(), formats.data(),
                              c.binary ? 1 : 0)
          != 1) {
        failure = detail::pg::translate(nullptr, pg, "cannot send statement");
        break;
      }
      ++sent;
    }
    bool synced = PQpipelineSync(pg) == 1;
    if (!synced && !failure)
      failure = detail::pg::translate(nullptr, pg, "cannot sync pipeline");
    std::vector<result> results;
    results.reserve(sent);
    for (size_t k = 0; k < sent; ++k) {
      result r{PQgetResult(pg)};
      if (r.get() == nullptr) {
        if (!failure)
          failure = detail::pg::translate(nullptr, pg, "result lost");
        break;
      }
      auto status = PQresultStatus(r.get());
      if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && !failure) {
        failure = detail::pg::translate(r.get(), pg, calls[k].name);
        if (failed_state != nullptr)
          *failed_state = detail::pg::sqlstate(r.get());
      }
      results.push_back(std::move(r));
      result terminator{PQgetResult(pg)};
      static_cast<void>(terminator);
    }
    // Drain up to the sync point (two nulls in a row: nothing more comes).
    for (int nulls = 0; synced && nulls < 2 && PQstatus(pg) == CONNECTION_OK;) {
      result r{PQgetResult(pg)};
      if (r.get() == nullptr) {
        ++nulls;
        continue;
      }
      nulls = 0;
      auto status = PQresultStatus(r.get());
      if (status == PGRES_PIPELINE_SYNC)
        break;
      if (status == PGRES_FATAL_ERROR && !failure)
        failure = detail::pg::translate(r.get(), pg, "pipeline failed");
    }
    if (PQstatus(pg) == CONNECTION_OK)
      PQexitPipelineMode(pg);
    else if (!failure)
      failure = detail::pg::translate(nullptr, pg, "connection lost");
    if (failure)
      return failure;
    return results;
  }

  postgres_config cfg_;
  bool partitioned_;
  pool readers_;
  pool writers_;
  detail::metrics_counter metrics_;
  std::mutex heads_mtx_;
  /// Stream heads this store wrote or read, never ahead of the database.
  head_map known_heads_;
  detail::group_commit_queue queue_;
};

} // namespace

caf::error postgres_migrate(const postgres_config& cfg) {
  // The application's statement_timeout bounds its queries, not schema
  // changes: a migration may build indexes, or wait for another process
  // applying the same step under the advisory lock.
  auto migration_cfg = cfg;
  migration_cfg.statement_timeout = std::chrono::milliseconds{0};
  auto conn = detail::pg::connection::open(migration_cfg);
  if (!conn)
    return std::move(conn.error());
  if (auto res = (*conn)->exec("SET statement_timeout = 0"); !res)
    return std::move(res.error());
  return detail::pg::migrate(**conn, cfg.events_partitions);
}

caf::expected<event_store_ptr> make_postgres_event_store(postgres_config cfg) {
  if (cfg.max_group_size == 0)
    cfg.max_group_size = 1;
  if (cfg.migrate)
    if (auto err = postgres_migrate(cfg))
      return err;
  // Checks the connection settings now rather than on the first call, and
  // finds out which schema variant the database has.
  auto conn = detail::pg::connection::open(cfg);
  if (!conn)
    return std::move(conn.error());
  auto variant = (*conn)->exec("SELECT (to_regclass('event_ids') IS NOT NULL)"
                               "::text");
  if (!variant)
    return std::move(variant.error());
  bool partitioned = variant->text(0, 0) == "true";
  return std::make_shared<postgres_event_store>(std::move(cfg), partitioned);
}

} // namespace es
