#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_view.hpp"

#include "append_rules.hpp"
#include "connection.hpp"
#include "group_commit.hpp"
#include "pool.hpp"
#include "schema.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace es {

namespace {

using detail::pg::call;
using detail::pg::connection;
using detail::pg::params;
using detail::pg::pipeline;
using detail::pg::pipeline_result;
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

/// A view of the event columns of one row starting at column `c`, valid
/// while the result lives.
class row_view final : public event_view {
public:
  row_view(const result& r, int row, int c) noexcept : r_(r), row_(row), c_(c) {
    // nop
  }

  int64_t global_position() const override {
    return r_.int8(row_, c_ + 0);
  }
  uuid event_id() const override {
    return r_.uuid_at(row_, c_ + 1);
  }
  std::string_view event_type() const override {
    return r_.view(row_, c_ + 2);
  }
  int32_t event_version() const override {
    return r_.int4(row_, c_ + 3);
  }
  std::string_view aggregate_type() const override {
    return r_.view(row_, c_ + 4);
  }
  uuid aggregate_id() const override {
    return r_.uuid_at(row_, c_ + 5);
  }
  int64_t aggregate_version() const override {
    return r_.int8(row_, c_ + 6);
  }
  std::optional<uuid> tenant_id() const override {
    return r_.opt_uuid(row_, c_ + 7);
  }
  timestamp occurred_at() const override {
    return r_.time_at(row_, c_ + 8);
  }
  std::optional<uuid> correlation_id() const override {
    return r_.opt_uuid(row_, c_ + 9);
  }
  std::optional<uuid> causation_id() const override {
    return r_.opt_uuid(row_, c_ + 10);
  }
  std::string_view actor_id() const override {
    return r_.view(row_, c_ + 11);
  }
  std::string_view metadata() const override {
    return r_.view(row_, c_ + 12);
  }
  std::string_view payload() const override {
    return r_.view(row_, c_ + 13);
  }

private:
  const result& r_;
  int row_;
  int c_;
};

const std::string begin_sql = "BEGIN";
// The overlapping feed's locked path: a transaction lock per stream of the
// group, taken in one order.
const std::string lock_streams_sql
  = "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT"
    " hashtextextended(s.t || '/' || s.i::text, 74201) AS k"
    " FROM unnest($1::text[], $2::uuid[]) AS s(t, i) ORDER BY k) q";
// No row when the database's feed was switched away under a running store.
const std::string lock_sql = "SELECT position FROM es_position"
                             " WHERE id = 1 AND feed = 'serialized' FOR UPDATE";
// Heads of the group's streams (rows with a NULL event id) and the stored
// events with the group's event ids with what identifies their content, in
// one statement. The partitioned variant finds event ids in event_ids.
const std::string lookup_heads_part
  = "SELECT NULL::uuid, s.t, s.i, h.aggregate_version, h.tenant_id,"
    " NULL::bigint, h.event_type, NULL::integer, NULL::text"
    " FROM unnest($1::text[], $2::uuid[]) AS s(t, i)"
    " JOIN LATERAL (SELECT aggregate_version, tenant_id, event_type FROM events"
    " WHERE aggregate_type = s.t AND aggregate_id = s.i"
    " ORDER BY aggregate_version DESC LIMIT 1) h ON true";
const std::string lookup_partitioned_sql
  = lookup_heads_part
    + " UNION ALL SELECT i.event_id, i.aggregate_type, i.aggregate_id,"
      " i.aggregate_version, NULL::uuid, i.global_position, e.event_type,"
      " e.event_version, e.payload::text FROM event_ids i JOIN events e"
      " ON e.aggregate_type = i.aggregate_type"
      " AND e.aggregate_id = i.aggregate_id"
      " AND e.aggregate_version = i.aggregate_version"
      " WHERE i.event_id = ANY ($3::uuid[])";
const std::string lookup_sql
  = lookup_heads_part
    + " UNION ALL SELECT event_id, aggregate_type, aggregate_id,"
      " aggregate_version, NULL::uuid, global_position, event_type,"
      " event_version, payload::text FROM events"
      " WHERE event_id = ANY ($3::uuid[])";
// Heads alone, read outside any transaction and without the position lock
// (the optimistic path).
const std::string heads_sql
  = "SELECT s.t, s.i, h.aggregate_version, h.tenant_id, h.event_type"
    " FROM unnest($1::text[], $2::uuid[]) AS s(t, i)"
    " JOIN LATERAL (SELECT aggregate_version, tenant_id, event_type FROM events"
    " WHERE aggregate_type = s.t AND aggregate_id = s.i"
    " ORDER BY aggregate_version DESC LIMIT 1) h ON true";
// Writes a group in one statement. `chk` looks up the predecessor of each
// stream's first new version ($15-$17: type, id and version - 1 of each
// stream's first row when that version is above 1; EXISTS in the select
// list keeps them index probes, where an anti-join could scan the table):
// with any missing,
// the counter does not move and nothing is inserted (no row comes back),
// so versions stay dense even when a head the writer remembered was lost
// (a restore, a failover). Otherwise it moves the counter by $14 events
// (taking the position lock, or keeping it on the locked path), inserts
// the rows at the positions after the old value and returns that value.
// Under READ COMMITTED a caller that waited for the lock sees the counter
// as its previous holder committed it. $18 names the write and $19 the
// writing connection: es_write_marks keeps each connection's last write,
// so after the connection is lost the store can tell whether this write
// committed. On the partitioned variant a trigger copies the new rows' ids
// into event_ids.
//
// In the overlapping feed `p` reserves the positions with `es_reserve`
// instead of moving the counter.
std::string write_head_sql(const char* positions) {
  return "WITH chk AS (SELECT COALESCE(bool_and(EXISTS (SELECT 1 FROM events e"
         " WHERE e.aggregate_type = c.t AND e.aggregate_id = c.i"
         " AND e.aggregate_version = c.v)), true) AS ok"
         " FROM unnest($15::text[], $16::uuid[], $17::bigint[]) AS c(t, i, v)),"
         " p AS ("
         + std::string{positions}
         + "),"
           " t AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::integer[],"
           " $4::text[], $5::uuid[], $6::bigint[], $7::uuid[], "
           "$8::timestamptz[],"
           " $9::uuid[], $10::uuid[], $11::text[], $12::text[], $13::text[])"
           " WITH ORDINALITY AS t(id, etype, ever, atype, aid, aver, tenant, "
           "occ,"
           " corr, caus, actor, meta, payload, ord)),"
           " ins AS (INSERT INTO events (global_position, event_id, event_type,"
           " event_version, aggregate_type, aggregate_id, aggregate_version,"
           " tenant_id, occurred_at, correlation_id, causation_id, actor_id,"
           " metadata, payload)"
           " SELECT p.base + t.ord, t.id, t.etype, t.ever, t.atype, t.aid, "
           "t.aver,"
           " t.tenant, t.occ,"
           " t.corr, t.caus, t.actor, t.meta, t.payload::json FROM p, t),"
           " mk AS (INSERT INTO es_write_marks (writer, last_write)"
           " SELECT $19::uuid, $18::uuid FROM p ON CONFLICT (writer)"
           " DO UPDATE SET last_write = EXCLUDED.last_write, updated_at = "
           "now())";
}

/// How `p` of the write statement finds the group's base position.
enum class base_from { counter, reserve };

/// The eight variants of a write statement, made by `make(positions,
/// outbox)` for each layout (where `reserve(ids)` looks up event ids:
/// `events`, or `event_ids` on the partitioned variant), each way of
/// finding the base position (`counter`, `reserve`) and without or with
/// outbox rows, in the order `write_variant` indexes.
template <class Make, class Reserve>
std::vector<std::string>
write_variants(Make make, const std::string& counter, Reserve reserve) {
  std::vector<std::string> result;
  for (const char* ids : {"events", "event_ids"})
    for (const auto& positions : {counter, reserve(ids)})
      for (bool outbox : {false, true})
        result.push_back(make(positions, outbox));
  return result;
}

size_t write_variant(base_from base, bool outbox, bool partitioned) {
  return (partitioned ? 4 : 0) + static_cast<size_t>(base) * 2
         + (outbox ? 1 : 0);
}

/// The write statement, with an outbox row per event when `outbox`.
const std::string& write_sql(base_from base, bool outbox, bool partitioned) {
  static const auto make = [](const std::string& positions, bool with_outbox) {
    auto sql = write_head_sql(positions.c_str());
    if (with_outbox)
      sql += ", ob AS (INSERT INTO event_outbox (event_id, global_position,"
             " event_type, aggregate_type, aggregate_id, tenant_id)"
             " SELECT t.id, p.base + t.ord, t.etype, t.atype, t.aid, t.tenant"
             " FROM p, t)";
    return sql + " SELECT base FROM p";
  };
  static const std::string counter
    = "UPDATE es_position SET position = position + $14"
      " WHERE id = 1 AND feed = 'serialized' AND (SELECT ok FROM chk)"
      " RETURNING position - $14 AS base";
  // Positions reserved for a write that then fails stay unused: so that
  // a store alone leaves no holes, the reservation is made only when the
  // first new version of each stream (versions are dense) and every event
  // id are free. Only a row another writer commits meanwhile can still
  // collide.
  // EXISTS in the select list keeps every lookup an index probe, whatever
  // the generic plan thinks of the table's size.
  static const auto reserve = [](const char* ids) {
    return std::string{"SELECT es_reserve($14) AS base"
                       " WHERE (SELECT ok FROM chk) AND (SELECT NOT"
                       " COALESCE(bool_or(EXISTS (SELECT 1 FROM events e"
                       " WHERE e.aggregate_type = n.t AND e.aggregate_id = n.i"
                       " AND e.aggregate_version = n.v)), false) FROM (SELECT"
                       " DISTINCT ON (u.t, u.i) u.t, u.i, u.v FROM"
                       " unnest($4::text[], $5::uuid[], $6::bigint[])"
                       " AS u(t, i, v) ORDER BY u.t, u.i, u.v) n) AND (SELECT"
                       " NOT COALESCE(bool_or(EXISTS (SELECT 1 FROM "}
           + ids
           + " x WHERE x.event_id = n.id)), false) FROM unnest($1::uuid[])"
             " AS n(id))";
  };
  static const auto all = write_variants(make, counter, reserve);
  return all[write_variant(base, outbox, partitioned)];
}

// The write statement of a group of one event, the common case of one
// command writing one event: the same steps as `write_sql` on scalar
// parameters ($1-$13 the event's columns, $14 the write, $15 the writing
// connection), without unnesting thirteen one-element arrays. About a
// fifth of the array statement's server time went to the unnest.
const std::string& write_one_sql(base_from base, bool outbox,
                                 bool partitioned) {
  static const auto make = [](const std::string& positions, bool with_outbox) {
    // The predecessor of the event's version must exist (see `chk` above).
    std::string sql
      = "WITH chk AS (SELECT ($6::bigint = 1 OR EXISTS (SELECT 1 FROM events e"
        " WHERE e.aggregate_type = $4::text AND e.aggregate_id = $5::uuid"
        " AND e.aggregate_version = $6::bigint - 1)) AS ok),"
        " p AS ("
        + positions
        + "), ins AS (INSERT INTO events (global_position, event_id,"
          " event_type, event_version, aggregate_type, aggregate_id,"
          " aggregate_version, tenant_id, occurred_at, correlation_id,"
          " causation_id, actor_id, metadata, payload)"
          " SELECT p.base + 1, $1::uuid, $2::text, $3::integer, $4::text,"
          " $5::uuid, $6::bigint, $7::uuid, $8::timestamptz, $9::uuid,"
          " $10::uuid, $11::text, $12::text, $13::text::json FROM p),"
          " mk AS (INSERT INTO es_write_marks (writer, last_write)"
          " SELECT $15::uuid, $14::uuid FROM p ON CONFLICT (writer)"
          " DO UPDATE SET last_write = EXCLUDED.last_write,"
          " updated_at = now())";
    if (with_outbox)
      sql += ", ob AS (INSERT INTO event_outbox (event_id, global_position,"
             " event_type, aggregate_type, aggregate_id, tenant_id)"
             " SELECT $1::uuid, p.base + 1, $2::text, $4::text, $5::uuid,"
             " $7::uuid FROM p)";
    return sql + " SELECT base FROM p";
  };
  static const std::string counter
    = "UPDATE es_position SET position = position + 1"
      " WHERE id = 1 AND feed = 'serialized' AND (SELECT ok FROM chk)"
      " RETURNING position - 1 AS base";
  // As in `write_sql`: positions are reserved only when the version and
  // the event id are free.
  static const auto reserve = [](const char* ids) {
    return std::string{"SELECT es_reserve(1) AS base WHERE (SELECT ok FROM"
                       " chk) AND NOT EXISTS (SELECT 1 FROM events e"
                       " WHERE e.aggregate_type = $4::text"
                       " AND e.aggregate_id = $5::uuid"
                       " AND e.aggregate_version = $6::bigint)"
                       " AND NOT EXISTS (SELECT 1 FROM "}
           + ids + " x WHERE x.event_id = $1::uuid)";
  };
  static const auto all = write_variants(make, counter, reserve);
  return all[write_variant(base, outbox, partitioned)];
}

// The end of the feed a reader may read to, as of the statement's
// snapshot. Serialized: the counter (positions commit in order).
// Overlapping: the newest position written by a transaction older than
// the oldest appender still running (every transaction that could still
// commit holds later positions, see schema.cpp), or the counter, which
// keeps the position the feed was switched at.
// `first` numbers the two parameters of the overlapping feed's horizon
// (see `appenders`).
std::string head_sql(postgres_feed feed, size_t first) {
  if (feed == postgres_feed::serialized)
    return "SELECT position AS p FROM es_position WHERE id = 1";
  return "SELECT GREATEST(c.position, COALESCE((SELECT global_position"
         " FROM events WHERE tx_id < (SELECT es_horizon($"
         + std::to_string(first) + "::bigint[], $" + std::to_string(first + 1)
         + "::xid8)) ORDER BY tx_id DESC, global_position DESC LIMIT 1), 0))"
           " AS p FROM es_position c WHERE c.id = 1";
}
const std::string commit_sql = "COMMIT";
const std::string rollback_sql = "ROLLBACK";
const std::string unique_violation = "23505";
/// How often the overlapping feed's locked path decides again after a
/// unique key another writer may have taken meanwhile.
constexpr int max_races = 16;
/// Most stream heads `known_heads_` keeps before it starts over.
constexpr size_t max_known_heads = 65'536;
/// How long settling an ambiguous commit waits for the old session to end.
constexpr int settle_timeout_ms = 5'000;

struct stream_hash {
  size_t operator()(const stream_id& x) const noexcept {
    return std::hash<std::string>{}(x.aggregate_type) * 31
           ^ std::hash<uuid>{}(x.aggregate_id);
  }
};

/// Returns whether a failed statement's SQLSTATE says the database refused
/// the data itself (data exceptions, integrity rules other than the unique
/// keys the store relies on, program limits): something about one request,
/// not about the group or the connection.
bool refuses_data(const std::string& state) {
  if (state.size() != 5)
    return false;
  if (state.rfind("22", 0) == 0 || state.rfind("54", 0) == 0)
    return true;
  return state.rfind("23", 0) == 0 && state != unique_violation;
}

/// Adds the conditions of `f` to `where`, as parameters after those in
/// `ps`, and a letter per condition to the statement's `name`.
void add_filter(const event_filter& f, std::string& where, params& ps,
                std::string& name) {
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
}

/// Collects array columns of the rows one group inserts.
struct insert_columns {
  // Values in binary format; an empty string in a nullable uuid column is
  // NULL.
  std::vector<std::string> id, etype, ever, atype, aid, aver, tenant, occ, corr,
    caus, actor, meta, payload;
  // Predecessors that must exist: (type, id, version) of the version
  // before each stream's first new row, when that row is not version 1.
  std::vector<std::string> pred_type, pred_id, pred_version;
  std::unordered_set<stream_id, stream_hash> streams;

  void add(const event_data& ev) {
    using namespace detail::pg;
    if (streams.insert(ev.stream()).second && ev.aggregate_version > 1) {
      pred_type.push_back(ev.aggregate_type);
      pred_id.push_back(binary_uuid(ev.aggregate_id));
      pred_version.push_back(binary_int8(ev.aggregate_version - 1));
    }
    id.push_back(binary_uuid(ev.event_id));
    etype.push_back(ev.event_type);
    ever.push_back(binary_int4(ev.event_version));
    atype.push_back(ev.aggregate_type);
    aid.push_back(binary_uuid(ev.aggregate_id));
    aver.push_back(binary_int8(ev.aggregate_version));
    tenant.push_back(ev.tenant_id ? binary_uuid(*ev.tenant_id) : "");
    // Binary timestamptz: microseconds since 2000-01-01 UTC (exact; an
    // interval product would go through a double and lose microseconds
    // beyond about 285 years from 1970).
    occ.push_back(binary_int8(ev.occurred_at.time_since_epoch().count()
                              - pg_epoch_offset_us));
    corr.push_back(ev.correlation_id ? binary_uuid(*ev.correlation_id) : "");
    caus.push_back(ev.causation_id ? binary_uuid(*ev.causation_id) : "");
    actor.push_back(ev.actor_id);
    meta.push_back(ev.metadata);
    payload.push_back(ev.payload);
  }

  bool empty() const {
    return id.empty();
  }

  /// Parameters of `write_sql` and `write_outbox_sql`.
  params write_params(const uuid& write_id, const uuid& writer) const {
    using namespace detail::pg;
    params ps;
    put_binary(ps, uuid_oid, id);
    put_binary(ps, text_oid, etype);
    put_binary(ps, int4_oid, ever);
    put_binary(ps, text_oid, atype);
    put_binary(ps, uuid_oid, aid);
    put_binary(ps, int8_oid, aver);
    put_binary(ps, uuid_oid, tenant, true);
    put_binary(ps, timestamptz_oid, occ);
    put_binary(ps, uuid_oid, corr, true);
    put_binary(ps, uuid_oid, caus, true);
    put_binary(ps, text_oid, actor);
    put_binary(ps, text_oid, meta);
    put_binary(ps, text_oid, payload);
    ps.add(static_cast<int64_t>(id.size()));
    put_binary(ps, text_oid, pred_type);
    put_binary(ps, uuid_oid, pred_id);
    put_binary(ps, int8_oid, pred_version);
    ps.add(write_id);
    ps.add(writer);
    return ps;
  }

  /// Parameters of `write_one_sql`, for a group of one event.
  params write_one_params(const uuid& write_id, const uuid& writer) const {
    params ps;
    auto put = [&ps](const std::string& x, bool nullable = false) {
      if (nullable && x.empty())
        ps.add_null();
      else
        ps.add_binary(x);
    };
    put(id[0]);
    put(etype[0]);
    put(ever[0]);
    put(atype[0]);
    put(aid[0]);
    put(aver[0]);
    put(tenant[0], true);
    put(occ[0]);
    put(corr[0], true);
    put(caus[0], true);
    put(actor[0]);
    put(meta[0]);
    put(payload[0]);
    ps.add(write_id);
    ps.add(writer);
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
    : cfg_(cfg), partitioned_(partitioned),
      readers_(cfg, cfg.read_connections, {}, cfg.read_connections),
      // The writers' statements are the same every time but for their
      // arrays: a plan made once serves them all, where the planner's
      // default would plan the write statement again on every call (about
      // 200 us here).
      writers_(cfg, cfg.writer_connections,
               "SET plan_cache_mode = force_generic_plan;"),
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

  store_health check_health() override {
    store_health h;
    h.expected_schema_version = postgres_schema_version();
    auto start = std::chrono::steady_clock::now();
    auto r = with_reader([&](connection& c) -> caf::expected<int> {
      auto one = c.exec("SELECT 1");
      if (!one)
        return std::move(one.error());
      h.reachable = true;
      auto missing
        = c.exec("SELECT t FROM unnest(ARRAY['schema_migrations', 'events',"
                 " 'es_position', 'event_outbox', 'projection_checkpoints',"
                 " 'dead_letter_queue', 'snapshots']) AS t"
                 " WHERE to_regclass(t) IS NULL ORDER BY t");
      if (!missing)
        return std::move(missing.error());
      for (int i = 0; i < missing->rows(); ++i)
        h.missing_tables.push_back(missing->text(i, 0));
      if (!h.missing_tables.empty())
        return 0;
      auto version = c.exec("SELECT COALESCE(MAX(version), 0)::text"
                            " FROM schema_migrations");
      if (!version)
        return std::move(version.error());
      h.schema_version = std::stoi(version->text(0, 0));
      return 0;
    });
    detail::settle_health(h, r ? caf::error{} : r.error(), start);
    return h;
  }

  store_metrics metrics() const override {
    auto result = metrics_.snapshot();
    auto use = readers_.usage();
    result.read_connections_open = use.open;
    result.read_connections_in_use = use.in_use;
    result.read_connections_waiting = use.waiting;
    result.read_waits_timed_out = use.timed_out;
    return result;
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
    detail::metrics_counter::call_timer timer{metrics_};
    auto rejected
      = detail::normalize_requests(requests, cfg_.limits, cfg_.registry.get());
    detail::write_job job;
    job.requests = &requests;
    job.rejected = &rejected;
    queue_.submit(job);
    for (const auto& res : job.results)
      metrics_.count(res);
    return std::move(job.results);
  }

  caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests) override {
    return detail::append_atomic_through(
      queue_, std::move(requests), cfg_.limits, cfg_.registry.get(), metrics_);
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& opts) override {
    auto page = detail::page_size(opts.max_count, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = static_cast<int64_t>(*page);
    bool forwards = opts.direction == read_direction::forwards;
    constexpr auto max = std::numeric_limits<int64_t>::max();
    int64_t from = forwards ? std::max<int64_t>(opts.from_version, 1)
                            : (opts.from_version > 0 ? opts.from_version : max);
    int64_t bound = forwards ? (opts.to_version > 0 ? opts.to_version : max)
                             : std::max<int64_t>(opts.to_version, 1);
    // One statement: the head, what the stream's control events hide
    // (through the partial index of schema 5: usually nothing), and the
    // page of what is visible. The head is the last row of a backward
    // index scan: the prepared statement's generic plan computed MAX()
    // by scanning the whole stream on every page.
    std::string sql
      = "WITH h AS (SELECT COALESCE((SELECT aggregate_version FROM events"
        " WHERE aggregate_type = $1 AND aggregate_id = $2::uuid"
        " ORDER BY aggregate_version DESC LIMIT 1), 0) AS v),"
        " c AS (SELECT COALESCE(MAX(aggregate_version) FILTER (WHERE"
        " event_type = 'es.StreamDeleted'), 0) AS d,"
        " COALESCE(bool_or(event_type = 'es.StreamTombstoned'), false) AS x,"
        " GREATEST(COALESCE(MAX((payload->>'before')::bigint) FILTER (WHERE"
        " event_type = 'es.StreamTruncated'), 1), 1) AS tb"
        " FROM events WHERE aggregate_type = $1 AND aggregate_id = $2::uuid"
        " AND event_type IN ('es.StreamDeleted', 'es.StreamTombstoned',"
        " 'es.StreamTruncated'))"
        " SELECT h.v, c.d, c.x, GREATEST(c.d, c.tb), ";
    sql += event_columns;
    sql += forwards ? " FROM h CROSS JOIN c LEFT JOIN LATERAL (SELECT * FROM"
                      " events WHERE aggregate_type = $1"
                      " AND aggregate_id = $2::uuid AND aggregate_version >="
                      " GREATEST($3, c.d, c.tb) AND aggregate_version <= $4"
                      " ORDER BY aggregate_version ASC LIMIT $5) e ON true"
                      " ORDER BY e.aggregate_version ASC"
                    : " FROM h CROSS JOIN c LEFT JOIN LATERAL (SELECT * FROM"
                      " events WHERE aggregate_type = $1"
                      " AND aggregate_id = $2::uuid AND aggregate_version <= $3"
                      " AND aggregate_version >= GREATEST($4, c.d, c.tb)"
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
    int64_t deleted_at = 0;
    bool tombstoned = false;
    for (int row = 0; row < r->rows(); ++row) {
      slice.stream_version = r->int8(row, 0);
      deleted_at = r->int8(row, 1);
      tombstoned = r->boolean(row, 2);
      slice.first_version = r->int8(row, 3);
      if (!r->is_null(row, 4))
        slice.events.push_back(read_event(*r, row, 4));
    }
    if (tombstoned || (deleted_at > 0 && deleted_at == slice.stream_version)) {
      // Rare: one more look, for the tenant the answer names.
      std::optional<uuid> tenant;
      params tp;
      tp.add(stream.aggregate_type);
      tp.add(stream.aggregate_id);
      auto t = with_reader([&](connection& c) {
        return c.run("es_stream_tenant",
                     "SELECT tenant_id FROM events WHERE aggregate_type = $1"
                     " AND aggregate_id = $2::uuid"
                     " ORDER BY aggregate_version DESC LIMIT 1",
                     tp, true);
      });
      if (!t)
        return std::move(t.error());
      if (t->rows() > 0)
        tenant = t->opt_uuid(0, 0);
      return detail::make_stream_deleted(stream, tombstoned, tenant);
    }
    if (forwards)
      from = std::max(from, slice.first_version);
    else
      bound = std::max(bound, slice.first_version);
    if (slice.events.empty()) {
      slice.end_of_stream = true;
      slice.next_version = from;
      metrics_.count_read(0);
      return slice;
    }
    auto last = slice.events.back().aggregate_version;
    if (forwards) {
      slice.next_version
        = last < std::numeric_limits<int64_t>::max() ? last + 1 : last;
      slice.end_of_stream = last >= std::min(bound, slice.stream_version);
    } else {
      slice.next_version = last - 1;
      slice.end_of_stream = last <= bound;
    }
    metrics_.count_read(slice.events.size());
    return slice;
  }

  caf::expected<all_slice> read_all(const read_all_options& opts) override {
    all_slice slice;
    auto err = read_feed(opts, slice, true, [&](const result& r, int row) {
      slice.events.push_back(read_event(r, row, 1));
      return true;
    });
    if (err)
      return err;
    return slice;
  }

  caf::expected<all_slice>
  visit_all(const read_all_options& opts,
            const std::function<bool(const event_view&)>& fn) override {
    all_slice slice;
    auto err = read_feed(opts, slice, false, [&](const result& r, int row) {
      return fn(row_view{r, row, 1});
    });
    if (err)
      return err;
    return slice;
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& opts) override {
    auto size = detail::page_size(opts.max_count, cfg_.limits);
    if (!size)
      return std::move(size.error());
    auto count = static_cast<int64_t>(*size);
    // The chain up to the head as of this statement's snapshot, through
    // the correlation index and the event id index.
    std::string name = "es_read_corr_";
    std::string where = " WHERE global_position > $1 AND global_position <="
                        " h.p AND (correlation_id = $2::uuid"
                        " OR event_id = $2::uuid)";
    params ps;
    ps.add(opts.after_position);
    ps.add(correlation_id);
    ps.add(count);
    add_filter(opts.filter, where, ps, name);
    auto page = feed_page(name, where, ps);
    if (!page)
      return std::move(page.error());
    all_slice slice;
    slice.events.reserve(page->order.size());
    for (auto row : page->order)
      slice.events.push_back(read_event(page->r, row, 1));
    slice.end_of_feed = static_cast<int64_t>(slice.events.size()) < count;
    slice.next_position = slice.end_of_feed
                            ? std::max(page->head, opts.after_position)
                            : slice.events.back().global_position;
    metrics_.count_read(slice.events.size());
    return slice;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    params ps;
    ps.add(stream.aggregate_type);
    ps.add(stream.aggregate_id);
    auto r = with_reader([&](connection& c) {
      return c.run("es_stream_version",
                   "SELECT aggregate_version, event_type, tenant_id"
                   " FROM events WHERE aggregate_type = $1"
                   " AND aggregate_id = $2::uuid"
                   " ORDER BY aggregate_version DESC LIMIT 1",
                   ps, true);
    });
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return int64_t{0};
    detail::stream_head head;
    head.set_last_type(r->view(0, 1));
    if (head.deleted || head.tombstoned)
      return detail::make_stream_deleted(stream, head.tombstoned,
                                         r->opt_uuid(0, 2));
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
    auto r = with_reader([&](connection& c) -> caf::expected<result> {
      params ps;
      if (auto err = appenders(c, ps))
        return err;
      return c.run("es_head", head_sql(cfg_.feed, 1), ps, true);
    });
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

private:
  /// A page of the feed as the server sent it.
  struct feed_rows {
    result r;
    /// The rows holding an event, in position order.
    std::vector<int> order;
    /// The head position as of the statement's snapshot.
    int64_t head = 0;
  };

  /// Reads a page of the feed: the events after $1 matching `where`, at
  /// most $3, and the head position, in one statement (one snapshot, so a
  /// reader continuing from the head misses nothing).
  caf::expected<feed_rows> feed_page(const std::string& name,
                                     const std::string& where,
                                     const params& ps) {
    // MATERIALIZED: the head is computed once and the page and the answer
    // use the same value (the overlapping feed's horizon reads the lock
    // table, which two evaluations could see differently).
    std::string sql = "WITH h AS MATERIALIZED (";
    sql += head_sql(cfg_.feed, ps.size() + 1);
    sql += ") SELECT h.p, ";
    sql += event_columns;
    sql += " FROM h LEFT JOIN LATERAL (SELECT * FROM events";
    sql += where;
    // No ORDER BY outside: sorting the page's wide rows again was most of
    // the statement's time. The nested loop over the one row of h keeps
    // the lateral page's order; the loop below checks it.
    sql += " ORDER BY global_position ASC LIMIT $3) e ON true";
    auto r = with_reader([&](connection& c) -> caf::expected<result> {
      auto all = ps;
      if (auto err = appenders(c, all))
        return err;
      return c.run(name.c_str(), sql, all, true);
    });
    if (!r)
      return std::move(r.error());
    feed_rows page{std::move(*r), {}, 0};
    const auto& res = page.r;
    page.order.reserve(static_cast<size_t>(res.rows()));
    bool sorted = true;
    int64_t last = 0;
    for (int row = 0; row < res.rows(); ++row) {
      page.head = res.int8(row, 0);
      if (res.is_null(row, 1))
        continue;
      auto pos = res.int8(row, 1);
      sorted = sorted && (page.order.empty() || last < pos);
      last = pos;
      page.order.push_back(row);
    }
    if (!sorted)
      std::sort(page.order.begin(), page.order.end(), [&res](int x, int y) {
        return res.int8(x, 1) < res.int8(y, 1);
      });
    return page;
  }

  /// Reads one page of the global feed, handing each event's row to
  /// `visit` in position order until it returns false, and fills in the
  /// page's bounds (`read_all`, `visit_all`). `owning` reserves room for
  /// the events in `slice`.
  template <class Visit>
  caf::error read_feed(const read_all_options& opts, all_slice& slice,
                       bool owning, Visit&& visit) {
    auto size = detail::feed_page_size(opts, cfg_.limits);
    if (!size)
      return std::move(size.error());
    auto count = static_cast<int64_t>(*size);
    const auto& f = opts.filter;
    int64_t window = f.empty() ? count : std::max<int64_t>(count * 64, 65536);
    // One statement, one snapshot: the head and the page must agree, or a
    // filtered reader could skip events committed between two queries.
    std::string name = "es_read_all_";
    std::string where = " WHERE global_position > $1 AND global_position <="
                        " LEAST(h.p, $2)";
    // Saturating: a checkpoint near the largest position must not wrap.
    bool saturated
      = opts.after_position > std::numeric_limits<int64_t>::max() - window;
    params ps;
    ps.add(opts.after_position);
    ps.add(saturated ? std::numeric_limits<int64_t>::max()
                     : opts.after_position + window);
    ps.add(count);
    add_filter(f, where, ps, name);
    auto page = feed_page(name, where, ps);
    if (!page)
      return std::move(page.error());
    if (owning)
      slice.events.reserve(page->order.size());
    slice.gaps_final = cfg_.feed == postgres_feed::overlapping;
    size_t seen = 0;
    for (auto row : page->order) {
      ++seen;
      if (!visit(page->r, row)) {
        slice.next_position = page->r.int8(row, 1);
        slice.end_of_feed = false;
        metrics_.count_read(seen);
        return caf::none;
      }
    }
    auto upper = saturated ? page->head
                           : std::min(page->head, opts.after_position + window);
    if (static_cast<int64_t>(seen) == count)
      slice.next_position = page->r.int8(page->order.back(), 1);
    else
      slice.next_position = std::max(upper, opts.after_position);
    slice.end_of_feed = slice.next_position >= page->head;
    metrics_.count_read(seen);
    return caf::none;
  }

  /// In the overlapping feed, adds the two parameters of `es_horizon` to
  /// `ps`: the store's running appenders and the xmax of the snapshot of
  /// the statement that looked for them, read before the page's statement
  /// takes its own snapshot (see schema.cpp).
  caf::error appenders(connection& c, params& ps) {
    if (cfg_.feed == postgres_feed::serialized)
      return caf::none;
    auto r = c.run("es_appenders",
                   "SELECT es_appenders()::text,"
                   " pg_snapshot_xmax(pg_current_snapshot())::text",
                   params{}, false);
    if (!r)
      return std::move(r.error());
    ps.add(r->text(0, 0));
    ps.add(r->text(0, 1));
    return caf::none;
  }

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

  // -- group commit -----------------------------------------------------------

  /// One request of a group.
  struct slot {
    detail::write_job* job;
    size_t index;
    /// The versions of its events as the caller gave them: a group decided
    /// again starts from these, not from versions an earlier decision
    /// assigned.
    std::vector<int64_t> given;
  };

  using slots = std::vector<slot>;

  using head_map
    = std::unordered_map<stream_id, detail::stream_head, stream_hash>;

  static append_request& request_of(const slot& s) {
    return (*s.job->requests)[s.index];
  }

  static caf::expected<append_result>& result_of(const slot& s) {
    return s.job->results[s.index];
  }

  /// Puts the caller's versions back into the request's events.
  static void restore(const slot& s) {
    size_t n = 0;
    for (auto& ev : request_of(s).events)
      ev.aggregate_version = s.given[n++];
  }

  static void fail(const slots& xs, const caf::error& err) {
    for (const auto& s : xs)
      result_of(s) = err;
  }

  /// Answers `xs` with `commit_outcome_unknown`, naming what hid the
  /// outcome.
  static void fail_unknown(const slots& xs, const caf::error& cause) {
    fail(xs, make_store_error(store_errc::commit_outcome_unknown,
                              "the connection broke while the append was "
                              "committing and its outcome could not be "
                              "established ("
                                + describe(cause)
                                + "); retry with the same event ids"));
  }

  /// The writer connection of one group: replaced when it breaks, and
  /// remembering which session it used last.
  class writer_lease {
  public:
    explicit writer_lease(pool& p) : pool_(p) {
      // nop
    }

    /// Returns a usable connection, opening a fresh one when the last one
    /// broke.
    caf::expected<connection*> get() {
      if (lease_ && (*lease_)->ok())
        return &**lease_;
      drop();
      auto l = pool_.take();
      if (!l)
        return std::move(l.error());
      lease_.emplace(std::move(*l));
      return &**lease_;
    }

    /// Lets go of the current connection (it goes back to the pool only if
    /// it still works).
    void drop() {
      lease_.reset();
    }

  private:
    pool& pool_;
    std::optional<pool::lease> lease_;
  };

  /// A write whose commit was in flight when its connection broke: the
  /// server session it ran on, the connection's key and the id the write
  /// left in `es_write_marks` if it committed.
  struct lost_write {
    int pid = 0;
    std::string started;
    uuid writer;
    uuid write_id;
  };

  /// Commits a group: optimistically first (one round trip while nothing
  /// is locked, see `commit_optimistic`), and under the position lock when
  /// that cannot decide every request (see `commit_locked`).
  void commit_group(const std::vector<detail::write_job*>& group) {
    slots all;
    for (auto* j : group) {
      j->results.clear();
      for (size_t i = 0; i < j->requests->size(); ++i) {
        if ((*j->rejected)[i]) {
          j->results.emplace_back((*j->rejected)[i]);
          continue;
        }
        j->results.emplace_back(caf::error{});
        slot s{j, i, {}};
        for (const auto& ev : (*j->requests)[i].events)
          s.given.push_back(ev.aggregate_version);
        all.push_back(std::move(s));
      }
    }
    if (all.empty())
      return;
    writer_lease w{writers_};
    lost_write lost_on;
    switch (commit_optimistic(w, all, lost_on)) {
      case optimistic_outcome::committed: return;
      case optimistic_outcome::in_doubt:
        redo_after_loss(w, all, all, lost_on);
        return;
      case optimistic_outcome::decide_again:
        metrics_.count_decided_again();
        commit_locked(w, all, false);
        return;
    }
  }

  enum class optimistic_outcome { committed, decide_again, in_doubt };

  /// Tries to commit the group without holding the position lock while
  /// deciding. Stream heads come from the last heads this store wrote or
  /// read (`known_heads_`), from the assumption that a `no_stream` stream
  /// is new, or from one read outside any transaction; the requests are
  /// decided on them and the accepted rows go out as one pipeline (one
  /// implicit transaction) whose statement takes the position lock itself,
  /// so the lock is held only while the server inserts and commits.
  ///
  /// A head can only be stale by being behind, unless acknowledged data was
  /// lost (a restore, a failover to a standby that missed commits). Behind,
  /// the insert hits the unique (aggregate, version) key; ahead, the
  /// statement finds the predecessor of a stream's first new version
  /// missing and writes nothing; a stored event id hits the unique event id
  /// key. Either way nothing is written and the group is decided again
  /// under the lock on fresh state. So is any request this path would
  /// refuse (conflict, tenant, replay), so that refusals always come from
  /// fresh reads. Returns `in_doubt` (with the session in `lost_on`) when
  /// the connection broke while the commit may have happened.
  optimistic_outcome commit_optimistic(writer_lease& w, slots& xs,
                                       lost_write& lost_on) {
    auto conn = w.get();
    if (!conn)
      return optimistic_outcome::decide_again;
    head_map heads;
    std::vector<std::string> types;
    std::vector<std::string> ids;
    {
      std::lock_guard guard{heads_mtx_};
      for (auto& s : xs) {
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
      auto got = pipeline(**conn, calls);
      if (!got)
        return optimistic_outcome::decide_again;
      const auto& found = got.results[0];
      for (int row = 0; row < found.rows(); ++row) {
        auto& head
          = heads[stream_id{found.text(row, 0), found.uuid_at(row, 1)}];
        head = detail::stream_head{found.int8(row, 2), found.opt_uuid(row, 3)};
        head.set_last_type(found.view(row, 4));
      }
    }
    std::unordered_set<uuid> seen;
    insert_columns rows;
    std::vector<append_result> decided;
    decided.reserve(xs.size());
    int64_t position = 0; // relative to the group's first position - 1
    for (auto& s : xs) {
      auto& req = request_of(s);
      for (const auto& ev : req.events)
        if (!seen.insert(ev.event_id).second)
          return optimistic_outcome::decide_again;
      auto& head = heads[req.stream];
      if (detail::check_and_assign_versions(req.stream, req.expected, head,
                                            req.events))
        return optimistic_outcome::decide_again;
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
      head.set_last_type(req.events.back().event_type);
      decided.push_back(std::move(res));
    }
    // No BEGIN and COMMIT: the statements of one pipeline sync run in one
    // implicit transaction, which commits at the sync (or rolls back
    // entirely at the first error).
    std::vector<call> calls;
    auto write_id = uuid::random();
    add_write(calls, rows, write_id, (*conn)->key());
    auto done = pipeline(**conn, calls);
    if (done && done.results[0].rows() == 1) {
      int64_t base = done.results[0].int8(0, 0);
      for (size_t k = 0; k < xs.size(); ++k) {
        decided[k].first_position += base;
        decided[k].last_position += base;
        result_of(xs[k]) = std::move(decided[k]);
      }
      remember(heads);
      metrics_.count_transaction(xs.size());
      return optimistic_outcome::committed;
    }
    if (done) {
      // A remembered head is ahead of the log: start over from the log.
      forget_heads();
      return optimistic_outcome::decide_again;
    }
    abandon(**conn);
    if (done.in_doubt) {
      forget_heads();
      lost_on = lost_write{(*conn)->backend_pid(), (*conn)->backend_start(),
                           (*conn)->key(), write_id};
      w.drop();
      return optimistic_outcome::in_doubt;
    }
    return optimistic_outcome::decide_again;
  }

  /// Adds the statement that writes `rows` (and their outbox rows) as the
  /// write `write_id`.
  void add_write(std::vector<call>& calls, const insert_columns& rows,
                 const uuid& write_id, const uuid& writer) {
    // A store has one feed and one layout: the names need not tell them
    // apart.
    auto base = cfg_.feed == postgres_feed::serialized ? base_from::counter
                                                       : base_from::reserve;
    if (rows.id.size() == 1)
      calls.push_back({cfg_.outbox ? "es_write1_ob" : "es_write1",
                       &write_one_sql(base, cfg_.outbox, partitioned_),
                       rows.write_one_params(write_id, writer), true});
    else
      calls.push_back({cfg_.outbox ? "es_write_ob" : "es_write",
                       &write_sql(base, cfg_.outbox, partitioned_),
                       rows.write_params(write_id, writer), true});
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

  /// Forgets every remembered head: after a broken connection the server
  /// may be another one (a failover) that lacks what this store wrote.
  void forget_heads() {
    std::lock_guard guard{heads_mtx_};
    known_heads_.clear();
  }

  /// Commits `xs` in one transaction and two round trips. The first takes
  /// the position lock and fetches, for every stream and event id of the
  /// group, what the store holds; the rules of `append_rules.hpp` then
  /// decide each request in order, exactly as on the other adapters; the
  /// second round trip inserts the accepted events with one statement,
  /// moves the position counter and commits.
  ///
  /// A request whose answer rests on an earlier request of the group (a
  /// replay of its events, a refusal because of its version) shares that
  /// request's fate: if the transaction does not commit, it gets the same
  /// error. When the database refuses the data of the group (a constraint,
  /// a value it cannot store), the group is split in halves, each decided
  /// and committed again, until the request it refuses stands alone; the
  /// others succeed. When the connection breaks while the commit may have
  /// happened, the outcome is settled (`redo_after_loss`). With `resolving`
  /// this is itself such a settling run, and what cannot be established
  /// becomes `commit_outcome_unknown`.
  void commit_locked(writer_lease& w, const slots& xs, bool resolving,
                     int reconnects = 1, int races = max_races) {
    for (const auto& s : xs)
      restore(s);
    auto fail_or_unknown = [&](const slots& ys, const caf::error& err) {
      if (resolving)
        fail_unknown(ys, err);
      else
        fail(ys, err);
    };
    // Round trip 1: lock, then read heads and stored ids (fresh snapshots
    // after the lock, so nothing committed before it is missed). It
    // writes nothing: a broken connection is replaced and the trip made
    // again.
    std::vector<std::string> types;
    std::vector<std::string> ids;
    std::vector<std::string> event_ids;
    for (const auto& s : xs) {
      const auto& req = request_of(s);
      types.push_back(req.stream.aggregate_type);
      ids.push_back(req.stream.aggregate_id.to_string());
      for (const auto& ev : req.events)
        event_ids.push_back(ev.event_id.to_string());
    }
    bool overlapping = cfg_.feed == postgres_feed::overlapping;
    connection* conn = nullptr;
    pipeline_result got;
    for (;;) {
      auto c = w.get();
      if (!c) {
        fail_or_unknown(xs, c.error());
        return;
      }
      conn = *c;
      std::vector<call> first;
      first.push_back({"es_begin", &begin_sql, {}, false});
      // The overlapping feed does not lock the feed: positions are
      // reserved by the write. Deciders of the same streams take their
      // streams' locks in one order, so that they do not keep beating each
      // other; unique keys catch what an optimistic writer commits
      // meanwhile.
      if (overlapping) {
        params ls;
        insert_columns::put(ls, types);
        insert_columns::put(ls, ids);
        first.push_back(
          {"es_lock_streams", &lock_streams_sql, std::move(ls), true});
      } else {
        first.push_back({"es_lock", &lock_sql, {}, true});
      }
      params ps;
      insert_columns::put(ps, types);
      insert_columns::put(ps, ids);
      insert_columns::put(ps, event_ids);
      if (partitioned_)
        first.push_back(
          {"es_lookup_p", &lookup_partitioned_sql, std::move(ps), true});
      else
        first.push_back({"es_lookup", &lookup_sql, std::move(ps), true});
      got = pipeline(*conn, first);
      if (got)
        break;
      abandon(*conn);
      if (conn->ok() || reconnects-- <= 0) {
        fail_or_unknown(xs, got.error);
        return;
      }
      forget_heads();
      w.drop();
    }
    auto& rs = got.results;
    if (!overlapping && rs[1].rows() != 1) {
      abandon(*conn);
      fail_or_unknown(xs, make_store_error(store_errc::invalid_argument,
                                           "the database's feed was switched "
                                           "to overlapping while this store "
                                           "ran serialized; nothing was "
                                           "written: reopen the store"));
      return;
    }
    // Overlapping: positions relative to the base the write reserves.
    int64_t position = overlapping ? 0 : rs[1].int8(0, 0);
    std::map<stream_id, detail::stream_head> heads;
    std::unordered_map<uuid, detail::stored_location> stored;
    const auto& found = rs[2];
    for (int row = 0; row < found.rows(); ++row) {
      stream_id sid{found.text(row, 1), found.uuid_at(row, 2)};
      if (found.is_null(row, 0)) {
        auto& head = heads[sid];
        head = detail::stream_head{found.int8(row, 3), found.opt_uuid(row, 4)};
        head.set_last_type(found.view(row, 6));
      } else
        stored[found.uuid_at(row, 0)] = detail::stored_location{
          sid, found.int8(row, 3), found.int8(row, 5),
          detail::content_digest(found.view(row, 6), found.int4(row, 7),
                                 found.view(row, 8))};
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
    // Requests that stand or fall with this transaction, and which of them
    // it writes.
    slots bound;
    slots accepted;
    // Answers whose positions are relative to the base the write reserves
    // (overlapping feed): the accepted requests and replays of them.
    slots relative;
    std::unordered_set<uuid> group_ids;
    std::unordered_set<stream_id, stream_hash> group_streams;
    // Atomic jobs are decided as a whole first, on a copy of the state: a
    // job with a refused request writes none of them.
    const detail::write_job* checked = nullptr;
    bool refused_job = false;
    for (size_t n = 0; n < xs.size(); ++n) {
      const auto& s = xs[n];
      auto& req = request_of(s);
      auto& out = result_of(s);
      bool depends = group_streams.count(req.stream) > 0;
      for (size_t k = 0; !depends && k < req.events.size(); ++k)
        depends = group_ids.count(req.events[k].event_id) > 0;
      if (depends)
        bound.push_back(s);
      if (s.job->atomic && s.job != checked) {
        checked = s.job;
        refused_job = !decide_atomic(xs, n, heads, lookup, position);
      }
      if (s.job->atomic && refused_job)
        continue;
      auto replay = detail::check_replay(req.stream, req.events, lookup, true);
      if (!replay) {
        out = std::move(replay.error());
        continue;
      }
      if (*replay) {
        if (group_ids.count(req.events.front().event_id) > 0)
          relative.push_back(s);
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
          = detail::stored_location{req.stream, ev.aggregate_version, position,
                                    detail::content_digest(ev)};
        group_ids.insert(ev.event_id);
      }
      group_streams.insert(req.stream);
      res.last_position = position;
      head.version = res.last_version;
      head.tenant_id = req.events.front().tenant_id;
      head.set_last_type(req.events.back().event_type);
      out = std::move(res);
      if (!depends)
        bound.push_back(s);
      accepted.push_back(s);
      relative.push_back(s);
    }
    // `bound` in group order (a request was added when seen).
    if (rows.empty()) {
      // Nothing to write: every answer rests on committed rows.
      std::vector<call> end;
      end.push_back({"es_rollback", &rollback_sql, {}, false});
      static_cast<void>(pipeline(*conn, end));
      remember(heads);
      return;
    }
    // Round trip 2: write and commit. The statement moves the counter from
    // the locked value, which is where this transaction's positions start.
    std::vector<call> second;
    auto write_id = uuid::random();
    add_write(second, rows, write_id, conn->key());
    second.push_back({"es_commit", &commit_sql, {}, false, true});
    auto done = pipeline(*conn, second);
    if (done && done.results[0].rows() == 1) {
      if (overlapping) {
        int64_t base = done.results[0].int8(0, 0);
        for (const auto& x : relative) {
          auto& res = result_of(x);
          res->first_position += base;
          res->last_position += base;
        }
      }
      remember(heads);
      metrics_.count_transaction(xs.size());
      return;
    }
    abandon(*conn);
    if (done && overlapping && races > 0) {
      // Decided on fresh reads but nothing locked: another writer took a
      // version or an id meanwhile. Decide again.
      metrics_.count_decided_again();
      commit_locked(w, bound, resolving, reconnects, races - 1);
      return;
    }
    if (done) {
      // Decided under the lock, yet a version below a head is missing:
      // the log itself has a hole (a deleted row).
      fail(bound, make_store_error(store_errc::internal,
                                   "a stream of the group lacks a version "
                                   "below its head; nothing was written"));
      return;
    }
    if (done.server_error) {
      // Nothing of the transaction was written.
      // Under the lock a unique key can only fail on a row the lookup
      // could not see: another tenant's under row-level security, or an
      // event id of a detached range partition. Like data the database
      // refuses, it is one request's fault: split until it stands alone.
      bool unseen = done.state == unique_violation;
      if (unseen && overlapping && races > 0) {
        // Nothing locks out other writers while this path decides in the
        // overlapping feed: a unique key is most likely a row another
        // writer committed meanwhile. Decide again on fresh reads; after
        // `max_races` such rounds, take it for a row this session cannot
        // see.
        metrics_.count_decided_again();
        commit_locked(w, bound, resolving, reconnects, races - 1);
        return;
      }
      if (refuses_data(done.state) || unseen) {
        if (auto at = split_point(bound); at > 0) {
          auto mid = bound.begin() + static_cast<ptrdiff_t>(at);
          slots front(bound.begin(), mid);
          slots back(mid, bound.end());
          commit_locked(w, front, resolving);
          commit_locked(w, back, resolving);
          return;
        }
        fail(bound, unseen
                      ? unseen_row_error(done.error)
                      : make_store_error(store_errc::invalid_argument,
                                         "the database refused the append: "
                                           + error_description(done.error)));
        return;
      }
      if (!conn->ok() && reconnects > 0) {
        // The session ended before the commit (killed, restarted): try
        // once more on a fresh one.
        forget_heads();
        w.drop();
        commit_locked(w, bound, resolving, reconnects - 1);
        return;
      }
      fail_or_unknown(bound, done.error);
      return;
    }
    // The connection broke while the commit was in flight.
    forget_heads();
    lost_write lost_on{conn->backend_pid(), conn->backend_start(), conn->key(),
                       write_id};
    w.drop();
    if (resolving) {
      fail_unknown(bound, done.error);
      return;
    }
    redo_after_loss(w, bound, accepted, lost_on);
  }

  /// Decides the requests of the atomic job that starts at `xs[first]` on
  /// copies of the group's state, as `commit_locked` would decide them.
  /// Returns whether all of them would be accepted; otherwise answers each
  /// with its refusal, or with `detail::atomic_sibling_refused` when
  /// another request of the job is the one refused. Leaves the events'
  /// versions as the caller gave them.
  template <class Heads, class Lookup>
  static bool decide_atomic(const slots& xs, size_t first, const Heads& heads,
                            const Lookup& lookup, int64_t position) {
    const auto* job = xs[first].job;
    std::unordered_map<stream_id, detail::stream_head, stream_hash> local;
    std::unordered_map<uuid, detail::stored_location> added;
    auto lookup_all = [&](const uuid& id)
      -> caf::expected<std::optional<detail::stored_location>> {
      if (auto i = added.find(id); i != added.end())
        return std::optional<detail::stored_location>{i->second};
      return lookup(id);
    };
    std::vector<caf::error> outcome;
    bool ok = true;
    size_t end = first;
    for (; end < xs.size() && xs[end].job == job; ++end) {
      auto& req = request_of(xs[end]);
      outcome.emplace_back();
      auto replay
        = detail::check_replay(req.stream, req.events, lookup_all, true);
      if (!replay || *replay) {
        if (!replay) {
          outcome.back() = std::move(replay.error());
          ok = false;
        }
        continue;
      }
      auto i = local.find(req.stream);
      if (i == local.end()) {
        auto known = heads.find(req.stream);
        i = local
              .emplace(req.stream, known == heads.end() ? detail::stream_head{}
                                                        : known->second)
              .first;
      }
      if (auto err = detail::check_and_assign_versions(req.stream, req.expected,
                                                       i->second, req.events)) {
        outcome.back() = std::move(err);
        ok = false;
        continue;
      }
      for (const auto& ev : req.events)
        added[ev.event_id]
          = detail::stored_location{req.stream, ev.aggregate_version,
                                    ++position, detail::content_digest(ev)};
      i->second.version = req.events.back().aggregate_version;
      i->second.tenant_id = req.events.front().tenant_id;
      i->second.set_last_type(req.events.back().event_type);
    }
    for (size_t k = first; k < end; ++k) {
      restore(xs[k]);
      if (!ok)
        result_of(xs[k]) = outcome[k - first]
                             ? std::move(outcome[k - first])
                             : detail::atomic_sibling_refused();
    }
    return ok;
  }

  /// The answer to a request that hit a unique key on a row the store
  /// cannot see (see `commit_locked`): for a stream's version key,
  /// `tenant_mismatch` when sessions name a tenant (the stream is another
  /// tenant's), else `invalid_argument` (its rows are in a detached range
  /// partition); `duplicate_event_id` for an event id key. Nothing was
  /// written.
  caf::error unseen_row_error(const caf::error& err) const {
    // The key's name tells which: event ids are unique through
    // events_event_id_key (plain table) or event_ids_pkey (partitioned).
    auto desc = error_description(err);
    bool id_key = desc.find("\"event_ids_pkey\"") != std::string::npos
                  || desc.find("\"events_event_id_key\"") != std::string::npos;
    if (!id_key && cfg_.session_tenant)
      return make_store_error(store_errc::tenant_mismatch,
                              "the stream belongs to another tenant; "
                              "nothing was written");
    if (!id_key)
      return make_store_error(store_errc::invalid_argument,
                              "the stream has versions this store cannot "
                              "see (in a detached range partition); "
                              "nothing was written");
    return make_store_error(store_errc::duplicate_event_id,
                            "an event id of the append is already taken "
                            "(by another tenant's event, or one of a "
                            "detached partition); nothing was written");
  }

  /// Where to split `xs` in two for deciding again: near the middle, but
  /// never inside an atomic job. Returns 0 when it cannot be
  /// split (one request, or one atomic job).
  static size_t split_point(const slots& xs) {
    if (xs.size() < 2)
      return 0;
    auto at = xs.size() / 2;
    auto inside = [&](size_t k) {
      return k > 0 && k < xs.size() && xs[k].job->atomic
             && xs[k].job == xs[k - 1].job;
    };
    auto up = at;
    while (inside(up))
      ++up;
    if (up < xs.size())
      return up;
    auto down = at;
    while (inside(down))
      --down;
    return down;
  }

  /// Settles a group whose commit was in flight when its connection broke:
  /// waits until the session that ran it has ended (ending it if need be),
  /// so that whatever it committed is visible and nothing of it can still
  /// commit, then decides and commits `xs` again under the lock, which
  /// answers from the log what is stored. When the lost write committed,
  /// the requests in `wrote` were written by this call and are not
  /// reported as replays. Answers `commit_outcome_unknown` where the
  /// session's end cannot be established.
  void redo_after_loss(writer_lease& w, const slots& xs, const slots& wrote,
                       const lost_write& lost) {
    auto committed = settle(w, lost);
    if (!committed) {
      fail_unknown(xs, committed.error());
      return;
    }
    commit_locked(w, xs, true);
    if (!*committed)
      return;
    for (const auto& s : wrote) {
      auto& res = result_of(s);
      if (res && res->deduplicated)
        res->deduplicated = false;
    }
  }

  /// Makes sure the server session of `lost` has ended: waits for it
  /// (ending it first) up to `settle_timeout_ms`, then returns whether its
  /// write committed.
  caf::expected<bool> settle(writer_lease& w, const lost_write& lost) {
    if (lost.pid == 0 || lost.started.empty())
      return make_store_error(store_errc::connection_failed,
                              "the lost session is unknown");
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto conn = w.get();
      if (!conn)
        return std::move(conn.error());
      params ps;
      ps.add(int64_t{lost.pid});
      ps.add(lost.started);
      ps.add(int64_t{settle_timeout_ms});
      auto r = (*conn)->run("es_settle",
                            "SELECT pg_terminate_backend(pid, $3::bigint)"
                            " FROM pg_stat_activity WHERE pid = $1::integer"
                            " AND backend_start = $2::timestamptz",
                            ps, false);
      if (!r) {
        if ((*conn)->ok())
          return std::move(r.error());
        w.drop();
        continue;
      }
      if (r->rows() > 0 && r->text(0, 0) != "t")
        return make_store_error(store_errc::timeout,
                                "the lost session did not end within "
                                  + std::to_string(settle_timeout_ms) + " ms");
      params marker;
      marker.add(lost.writer);
      marker.add(lost.write_id);
      auto m = (*conn)->run("es_read_mark",
                            "SELECT last_write = $2::uuid FROM es_write_marks"
                            " WHERE writer = $1::uuid",
                            marker, false);
      if (!m) {
        if ((*conn)->ok())
          return std::move(m.error());
        w.drop();
        continue;
      }
      bool committed = m->rows() > 0 && m->text(0, 0) == "t";
      // The ended connection's mark is not needed any more. Only removed
      // once read: a removal whose reply was lost must not hide it from a
      // second look.
      params gone;
      gone.add(lost.writer);
      static_cast<void>((*conn)->run(
        "es_drop_mark", "DELETE FROM es_write_marks WHERE writer = $1::uuid",
        gone, false));
      return committed;
    }
    return make_store_error(store_errc::connection_failed,
                            "no connection to settle the lost session");
  }

  /// Leaves a failed transaction so the connection can be reused.
  void abandon(connection* conn) {
    if (!conn->ok())
      return;
    if (PQtransactionStatus(conn->handle()) != PQTRANS_IDLE)
      static_cast<void>(conn->exec("ROLLBACK"));
    // `es_reserve` holds a session lock for a moment; a statement cancelled
    // in that moment (a timeout) would keep it. Nothing else of the store
    // takes session locks on a writer connection.
    if (cfg_.feed == postgres_feed::overlapping)
      static_cast<void>(conn->exec("SELECT pg_advisory_unlock_all()"));
  }

  void abandon(connection& conn) {
    abandon(&conn);
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
  if (cfg.events_partitions > 0 && cfg.events_range_size > 0)
    return make_store_error(store_errc::invalid_argument,
                            "events_partitions and events_range_size "
                            "exclude each other");
  if (cfg.events_partitions < 0 || cfg.events_range_size < 0)
    return make_store_error(store_errc::invalid_argument,
                            "events_partitions and events_range_size must "
                            "not be negative");
  return detail::pg::migrate(
    **conn,
    detail::pg::events_layout{cfg.events_partitions, cfg.events_range_size});
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
  auto variant = (*conn)->exec(
    "SELECT (to_regclass('event_ids') IS NOT NULL)::text,"
    " (SELECT COALESCE(MAX(version), 0) FROM schema_migrations)::text");
  if (!variant)
    return std::move(variant.error());
  bool partitioned = variant->text(0, 0) == "true";
  auto version = std::stoi(variant->text(0, 1));
  if (version < postgres_schema_version())
    return make_store_error(store_errc::migration_failed,
                            "the database schema is at version "
                              + std::to_string(version)
                              + ", this library needs version "
                              + std::to_string(postgres_schema_version())
                              + ": run postgres_migrate as the schema owner");
  // The feed: a store never appends the other feed's way.
  auto feed = detail::pg::read_feed(**conn);
  if (!feed)
    return std::move(feed.error());
  if (*feed != cfg.feed)
    if (auto err = detail::pg::switch_feed(**conn, cfg.feed, true,
                                           cfg.statement_timeout.count() > 0
                                             ? cfg.statement_timeout
                                             : std::chrono::minutes{1}))
      return err;
  // Marks of connections long gone (see es_write_marks).
  if (auto swept
      = (*conn)->exec("DELETE FROM es_write_marks"
                      " WHERE updated_at < now() - interval '1 day'");
      !swept)
    return std::move(swept.error());
  return std::make_shared<postgres_event_store>(std::move(cfg), partitioned);
}

} // namespace es
