#include "postgres_scenarios.hpp"

#include "es/postgres/postgres.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_view.hpp"
#include "es/store/state_stores.hpp"

#include "counter.hpp"
#include "read_fixture.hpp"
#include <endian.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <filesystem>

namespace es::bench {

namespace {

/// A schema of its own for one run, dropped at the end.
struct pg_schema {
  std::string base_dsn;
  std::string name;

  explicit pg_schema(std::string dsn) : base_dsn(std::move(dsn)) {
    name = "esbench_" + uuid::random().to_string().substr(0, 8);
    exec("CREATE SCHEMA " + name);
  }

  ~pg_schema() {
    exec("DROP SCHEMA IF EXISTS " + name + " CASCADE");
  }

  std::string dsn() const {
    return base_dsn + " options='-c search_path=" + name + "'";
  }

  void exec(const std::string& sql) const {
    PGconn* conn = PQconnectdb(base_dsn.c_str());
    if (PQstatus(conn) != CONNECTION_OK)
      fail(std::string{"cannot reach PostgreSQL ("} + PQerrorMessage(conn)
           + "); start it with scripts/pg start or pass --dsn");
    PGresult* res
      = PQexec(conn, ("SET client_min_messages = warning; " + sql).c_str());
    auto ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    std::string msg = PQresultErrorMessage(res);
    PQclear(res);
    PQfinish(conn);
    if (!ok)
      fail("SQL failed: " + msg);
  }
};

PGconn* connect(const std::string& dsn) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  if (PQstatus(conn) != CONNECTION_OK)
    fail(std::string{"cannot connect: "} + PQerrorMessage(conn));
  return conn;
}

void check(PGresult* res, PGconn* conn, const char* what) {
  auto status = PQresultStatus(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    fail(std::string{what} + ": " + PQerrorMessage(conn));
}

/// The feed `--pg-feed` names.
postgres_feed feed_of(const bench_params& p) {
  return p.pg_feed == "overlapping" ? postgres_feed::overlapping
                                    : postgres_feed::serialized;
}

} // namespace

read_fixture& shared_read_fixture(const bench_params& p) {
  static read_fixture fx;
  if (fx.store)
    return fx;
  if (p.backend == "postgres") {
    auto schema = std::make_shared<pg_schema>(p.dsn);
    fx.pg_dsn = schema->dsn();
    postgres_config cfg;
    cfg.dsn = fx.pg_dsn;
    cfg.feed = feed_of(p);
    auto res = make_postgres_event_store(cfg);
    if (!res)
      fail(describe(res.error()));
    fx.store = *res;
    fx.keep = schema;
  } else {
    std::filesystem::create_directories(p.dir);
    fx.sqlite_path
      = (std::filesystem::path{p.dir} / "esbench-read.db").string();
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(fx.sqlite_path + suffix);
    sqlite_config cfg;
    cfg.path = fx.sqlite_path;
    cfg.synchronous = sqlite_sync::off;
    auto res = make_sqlite_event_store(cfg);
    if (!res)
      fail(describe(res.error()));
    fx.store = *res;
  }
  // Fill: 100 events per append over many streams.
  bench_params fill = p;
  fill.batch = 100;
  fill.writers = 4;
  auto rows = make_rows(fill);
  for (auto& w : rows) {
    int64_t v = 0;
    for (auto& batch : w.calls) {
      auto res = fx.store->append(w.stream, expected_version::exact(v),
                                  std::move(batch));
      if (!res)
        fail(describe(res.error()));
      v = res->last_version;
    }
  }
  return fx;
}

event_store_ptr open_postgres_store(const bench_params& p,
                                    std::shared_ptr<void>& keep) {
  postgres_config cfg;
  if (p.pg_schema.empty()) {
    auto schema = std::make_shared<pg_schema>(p.dsn);
    cfg.dsn = schema->dsn();
    keep = schema;
  } else {
    cfg.dsn = p.dsn + " options='-c search_path=" + p.pg_schema + "'";
  }
  cfg.writer_connections = static_cast<size_t>(p.pg_writer_connections);
  cfg.group_gather = std::chrono::microseconds{p.pg_group_gather_us};
  cfg.feed = feed_of(p);
  auto res = make_postgres_event_store(cfg);
  if (!res)
    fail(describe(res.error()));
  return *res;
}

std::string fresh_postgres_schema(const bench_params& p,
                                  std::shared_ptr<void>& keep) {
  auto schema = std::make_shared<pg_schema>(p.dsn);
  auto dsn = schema->dsn();
  keep = std::move(schema);
  return dsn;
}

run_result run_raw_postgres_append(const bench_params& p) {
  pg_schema schema{p.dsn};
  {
    // The store's own schema, so the table and its indexes are the same.
    postgres_config cfg;
    cfg.dsn = schema.dsn();
    if (auto err = postgres_migrate(cfg))
      fail(describe(err));
    schema.exec("CREATE SEQUENCE " + schema.name + ".raw_positions CACHE 1000");
  }
  auto rows = make_rows(p);
  std::vector<std::vector<double>> lat(rows.size());
  std::atomic<int64_t> written{0};
  // One multi-row INSERT with `batch` tuples of nine parameters each.
  std::string sql = "INSERT INTO events (global_position, event_id,"
                    " event_type, event_version, aggregate_type, aggregate_id,"
                    " aggregate_version, occurred_at, correlation_id, payload)"
                    " VALUES ";
  for (int b = 0; b < p.batch; ++b) {
    int k = b * 9;
    if (b > 0)
      sql += ", ";
    sql += "(nextval('raw_positions'), $" + std::to_string(k + 1) + "::uuid, $"
           + std::to_string(k + 2) + ", $" + std::to_string(k + 3)
           + "::integer, $" + std::to_string(k + 4) + ", $"
           + std::to_string(k + 5) + "::uuid, $" + std::to_string(k + 6)
           + "::bigint, 'epoch'::timestamptz + $" + std::to_string(k + 7)
           + "::bigint * interval '1 microsecond', $" + std::to_string(k + 8)
           + "::uuid, $" + std::to_string(k + 9) + "::json)";
  }
  // Connections opened and the statement prepared before the clock, as
  // the framework's writer is.
  auto dsn = schema.dsn();
  std::vector<PGconn*> conns;
  for (int w = 0; w < p.writers; ++w) {
    PGconn* conn = connect(dsn);
    PGresult* prep = PQprepare(conn, "raw_insert", sql.c_str(), 0, nullptr);
    check(prep, conn, "prepare");
    PQclear(prep);
    conns.push_back(conn);
  }
  auto seconds = run_threads(p.writers, [&](int w) {
    PGconn* conn = conns[static_cast<size_t>(w)];
    auto& mine = rows[static_cast<size_t>(w)];
    auto& out = lat[static_cast<size_t>(w)];
    int64_t version = 0;
    std::vector<std::string> values;
    std::vector<const char*> ptrs;
    for (auto& batch : mine.calls) {
      values.clear();
      for (auto& ev : batch) {
        values.push_back(ev.event_id.to_string());
        values.push_back(ev.event_type);
        values.push_back(std::to_string(ev.event_version));
        values.push_back(ev.aggregate_type);
        values.push_back(ev.aggregate_id.to_string());
        values.push_back(std::to_string(++version));
        values.push_back(
          std::to_string(ev.occurred_at.time_since_epoch().count()));
        values.push_back(ev.correlation_id->to_string());
        values.push_back(ev.payload);
      }
      ptrs.clear();
      for (auto& v : values)
        ptrs.push_back(v.c_str());
      auto start = clock::now();
      PGresult* res
        = PQexecPrepared(conn, "raw_insert", static_cast<int>(ptrs.size()),
                         ptrs.data(), nullptr, nullptr, 0);
      check(res, conn, "raw insert");
      PQclear(res);
      out.push_back(micros_since(start));
      written += static_cast<int64_t>(batch.size());
    }
  });
  for (auto* conn : conns)
    PQfinish(conn);
  run_result r;
  r.backend = "raw-postgres";
  r.scenario = p.scenario;
  r.events = written.load();
  r.writers = p.writers;
  r.batch = p.batch;
  r.seconds = seconds;
  for (auto& l : lat)
    r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  r.note = "  (" + std::to_string(r.latencies_us.size()) + " transactions)";
  return r;
}

run_result run_read_all(const bench_params& p, bool in_place) {
  auto& fx = shared_read_fixture(p);
  event_registry registry;
  static_cast<void>(registry.add<bench_item>());
  read_all_options opts;
  opts.max_count = 1000;
  int64_t decoded = 0;
  int64_t pages = 0;
  std::vector<double> lat;
  auto fail_on = [](const caf::expected<bench_item>& item) {
    if (!item)
      fail(describe(item.error()));
    return item->quantity > 0 ? 1 : 0;
  };
  auto visit = [&](const event_view& ev) {
    decoded += fail_on(registry.decode_as<bench_item>(ev));
    return true;
  };
  auto start = clock::now();
  for (;;) {
    auto page_start = clock::now();
    auto page
      = in_place ? fx.store->visit_all(opts, visit) : fx.store->read_all(opts);
    if (!page)
      fail(describe(page.error()));
    // Empty for visit_all.
    for (auto& ev : page->events)
      decoded += fail_on(registry.decode_as<bench_item>(ev));
    lat.push_back(micros_since(page_start));
    ++pages;
    opts.after_position = page->next_position;
    if (page->end_of_feed)
      break;
  }
  run_result r;
  r.backend = p.backend;
  r.scenario = "read-all";
  r.seconds = micros_since(start) / 1e6;
  r.events = decoded;
  r.writers = 1;
  r.batch = 1000;
  r.latencies_us = std::move(lat);
  r.note = in_place ? "  (visit_all in place, pages of 1000, decoded into"
                      " structs; latency per page)"
                    : "  (read_all, pages of 1000, decoded into structs;"
                      " latency per page)";
  return r;
}

run_result run_raw_read_all(const bench_params& p) {
  auto& fx = shared_read_fixture(p);
  int64_t rows = 0;
  std::vector<double> lat;
  auto start = clock::now();
  if (p.backend == "postgres") {
    PGconn* conn = connect(fx.pg_dsn);
    const char* sql
      = "SELECT global_position, event_id, event_type, event_version,"
        " aggregate_type, aggregate_id, aggregate_version, tenant_id,"
        " occurred_at, correlation_id, causation_id, actor_id, metadata,"
        " payload FROM events WHERE global_position > $1"
        " ORDER BY global_position LIMIT 1000";
    PGresult* prep = PQprepare(conn, "raw_read", sql, 1, nullptr);
    check(prep, conn, "prepare");
    PQclear(prep);
    // Connected and prepared before the clock, as the store's reader is.
    start = clock::now();
    int64_t after = 0;
    for (;;) {
      auto page_start = clock::now();
      auto text = std::to_string(after);
      const char* param = text.c_str();
      PGresult* res
        = PQexecPrepared(conn, "raw_read", 1, &param, nullptr, nullptr, 1);
      check(res, conn, "raw read");
      int n = PQntuples(res);
      for (int i = 0; i < n; ++i) {
        // Touch the payload like a reader would.
        rows += PQgetlength(res, i, 13) > 0 ? 1 : 0;
      }
      if (n > 0) {
        uint64_t pos = 0;
        std::memcpy(&pos, PQgetvalue(res, n - 1, 0), 8);
        after = static_cast<int64_t>(be64toh(pos));
      }
      PQclear(res);
      lat.push_back(micros_since(page_start));
      if (n < 1000)
        break;
    }
    PQfinish(conn);
  } else {
    // One connection for the process, like the store's pooled readers,
    // mapping the file like them (sqlite_config::mmap_bytes) and warmed by
    // a first untimed pass, like them after the fill.
    static sqlite3* db = nullptr;
    static sqlite3_stmt* st = nullptr;
    auto pass = [&](bool timed) {
      int64_t after = 0;
      for (;;) {
        auto page_start = clock::now();
        sqlite3_bind_int64(st, 1, after);
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
          ++n;
          after = sqlite3_column_int64(st, 0);
          rows += timed && sqlite3_column_bytes(st, 13) > 0 ? 1 : 0;
        }
        sqlite3_reset(st);
        if (timed)
          lat.push_back(micros_since(page_start));
        if (n < 1000)
          break;
      }
    };
    if (db == nullptr) {
      sqlite3_open_v2(fx.sqlite_path.c_str(), &db, SQLITE_OPEN_READONLY,
                      nullptr);
      sqlite3_exec(db, "PRAGMA mmap_size = 268435456", nullptr, nullptr,
                   nullptr);
      sqlite3_prepare_v2(db,
                         "SELECT global_position, event_id, event_type,"
                         " event_version, aggregate_type, aggregate_id,"
                         " aggregate_version, tenant_id, occurred_at,"
                         " correlation_id, causation_id, actor_id, metadata,"
                         " payload FROM events WHERE global_position > ?1"
                         " ORDER BY global_position LIMIT 1000",
                         -1, &st, nullptr);
      pass(false);
    }
    start = clock::now();
    pass(true);
  }
  run_result r;
  r.backend = "raw-" + p.backend;
  r.scenario = "read-all";
  r.seconds = micros_since(start) / 1e6;
  r.events = rows;
  r.writers = 1;
  r.batch = 1000;
  r.latencies_us = std::move(lat);
  r.note = "  (pages of 1000, keyset, no decoding)";
  return r;
}

std::vector<run_result> run_recover(const bench_params& p) {
  using counter_bench::counter;
  using counter_bench::incremented;
  std::shared_ptr<void> keep;
  event_store_ptr store;
  snapshot_store_ptr snapshots;
  std::string raw_dsn;
  if (p.backend == "postgres") {
    auto schema = std::make_shared<pg_schema>(p.dsn);
    postgres_config cfg;
    cfg.dsn = schema->dsn();
    raw_dsn = cfg.dsn;
    auto res = make_postgres_event_store(cfg);
    if (!res)
      fail(describe(res.error()));
    store = *res;
    auto snaps = make_postgres_snapshot_store(cfg);
    if (!snaps)
      fail(describe(snaps.error()));
    snapshots = *snaps;
    keep = schema;
  } else {
    fail("recover needs --backend=postgres");
  }
  auto registry = counter_bench::make_registry();
  stream_id s{"Counter", uuid::random()};
  auto total = p.events > 0 ? p.events : 10000;
  for (int64_t done = 0; done < total;) {
    event_batch batch;
    for (int i = 0; i < 100 && done < total; ++i, ++done)
      batch.push_back(*make_event(incremented{1}));
    if (auto res = store->append(s, expected_version::any(), batch); !res)
      fail(describe(res.error()));
  }
  auto load_full = [&] {
    counter agg{s.aggregate_id, registry};
    read_stream_options ro;
    auto err = for_each_in_stream(*store, s, ro, [&](recorded_event& ev) {
      return agg.apply_stored(ev);
    });
    if (err || agg.state().value != total)
      fail("full replay failed");
    return agg.version();
  };
  // Write the snapshot the aggregate actor would write.
  {
    counter agg{s.aggregate_id, registry};
    read_stream_options ro;
    static_cast<void>(
      for_each_in_stream(*store, s, ro, [&](recorded_event& ev) {
        return agg.apply_stored(ev);
      }));
    auto snap = es::detail::take_snapshot(agg);
    if (!snap || !*snapshots->save(*snap))
      fail("cannot write the snapshot");
  }
  auto load_snapshot = [&] {
    counter agg{s.aggregate_id, registry};
    auto snap = snapshots->load(s);
    if (!snap || !*snap || !es::detail::restore_snapshot(agg, **snap))
      fail("snapshot not usable");
    read_stream_options ro;
    ro.from_version = agg.version() + 1;
    auto err = for_each_in_stream(*store, s, ro, [&](recorded_event& ev) {
      return agg.apply_stored(ev);
    });
    if (err || agg.state().value != total)
      fail("snapshot recovery failed");
    return agg.version();
  };
  auto measure = [&](const char* scenario, auto fn) {
    run_result r;
    r.backend = p.backend;
    r.scenario = scenario;
    r.writers = 1;
    r.batch = 1;
    auto start = clock::now();
    for (int i = 0; i < 5; ++i) {
      auto one = clock::now();
      r.events += fn();
      r.latencies_us.push_back(micros_since(one));
    }
    r.seconds = micros_since(start) / 1e6;
    r.note = "  (5 loads of one aggregate; latency per load)";
    return r;
  };
  std::vector<run_result> rows;
  rows.push_back(measure("recover", load_full));
  rows.push_back(measure("recover-snapshot", load_snapshot));
  // Raw: the same rows read by aggregate id and version, plain libpq.
  run_result raw;
  raw.backend = "raw-postgres";
  raw.scenario = "recover";
  raw.writers = 1;
  raw.batch = 1;
  PGconn* conn = connect(raw_dsn);
  auto start = clock::now();
  for (int i = 0; i < 5; ++i) {
    auto one = clock::now();
    int64_t after = 0;
    for (;;) {
      std::string sql = "SELECT aggregate_version, payload FROM events"
                        " WHERE aggregate_type = 'Counter' AND aggregate_id = '"
                        + s.aggregate_id.to_string()
                        + "' AND aggregate_version > " + std::to_string(after)
                        + " ORDER BY aggregate_version LIMIT 1000";
      PGresult* res = PQexec(conn, sql.c_str());
      check(res, conn, "raw recover");
      int n = PQntuples(res);
      raw.events += n;
      if (n > 0)
        after = std::stoll(PQgetvalue(res, n - 1, 0));
      PQclear(res);
      if (n < 1000)
        break;
    }
    raw.latencies_us.push_back(micros_since(one));
  }
  raw.seconds = micros_since(start) / 1e6;
  raw.note = "  (5 reads of the stream in pages of 1000, no decoding)";
  PQfinish(conn);
  rows.push_back(raw);
  return rows;
}

} // namespace es::bench
