// The PostgreSQL state stores: snapshots, checkpoints, dead letters.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/state_stores.hpp"

#include "connection.hpp"
#include "pool.hpp"
#include "schema.hpp"
#include "state_common.hpp"
#include "state_sql.hpp"

namespace es {

namespace {

using detail::pg::connection;
using detail::pg::params;
using detail::pg::pool;
using detail::pg::result;

// Exact to the microsecond: interval input keeps integers, while
// multiplying an interval goes through a double and drifts for times far
// from 1970.
constexpr const char* from_micros_sql
  = "'epoch'::timestamptz + (%s::bigint || ' microseconds')::interval";

std::string at(int n) {
  std::string result = from_micros_sql;
  return result.replace(result.find("%s"), 2, "$" + std::to_string(n));
}

std::string micros(timestamp t) {
  return std::to_string(t.time_since_epoch().count());
}

class pg_state_base {
public:
  explicit pg_state_base(const postgres_config& cfg) : pool_(cfg, 2) {
    // nop
  }

protected:
  caf::expected<result> run(const char* name, const std::string& sql,
                            const params& ps) {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    return (*conn)->run(name, sql, ps, true);
  }

  pool pool_;
};

class pg_snapshot_store final : public snapshot_store, pg_state_base {
public:
  using pg_state_base::pg_state_base;

  caf::expected<bool> save(const snapshot& snap) override {
    params ps;
    ps.add(snap.stream.aggregate_type);
    ps.add(snap.stream.aggregate_id);
    ps.add(snap.version);
    ps.add(int64_t{snap.schema_version});
    ps.add(snap.state);
    ps.add(micros(snap.created_at));
    auto r = run("es_snap_save",
                 "INSERT INTO snapshots (aggregate_type, aggregate_id,"
                 " aggregate_version, schema_version, state, created_at)"
                 " VALUES ($1, $2::uuid, $3, $4, $5, "
                   + at(6)
                   + ") ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE"
                     " SET aggregate_version = excluded.aggregate_version,"
                     " schema_version = excluded.schema_version,"
                     " state = excluded.state,"
                     " created_at = excluded.created_at"
                     " WHERE excluded.aggregate_version >="
                     " snapshots.aggregate_version RETURNING 1",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->rows() > 0;
  }

  caf::expected<std::optional<snapshot>>
  load(const stream_id& stream) override {
    params ps;
    ps.add(stream.aggregate_type);
    ps.add(stream.aggregate_id);
    auto r = run("es_snap_load",
                 "SELECT aggregate_version, schema_version, state, created_at"
                 " FROM snapshots WHERE aggregate_type = $1"
                 " AND aggregate_id = $2::uuid",
                 ps);
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return std::optional<snapshot>{};
    snapshot s;
    s.stream = stream;
    s.version = r->int8(0, 0);
    s.schema_version = r->int4(0, 1);
    s.state = r->text(0, 2);
    s.created_at = r->time_at(0, 3);
    return std::optional<snapshot>{std::move(s)};
  }

  caf::expected<bool> remove(const stream_id& stream) override {
    params ps;
    ps.add(stream.aggregate_type);
    ps.add(stream.aggregate_id);
    auto r = run("es_snap_remove",
                 "DELETE FROM snapshots WHERE aggregate_type = $1"
                 " AND aggregate_id = $2::uuid RETURNING 1",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->rows() > 0;
  }
};

constexpr const char* checkpoint_columns
  = "projection_name, global_position, event_id, event_type,"
    " events_processed, updated_at";

/// The fields of `cp` as $1 ... $6 in column order ($6 in microseconds,
/// see `at`).
params checkpoint_params(const checkpoint& cp) {
  params ps;
  ps.add(cp.projection);
  ps.add(cp.position);
  if (cp.event_id.is_nil())
    ps.add_null();
  else
    ps.add(cp.event_id);
  ps.add(cp.event_type);
  ps.add(cp.events_processed);
  ps.add(micros(cp.updated_at));
  return ps;
}

/// Loads one checkpoint ($1: the projection).
std::string load_checkpoint_sql() {
  return std::string{"SELECT "} + checkpoint_columns
         + " FROM projection_checkpoints WHERE projection_name = $1";
}

checkpoint read_checkpoint(const result& r, int row) {
  checkpoint cp;
  cp.projection = r.text(row, 0);
  cp.position = r.int8(row, 1);
  cp.event_id = r.is_null(row, 2) ? uuid{} : r.uuid_at(row, 2);
  cp.event_type = r.is_null(row, 3) ? std::string{} : r.text(row, 3);
  cp.events_processed = r.int8(row, 4);
  cp.updated_at = r.time_at(row, 5);
  return cp;
}

} // namespace

namespace detail::pg {

caf::expected<checkpoint> save_checkpoint(connection& conn,
                                          const checkpoint& cp) {
  auto ps = checkpoint_params(cp);
  // The upsert changes nothing when the stored checkpoint is further; the
  // second part returns what is stored either way.
  auto r = conn.run("es_cp_save",
                    std::string{"WITH up AS (INSERT INTO projection_checkpoints"
                                " (projection_name, global_position, event_id,"
                                " event_type, events_processed, updated_at)"
                                " VALUES ($1, $2, $3::uuid, $4, $5, "}
                      + at(6)
                      + ") ON CONFLICT (projection_name) DO UPDATE SET"
                        " global_position = excluded.global_position,"
                        " event_id = excluded.event_id,"
                        " event_type = excluded.event_type,"
                        " events_processed = excluded.events_processed,"
                        " updated_at = excluded.updated_at"
                        " WHERE excluded.global_position >="
                        " projection_checkpoints.global_position RETURNING "
                      + checkpoint_columns + ") SELECT " + checkpoint_columns
                      + " FROM up UNION ALL SELECT " + checkpoint_columns
                      + " FROM projection_checkpoints"
                        " WHERE projection_name = $1"
                        " AND NOT EXISTS (SELECT 1 FROM up)",
                    ps, true);
  if (!r)
    return std::move(r.error());
  if (r->rows() == 0)
    return make_store_error(store_errc::internal, "checkpoint vanished");
  return read_checkpoint(*r, 0);
}

caf::expected<checkpoint> save_checkpoint_if(connection& conn,
                                             const checkpoint& cp,
                                             int64_t expected_position) {
  // Under READ COMMITTED the UPDATE waits for a concurrent writer's lock on
  // the row and then checks its WHERE again against what that writer
  // committed; the INSERT waits for a concurrent insert of the same name
  // and then does nothing. Either way, 0 rows means the position is not the
  // expected one, and the SELECT, a statement of its own, sees the one that
  // is. Only a checkpoint that moves away and back between these statements
  // (a reset and new saves) makes us compare again.
  std::optional<int64_t> found;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto ps = checkpoint_params(cp);
    ps.add(expected_position);
    auto updated
      = conn.run("es_cp_save_if_update",
                 "UPDATE projection_checkpoints SET global_position = $2,"
                 " event_id = $3::uuid, event_type = $4, events_processed = $5,"
                 " updated_at = "
                   + at(6)
                   + " WHERE projection_name = $1 AND global_position = $7"
                     " AND global_position <= $2 RETURNING 1",
                 ps, true);
    if (!updated)
      return std::move(updated.error());
    if (updated->rows() > 0)
      return cp;
    if (expected_position == 0) {
      auto inserted = conn.run(
        "es_cp_save_if_insert",
        "INSERT INTO projection_checkpoints (projection_name,"
        " global_position, event_id, event_type, events_processed,"
        " updated_at) VALUES ($1, $2, $3::uuid, $4, $5, "
          + at(6) + ") ON CONFLICT (projection_name) DO NOTHING RETURNING 1",
        checkpoint_params(cp), true);
      if (!inserted)
        return std::move(inserted.error());
      if (inserted->rows() > 0)
        return cp;
    }
    params name;
    name.add(cp.projection);
    auto stored = conn.run("es_cp_load", load_checkpoint_sql(), name, true);
    if (!stored)
      return std::move(stored.error());
    if (stored->rows() == 0) {
      found.reset();
      if (expected_position != 0)
        break;
      continue;
    }
    auto current = read_checkpoint(*stored, 0);
    found = current.position;
    if (current.position != expected_position)
      break;
    if (cp.position < expected_position)
      return current; // Never backwards.
  }
  return make_checkpoint_conflict(cp.projection, expected_position, found);
}

caf::expected<int64_t> add_dead_letter(connection& conn, const dead_letter& e) {
  params ps;
  ps.add(e.projection);
  ps.add(e.event_id);
  ps.add(e.global_position);
  ps.add(e.event_type);
  ps.add(e.event_data);
  ps.add(e.error_message);
  ps.add(e.error_context);
  ps.add(int64_t{e.retry_count});
  ps.add(micros(e.first_failed_at));
  ps.add(micros(e.last_failed_at));
  auto r = conn.run("es_dlq_add",
                    "INSERT INTO dead_letter_queue (projection_name, event_id,"
                    " global_position, event_type, event_data, error_message,"
                    " error_context, retry_count, status, first_failed_at,"
                    " last_failed_at) VALUES ($1, $2::uuid, $3, $4, $5, $6,"
                    " $7, $8, 'failed', "
                      + at(9) + ", " + at(10)
                      + ") ON CONFLICT (projection_name, event_id) DO UPDATE"
                        " SET retry_count = dead_letter_queue.retry_count + 1,"
                        " last_failed_at = excluded.last_failed_at,"
                        " error_message = excluded.error_message,"
                        " error_context = excluded.error_context,"
                        " status = 'failed', resolved_at = NULL,"
                        " resolved_by = NULL RETURNING id",
                    ps, true);
  if (!r)
    return std::move(r.error());
  return r->int8(0, 0);
}

caf::expected<bool> mark_processed(connection& conn,
                                   const std::string& projection,
                                   const uuid& event_id) {
  params ps;
  ps.add(projection);
  ps.add(event_id);
  auto r = conn.run("es_mark_processed",
                    "INSERT INTO processed_events (projection_name, event_id)"
                    " VALUES ($1, $2::uuid) ON CONFLICT DO NOTHING RETURNING 1",
                    ps, true);
  if (!r)
    return std::move(r.error());
  return r->rows() > 0;
}

} // namespace detail::pg

namespace {

// -- leases -------------------------------------------------------------------

/// Takes the advisory lock of a projection: its key hashes the schema the
/// tables live in (the first of the search path) and the name, so stores on
/// other schemas of the database, which have checkpoints of their own, do
/// not exclude each other. Returns whether it got the lock, and the key.
constexpr const char* try_lease_sql
  = "SELECT pg_try_advisory_lock(k), k FROM (SELECT hashtextextended("
    "'es.projection/' || COALESCE(current_schema(), '') || '/' || $1, 0)"
    " AS k) AS lease";

/// Who holds the advisory lock $1 (a bigint key: the high half in classid,
/// the low half in objid, objsubid 1).
constexpr const char* lease_holder_sql
  = "SELECT l.pid, COALESCE(a.application_name, '') FROM pg_locks l"
    " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
    " AND l.classid = (($1::bigint >> 32) & 4294967295)::oid"
    " AND l.objid = ($1::bigint & 4294967295)::oid LIMIT 1";

/// A session-level advisory lock on a connection of its own: held while the
/// session lives, so the server releases it when the process dies or the
/// connection breaks.
class pg_lease final : public projection_lease {
public:
  pg_lease(std::string name, std::unique_ptr<connection> conn, int64_t key)
    : name_(std::move(name)), conn_(std::move(conn)), key_(key),
      pid_(conn_->backend_pid()) {
    // nop
  }

  ~pg_lease() override {
    if (conn_ && conn_->ok()) {
      params ps;
      ps.add(key_);
      static_cast<void>(conn_->run(
        "es_lease_unlock", "SELECT pg_advisory_unlock($1::bigint)", ps, false));
    }
    // Closing the connection ends the session, which releases it anyway.
  }

  const std::string& projection() const override {
    return name_;
  }

  caf::error check() override {
    if (conn_) {
      auto r = conn_->exec("SELECT 1");
      if (r && conn_->ok())
        return caf::none;
      lost_because_ = r ? "the connection broke" : describe(r.error());
      // Whatever happened, give the session up: if the server still has it,
      // closing ends it and frees the lock for a successor.
      conn_.reset();
    }
    return make_store_error(store_errc::lease_lost,
                            "the lease of projection '" + name_
                              + "' is lost: its PostgreSQL session (backend "
                              + std::to_string(pid_)
                              + ") ended: " + lost_because_);
  }

private:
  std::string name_;
  std::unique_ptr<connection> conn_;
  int64_t key_;
  int pid_;
  std::string lost_because_;
};

class pg_checkpoint_store final : public checkpoint_store, pg_state_base {
public:
  using pg_state_base::pg_state_base;

  caf::expected<checkpoint> save(const checkpoint& cp) override {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    return detail::pg::save_checkpoint(**conn, cp);
  }

  caf::expected<checkpoint> save_if(const checkpoint& cp,
                                    int64_t expected_position) override {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    return detail::pg::save_checkpoint_if(**conn, cp, expected_position);
  }

  caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) override {
    // A connection per lease: the lock lives exactly as long as it.
    auto conn = connection::open(pool_.config());
    if (!conn)
      return std::move(conn.error());
    params ps;
    ps.add(name);
    auto r = (*conn)->run("es_lease_try", try_lease_sql, ps, true);
    if (!r)
      return std::move(r.error());
    auto key = r->int8(0, 1);
    if (r->boolean(0, 0))
      return projection_lease_ptr{
        std::make_unique<pg_lease>(name, std::move(*conn), key)};
    std::string msg = "projection '" + name
                      + "' is leased by another holder (PostgreSQL advisory"
                        " lock "
                      + std::to_string(key);
    params key_param;
    key_param.add(key);
    if (auto h
        = (*conn)->run("es_lease_holder", lease_holder_sql, key_param, true);
        h && h->rows() > 0)
      msg += ", held by backend " + std::to_string(h->int4(0, 0))
             + " of application '" + h->text(0, 1) + "'";
    return make_store_error(store_errc::lease_held, msg + ")");
  }

  caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) override {
    params ps;
    ps.add(projection);
    auto r = run("es_cp_load", load_checkpoint_sql(), ps);
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return std::optional<checkpoint>{};
    return std::optional<checkpoint>{read_checkpoint(*r, 0)};
  }

  caf::expected<bool> reset(const std::string& projection) override {
    params ps;
    ps.add(projection);
    auto r = run("es_cp_reset",
                 "DELETE FROM projection_checkpoints WHERE projection_name = $1"
                 " RETURNING 1",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->rows() > 0;
  }

  caf::expected<std::vector<checkpoint>> list() override {
    auto r = run("es_cp_list",
                 std::string{"SELECT "} + checkpoint_columns
                   + " FROM projection_checkpoints"
                     " ORDER BY projection_name COLLATE \"C\"",
                 params{});
    if (!r)
      return std::move(r.error());
    std::vector<checkpoint> result;
    for (int row = 0; row < r->rows(); ++row)
      result.push_back(read_checkpoint(*r, row));
    return result;
  }
};

constexpr const char* dead_letter_columns
  = "id, projection_name, event_id, global_position, event_type, event_data,"
    " error_message, error_context, retry_count, status, first_failed_at,"
    " last_failed_at, resolved_at, resolved_by";

dead_letter read_dead_letter(const result& r, int row) {
  dead_letter d;
  d.id = r.int8(row, 0);
  d.projection = r.text(row, 1);
  d.event_id = r.uuid_at(row, 2);
  d.global_position = r.int8(row, 3);
  d.event_type = r.text(row, 4);
  d.event_data = r.text(row, 5);
  d.error_message = r.text(row, 6);
  d.error_context = r.text(row, 7);
  d.retry_count = r.int4(row, 8);
  d.status = parse_dead_letter_status(r.view(row, 9))
               .value_or(dead_letter_status::failed);
  d.first_failed_at = r.time_at(row, 10);
  d.last_failed_at = r.time_at(row, 11);
  if (!r.is_null(row, 12))
    d.resolved_at = r.time_at(row, 12);
  if (!r.is_null(row, 13))
    d.resolved_by = r.text(row, 13);
  return d;
}

class pg_dead_letter_store final : public dead_letter_store, pg_state_base {
public:
  using pg_state_base::pg_state_base;

  caf::expected<int64_t> add(const dead_letter& e) override {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    return detail::pg::add_dead_letter(**conn, e);
  }

  caf::expected<std::optional<dead_letter>> get(int64_t id) override {
    params ps;
    ps.add(id);
    auto r = run("es_dlq_get",
                 std::string{"SELECT "} + dead_letter_columns
                   + " FROM dead_letter_queue WHERE id = $1",
                 ps);
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return std::optional<dead_letter>{};
    return std::optional<dead_letter>{read_dead_letter(*r, 0)};
  }

  caf::expected<std::vector<dead_letter>>
  list(const dead_letter_query& q) override {
    params ps;
    if (q.projection)
      ps.add(*q.projection);
    else
      ps.add_null();
    if (q.status)
      ps.add(std::string{to_string(*q.status)});
    else
      ps.add_null();
    ps.add(static_cast<int64_t>(q.limit));
    ps.add(static_cast<int64_t>(q.offset));
    auto r = run("es_dlq_list",
                 std::string{"SELECT "} + dead_letter_columns
                   + " FROM dead_letter_queue WHERE ($1::text IS NULL OR"
                     " projection_name = $1) AND ($2::text IS NULL OR"
                     " status = $2) ORDER BY id LIMIT $3 OFFSET $4",
                 ps);
    if (!r)
      return std::move(r.error());
    std::vector<dead_letter> result;
    for (int row = 0; row < r->rows(); ++row)
      result.push_back(read_dead_letter(*r, row));
    return result;
  }

  caf::expected<bool> mark_retrying(int64_t id) override {
    params ps;
    ps.add(id);
    auto r = run("es_dlq_retrying",
                 "UPDATE dead_letter_queue SET status = 'retrying'"
                 " WHERE id = $1 RETURNING 1",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->rows() > 0;
  }

  caf::expected<bool> mark_resolved(int64_t id,
                                    const std::string& by) override {
    params ps;
    ps.add(id);
    ps.add(by);
    auto r = run("es_dlq_resolved",
                 "UPDATE dead_letter_queue SET status = 'resolved',"
                 " resolved_at = now(), resolved_by = $2 WHERE id = $1"
                 " RETURNING 1",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->rows() > 0;
  }

  caf::expected<dead_letter_stats> stats() override {
    auto r = run("es_dlq_stats",
                 "SELECT status, projection_name, COUNT(*)::bigint,"
                 " MIN(first_failed_at) FROM dead_letter_queue"
                 " GROUP BY status, projection_name",
                 params{});
    if (!r)
      return std::move(r.error());
    dead_letter_stats result;
    for (int row = 0; row < r->rows(); ++row) {
      auto status = parse_dead_letter_status(r->view(row, 0))
                      .value_or(dead_letter_status::failed);
      auto n = r->int8(row, 2);
      result.total += n;
      switch (status) {
        case dead_letter_status::failed: result.failed += n; break;
        case dead_letter_status::retrying: result.retrying += n; break;
        case dead_letter_status::resolved: result.resolved += n; break;
      }
      if (status != dead_letter_status::resolved) {
        result.by_projection[r->text(row, 1)] += n;
        auto oldest = r->time_at(row, 3);
        if (!result.oldest_unresolved || oldest < *result.oldest_unresolved)
          result.oldest_unresolved = oldest;
      }
    }
    return result;
  }

  caf::expected<int64_t> purge_resolved(std::chrono::seconds age) override {
    params ps;
    ps.add(static_cast<int64_t>(age.count()));
    auto r = run("es_dlq_purge",
                 "WITH gone AS (DELETE FROM dead_letter_queue"
                 " WHERE status = 'resolved'"
                 " AND resolved_at < now() - $1::bigint * interval '1 second'"
                 " RETURNING 1) SELECT COUNT(*)::bigint FROM gone",
                 ps);
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }
};

caf::error prepare_database(const postgres_config& cfg) {
  if (cfg.migrate)
    return postgres_migrate(cfg);
  auto conn = detail::pg::connection::open(cfg);
  if (!conn)
    return std::move(conn.error());
  return caf::none;
}

} // namespace

caf::expected<snapshot_store_ptr>
make_postgres_snapshot_store(const postgres_config& cfg) {
  if (auto err = prepare_database(cfg))
    return err;
  return snapshot_store_ptr{std::make_shared<pg_snapshot_store>(cfg)};
}

caf::expected<checkpoint_store_ptr>
make_postgres_checkpoint_store(const postgres_config& cfg) {
  if (auto err = prepare_database(cfg))
    return err;
  return checkpoint_store_ptr{std::make_shared<pg_checkpoint_store>(cfg)};
}

caf::expected<dead_letter_store_ptr>
make_postgres_dead_letter_store(const postgres_config& cfg) {
  if (auto err = prepare_database(cfg))
    return err;
  return dead_letter_store_ptr{std::make_shared<pg_dead_letter_store>(cfg)};
}

} // namespace es
