#include "es/store/postgres_event_store.hpp"

#include <algorithm>
#include <limits>

#include "es/store/errors.hpp"

#include "append_rules.hpp"
#include "group_commit.hpp"
#include "postgres/connection.hpp"
#include "postgres/pool.hpp"
#include "postgres/schema.hpp"

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

const std::string append_sql
  = "SELECT code, first_version, last_version, first_position, last_position,"
    " actual, implied FROM es_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
    " $11, $12, $13, $14, $15, $16)";

params append_params(const append_request& req, bool outbox) {
  params ps;
  ps.add(req.stream.aggregate_type);
  ps.add(req.stream.aggregate_id);
  int64_t kind = 0;
  switch (req.expected.type()) {
    case expected_version::kind::any: kind = 0; break;
    case expected_version::kind::no_stream: kind = 1; break;
    case expected_version::kind::stream_exists: kind = 2; break;
    case expected_version::kind::exact: kind = 3; break;
  }
  ps.add(kind);
  ps.add(req.expected.value());
  const auto& evs = req.events;
  std::vector<std::string> ids;
  std::vector<std::string> versions;
  std::vector<std::string> agg_versions;
  std::vector<std::string> times;
  std::vector<std::string> corr;
  std::vector<std::string> caus;
  ids.reserve(evs.size());
  for (const auto& ev : evs) {
    ids.push_back(ev.event_id.to_string());
    versions.push_back(std::to_string(ev.event_version));
    agg_versions.push_back(std::to_string(ev.aggregate_version));
    times.push_back(std::to_string(ev.occurred_at.time_since_epoch().count()));
    corr.push_back(ev.correlation_id ? ev.correlation_id->to_string() : "");
    caus.push_back(ev.causation_id ? ev.causation_id->to_string() : "");
  }
  auto column = [&](auto get) {
    std::vector<std::optional<std::string_view>> xs;
    xs.reserve(evs.size());
    for (size_t i = 0; i < evs.size(); ++i)
      xs.push_back(get(i));
    ps.add_array(xs);
  };
  column([&](size_t i) { return std::optional<std::string_view>{ids[i]}; });
  column([&](size_t i) {
    return std::optional<std::string_view>{evs[i].event_type};
  });
  column(
    [&](size_t i) { return std::optional<std::string_view>{versions[i]}; });
  column([&](size_t i) {
    return std::optional<std::string_view>{agg_versions[i]};
  });
  ps.add(evs.front().tenant_id);
  column([&](size_t i) { return std::optional<std::string_view>{times[i]}; });
  column([&](size_t i) {
    return corr[i].empty() ? std::nullopt
                           : std::optional<std::string_view>{corr[i]};
  });
  column([&](size_t i) {
    return caus[i].empty() ? std::nullopt
                           : std::optional<std::string_view>{caus[i]};
  });
  column([&](size_t i) {
    return std::optional<std::string_view>{evs[i].actor_id};
  });
  column([&](size_t i) {
    return std::optional<std::string_view>{evs[i].metadata};
  });
  column([&](size_t i) {
    return std::optional<std::string_view>{evs[i].payload};
  });
  ps.add(outbox);
  return ps;
}

caf::expected<append_result> append_outcome(const append_request& req,
                                            const result& r) {
  if (r.rows() != 1)
    return make_store_error(store_errc::internal,
                            "es_append returned no row");
  auto code = r.int2(0, 0);
  append_result res;
  res.stream = req.stream;
  res.first_version = r.int8(0, 1);
  res.last_version = r.int8(0, 2);
  res.first_position = r.int8(0, 3);
  res.last_position = r.int8(0, 4);
  auto actual = r.int8(0, 5);
  auto implied = r.int8(0, 6);
  switch (code) {
    case 0: return res;
    case 5: res.deduplicated = true; return res;
    case 1:
      return make_version_conflict(req.stream,
                                   implied >= 0
                                     ? expected_version::exact(implied)
                                     : req.expected,
                                   actual);
    case 2:
      return make_store_error(store_errc::duplicate_event_id,
                              "an event id of the batch is already stored in "
                              "another stream than "
                                + to_string(req.stream));
    case 3:
      return make_store_error(store_errc::idempotency_conflict,
                              "stream " + to_string(req.stream) + ": "
                                + std::to_string(actual) + " of "
                                + std::to_string(req.events.size())
                                + " event ids are already stored, not as "
                                  "this batch");
    case 4:
      return make_store_error(store_errc::tenant_mismatch,
                              "stream " + to_string(req.stream)
                                + " belongs to another tenant");
    default:
      return make_store_error(store_errc::internal,
                              "es_append returned code "
                                + std::to_string(code));
  }
}

class postgres_event_store final : public event_store {
public:
  explicit postgres_event_store(postgres_config cfg)
    : cfg_(cfg),
      readers_(cfg, cfg.read_connections),
      writers_(cfg, 1),
      queue_(cfg.max_group_size,
             [this](const std::vector<detail::write_job*>& group) {
               commit_group(group);
             }) {
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
      rejected[i] = detail::normalize_append(req.stream, req.expected,
                                             req.events, cfg_.limits,
                                             cfg_.registry.get());
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
                            : (opts.from_version > 0 ? opts.from_version
                                                     : max);
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
    auto conn = readers_.take();
    if (!conn)
      return std::move(conn.error());
    auto r = (*conn)->run(forwards ? "es_read_stream_fwd"
                                   : "es_read_stream_bwd",
                          sql, ps, true);
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
    auto next_param = [&] { return "$" + std::to_string(ps.size() + 1); };
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
    auto conn = readers_.take();
    if (!conn)
      return std::move(conn.error());
    auto r = (*conn)->run(name.c_str(), sql, ps, true);
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
    auto conn = readers_.take();
    if (!conn)
      return std::move(conn.error());
    auto r = (*conn)->run("es_stream_version",
                          "SELECT COALESCE(MAX(aggregate_version), 0)"
                          " FROM events WHERE aggregate_type = $1"
                          " AND aggregate_id = $2::uuid",
                          ps, true);
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    params ps;
    ps.add(event_id);
    auto conn = readers_.take();
    if (!conn)
      return std::move(conn.error());
    std::string sql = "SELECT ";
    sql += event_columns;
    sql += " FROM events e WHERE e.event_id = $1::uuid";
    auto r = (*conn)->run("es_find_event", sql, ps, true);
    if (!r)
      return std::move(r.error());
    if (r->rows() == 0)
      return std::optional<recorded_event>{};
    return std::optional<recorded_event>{read_event(*r, 0, 0)};
  }

  caf::expected<int64_t> head_position() override {
    auto conn = readers_.take();
    if (!conn)
      return std::move(conn.error());
    auto r = (*conn)->run("es_head",
                          "SELECT position FROM es_position WHERE id = 1",
                          params{}, true);
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

private:
  /// Sends the group's appends as one pipeline: every `es_append` call and
  /// one sync, so they run in one implicit transaction and one round trip.
  void commit_group(const std::vector<detail::write_job*>& group) {
    struct slot {
      detail::write_job* job;
      size_t index;
    };
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
    auto conn = writers_.take();
    if (!conn) {
      for (auto& s : slots)
        s.job->results[s.index] = conn.error();
      return;
    }
    auto err = run_pipeline(**conn, slots.size(), [&](size_t k) {
      const auto& req = (*slots[k].job->requests)[slots[k].index];
      return append_params(req, cfg_.outbox);
    }, [&](size_t k, const result& r) {
      auto& s = slots[k];
      s.job->results[s.index] = append_outcome((*s.job->requests)[s.index], r);
    });
    if (err) {
      // The transaction did not commit: nothing of the group was written.
      for (auto& s : slots) {
        auto& res = s.job->results[s.index];
        if (!res || !res->deduplicated)
          res = err;
      }
      return;
    }
    metrics_.count_transaction();
  }

  template <class MakeParams, class OnResult>
  caf::error run_pipeline(connection& conn, size_t n, MakeParams make,
                          OnResult on_result) {
    auto* pg = conn.handle();
    if (auto err = conn.ensure_prepared("es_append", append_sql, 16))
      return err;
    if (PQenterPipelineMode(pg) != 1)
      return detail::pg::translate(nullptr, pg, "cannot enter pipeline mode");
    caf::error failure;
    size_t sent = 0;
    for (size_t k = 0; k < n; ++k) {
      auto ps = make(k);
      auto ptrs = ps.pointers();
      if (PQsendQueryPrepared(pg, "es_append", static_cast<int>(ps.size()),
                              ptrs.data(), nullptr, nullptr, 1)
          != 1) {
        failure = detail::pg::translate(nullptr, pg, "cannot send append");
        break;
      }
      ++sent;
    }
    if (PQpipelineSync(pg) != 1 && !failure)
      failure = detail::pg::translate(nullptr, pg, "cannot sync pipeline");
    // Read one result (plus its terminating null) per sent query, then the
    // sync result.
    for (size_t k = 0; k < sent; ++k) {
      result r{PQgetResult(pg)};
      if (r.get() == nullptr) {
        if (!failure)
          failure = detail::pg::translate(nullptr, pg, "append lost");
        break;
      }
      auto status = PQresultStatus(r.get());
      if (status == PGRES_TUPLES_OK) {
        if (!failure)
          on_result(k, r);
      } else if (!failure) {
        failure = detail::pg::translate(r.get(), pg, "append failed");
      }
      result terminator{PQgetResult(pg)};
      static_cast<void>(terminator);
    }
    for (;;) {
      result r{PQgetResult(pg)};
      if (r.get() == nullptr) {
        if (PQstatus(pg) != CONNECTION_OK) {
          if (!failure)
            failure = detail::pg::translate(nullptr, pg, "commit lost");
          break;
        }
        continue;
      }
      auto status = PQresultStatus(r.get());
      if (status == PGRES_PIPELINE_SYNC)
        break;
      if (status == PGRES_FATAL_ERROR && !failure)
        failure = detail::pg::translate(r.get(), pg, "commit failed");
    }
    if (PQstatus(pg) == CONNECTION_OK)
      PQexitPipelineMode(pg);
    return failure;
  }

  postgres_config cfg_;
  pool readers_;
  pool writers_;
  detail::metrics_counter metrics_;
  detail::group_commit_queue queue_;
};

} // namespace

caf::error postgres_migrate(const postgres_config& cfg) {
  auto conn = detail::pg::connection::open(cfg);
  if (!conn)
    return std::move(conn.error());
  return detail::pg::migrate(**conn);
}

caf::expected<event_store_ptr> make_postgres_event_store(postgres_config cfg) {
  if (cfg.max_group_size == 0)
    cfg.max_group_size = 1;
  if (cfg.migrate) {
    if (auto err = postgres_migrate(cfg))
      return err;
  } else {
    // Check the connection settings now rather than on the first call.
    auto conn = detail::pg::connection::open(cfg);
    if (!conn)
      return std::move(conn.error());
  }
  return std::make_shared<postgres_event_store>(std::move(cfg));
}

} // namespace es
