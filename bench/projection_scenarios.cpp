#include "projection_scenarios.hpp"

#include "es/postgres/postgres.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "postgres_scenarios.hpp"
#include "read_fixture.hpp"
#include <libpq-fe.h>
#include <rapidjson/document.h>
#include <sqlite3.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

namespace es::bench {

namespace {

/// Set once by the handler that sees the target position.
class finish_line {
public:
  void cross() {
    std::lock_guard guard{mtx_};
    done_ = true;
    cv_.notify_all();
  }

  void wait() {
    std::unique_lock guard{mtx_};
    if (!cv_.wait_for(guard, std::chrono::minutes(10), [this] {
          return done_;
        }))
      fail("the projection did not reach its target in 10 minutes");
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
};

/// An in-memory handler: counts events, or decodes each into its struct
/// and sums quantities.
class memory_handler final : public projection {
public:
  memory_handler(bool decode, int64_t target, std::shared_ptr<finish_line> line)
    : decode_(decode), target_(target), line_(std::move(line)) {
    static_cast<void>(registry_.add<bench_item>());
  }

  std::string name() const override {
    return "bench_memory";
  }

  caf::error handle(const recorded_event& ev) override {
    return handle_view(recorded_event_view{ev});
  }

  caf::error handle_view(const event_view& ev) override {
    if (decode_) {
      auto item = registry_.decode_as<bench_item>(ev);
      if (!item)
        return std::move(item.error());
      sum_ += item->quantity;
    } else {
      sum_ += static_cast<int64_t>(ev.payload().size());
    }
    if (ev.global_position() == target_)
      line_->cross();
    return caf::none;
  }

private:
  event_registry registry_;
  bool decode_;
  int64_t target_;
  std::shared_ptr<finish_line> line_;
  int64_t sum_ = 0;
};

/// The store's own read of the whole feed in pages of 1,000, without an
/// actor, touching each payload's length (no decoding): owning events from
/// `read_all`, or views in place from `visit_all` (`in_place`).
double time_store_read(const read_fixture& fx, bool in_place) {
  read_all_options opts;
  opts.max_count = 1000;
  int64_t sum = 0;
  std::function<bool(const event_view&)> touch = [&](const event_view& ev) {
    sum += static_cast<int64_t>(ev.payload().size());
    return true;
  };
  auto start = clock::now();
  for (;;) {
    auto page
      = in_place ? fx.store->visit_all(opts, touch) : fx.store->read_all(opts);
    if (!page)
      fail(describe(page.error()));
    // Empty for visit_all.
    for (auto& ev : page->events)
      sum += static_cast<int64_t>(ev.payload.size());
    opts.after_position = page->next_position;
    if (page->end_of_feed)
      break;
  }
  if (sum == 0)
    fail("the store read nothing");
  return micros_since(start) / 1e6;
}

constexpr const char* sqlite_upsert
  = "INSERT INTO bench_item_totals (sku, quantity, revenue_cents)"
    " VALUES (?1, ?2, ?3) ON CONFLICT (sku) DO UPDATE SET"
    " quantity = bench_item_totals.quantity + excluded.quantity,"
    " revenue_cents = bench_item_totals.revenue_cents"
    " + excluded.revenue_cents";

constexpr const char* postgres_upsert
  = "INSERT INTO bench_item_totals (sku, quantity, revenue_cents)"
    " VALUES ($1, $2, $3) ON CONFLICT (sku) DO UPDATE SET"
    " quantity = bench_item_totals.quantity + excluded.quantity,"
    " revenue_cents = bench_item_totals.revenue_cents"
    " + excluded.revenue_cents";

constexpr const char* create_totals
  = "CREATE TABLE bench_item_totals (sku TEXT PRIMARY KEY,"
    " quantity BIGINT NOT NULL, revenue_cents BIGINT NOT NULL)";

/// Per-SKU totals in a SQL table: an upsert per event, in the batch's
/// transaction with the checkpoint.
class item_totals final : public transactional_projection {
public:
  item_totals(read_model_db_ptr db, std::string name, int64_t target,
              std::shared_ptr<finish_line> line)
    : transactional_projection(std::move(db)), name_(std::move(name)),
      target_(target), line_(std::move(line)) {
    static_cast<void>(registry_.add<bench_item>());
  }

  std::string name() const override {
    return name_;
  }

  caf::error handle(sql_transaction& tx, const recorded_event& ev) override {
    auto item = registry_.decode_as<bench_item>(ev);
    if (!item)
      return std::move(item.error());
    auto err
      = tx.exec(tx.dialect() == "sqlite" ? sqlite_upsert : postgres_upsert,
                {sql_value{item->sku}, sql_value{int64_t{item->quantity}},
                 sql_value{item->quantity * item->unit_price_cents}});
    if (!err && ev.global_position == target_)
      line_->cross();
    return err;
  }

private:
  event_registry registry_;
  std::string name_;
  int64_t target_;
  std::shared_ptr<finish_line> line_;
};

/// Runs `proj` from the beginning of the feed until it has accounted for
/// `target` (its handler has seen it and, for read models, the checkpoint
/// passed it) and returns the seconds it took.
double time_projection(caf::actor_system& sys, const read_fixture& fx,
                       projection_ptr proj, finish_line& line, size_t page_size,
                       int64_t target, size_t batch_size = 0) {
  subscription_config cfg;
  cfg.store = fx.store;
  cfg.start = start_from::beginning;
  cfg.page_size = page_size;
  cfg.batch_size = batch_size;
  auto start = clock::now();
  auto actor = spawn_projection_actor(sys, std::move(proj), cfg);
  line.wait();
  // The last batch commits after its handler ran: wait for the checkpoint.
  caf::scoped_actor self{sys};
  for (bool done = false; !done;) {
    self->request(actor, std::chrono::seconds(30), status_atom_v)
      .receive(
        [&](const projection_status& st) {
          done = st.position >= target;
        },
        [&](caf::error& err) {
          fail(describe(err));
        });
    if (!done)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  auto seconds = micros_since(start) / 1e6;
  self->send_exit(actor, caf::exit_reason::user_shutdown);
  self->wait_for(actor);
  return seconds;
}

run_result make_row(const bench_params& p, const std::string& backend,
                    const std::string& scenario, int64_t events, int batch,
                    double seconds, std::string note) {
  run_result r;
  r.backend = backend;
  r.scenario = scenario;
  r.events = events;
  r.writers = 1;
  r.batch = batch;
  r.seconds = seconds;
  r.note = std::move(note);
  static_cast<void>(p);
  return r;
}

// -- read models --------------------------------------------------------------

/// A fresh read-model database for one run.
read_model_db_ptr fresh_read_model(const bench_params& p,
                                   const read_fixture& fx,
                                   const std::string& file) {
  if (p.backend == "sqlite") {
    auto path = (std::filesystem::path{p.dir} / file).string();
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(path + suffix);
    auto db = make_sqlite_read_model_db(path);
    if (!db)
      fail(describe(db.error()));
    if (auto err = (*db)->transact([](sql_transaction& tx) {
          return tx.exec(create_totals);
        }))
      fail(describe(err));
    return *db;
  }
  postgres_config cfg;
  cfg.dsn = fx.pg_dsn;
  auto db = make_postgres_read_model_db(cfg);
  if (!db)
    fail(describe(db.error()));
  if (auto err = (*db)->transact([](sql_transaction& tx) -> caf::error {
        if (auto err = tx.exec("DROP TABLE IF EXISTS bench_item_totals"))
          return err;
        return tx.exec(create_totals);
      }))
    fail(describe(err));
  return *db;
}

struct decoded_item {
  std::string sku;
  int64_t quantity = 0;
  int64_t revenue_cents = 0;
};

decoded_item decode_raw(const char* json, size_t len) {
  rapidjson::Document doc;
  doc.Parse(json, len);
  if (doc.HasParseError() || !doc.IsObject())
    fail("raw baseline: bad payload");
  decoded_item x;
  x.sku = doc["sku"].GetString();
  x.quantity = doc["quantity"].GetInt64();
  x.revenue_cents = x.quantity * doc["unit_price_cents"].GetInt64();
  return x;
}

/// The read model with plain sqlite3: pages of 1,000 from the event file,
/// `batch` upserts and a checkpoint upsert per transaction, same pragmas as
/// the framework's read-model database (WAL, default synchronous).
double raw_sqlite_read_model(const bench_params& p, const read_fixture& fx,
                             int batch, int64_t target) {
  auto path = (std::filesystem::path{p.dir} / "esbench-rm-raw.db").string();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix);
  sqlite3* out = nullptr;
  sqlite3_open(path.c_str(), &out);
  auto exec = [&](const char* sql) {
    if (sqlite3_exec(out, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
      fail(std::string{"raw sqlite: "} + sqlite3_errmsg(out));
  };
  exec("PRAGMA journal_mode = WAL");
  exec(create_totals);
  exec("CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position BIGINT)");
  sqlite3_stmt* upsert = nullptr;
  sqlite3_prepare_v2(out, sqlite_upsert, -1, &upsert, nullptr);
  sqlite3_stmt* cp = nullptr;
  sqlite3_prepare_v2(out,
                     "INSERT INTO checkpoints (name, position) VALUES"
                     " ('raw', ?1) ON CONFLICT (name) DO UPDATE SET"
                     " position = excluded.position",
                     -1, &cp, nullptr);
  sqlite3* in = nullptr;
  sqlite3_open_v2(fx.sqlite_path.c_str(), &in, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_exec(in, "PRAGMA mmap_size = 268435456", nullptr, nullptr, nullptr);
  sqlite3_stmt* page = nullptr;
  sqlite3_prepare_v2(in,
                     "SELECT global_position, payload FROM events"
                     " WHERE global_position > ?1 ORDER BY global_position"
                     " LIMIT 1000",
                     -1, &page, nullptr);
  auto start = clock::now();
  int64_t after = 0;
  int in_tx = 0;
  while (after < target) {
    sqlite3_bind_int64(page, 1, after);
    while (after < target && sqlite3_step(page) == SQLITE_ROW) {
      after = sqlite3_column_int64(page, 0);
      auto item
        = decode_raw(static_cast<const char*>(sqlite3_column_blob(page, 1)),
                     static_cast<size_t>(sqlite3_column_bytes(page, 1)));
      if (in_tx == 0)
        exec("BEGIN");
      sqlite3_bind_text(upsert, 1, item.sku.c_str(),
                        static_cast<int>(item.sku.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(upsert, 2, item.quantity);
      sqlite3_bind_int64(upsert, 3, item.revenue_cents);
      if (sqlite3_step(upsert) != SQLITE_DONE)
        fail(std::string{"raw upsert: "} + sqlite3_errmsg(out));
      sqlite3_reset(upsert);
      if (++in_tx == batch || after == target) {
        sqlite3_bind_int64(cp, 1, after);
        if (sqlite3_step(cp) != SQLITE_DONE)
          fail(std::string{"raw checkpoint: "} + sqlite3_errmsg(out));
        sqlite3_reset(cp);
        exec("COMMIT");
        in_tx = 0;
      }
    }
    sqlite3_reset(page);
  }
  auto seconds = micros_since(start) / 1e6;
  sqlite3_finalize(page);
  sqlite3_close(in);
  sqlite3_finalize(upsert);
  sqlite3_finalize(cp);
  sqlite3_close(out);
  return seconds;
}

PGconn* pg_connect(const std::string& dsn) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  if (PQstatus(conn) != CONNECTION_OK)
    fail(std::string{"cannot connect: "} + PQerrorMessage(conn));
  return conn;
}

void pg_ok(PGresult* res, PGconn* conn, const char* what) {
  auto status = PQresultStatus(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    fail(std::string{what} + ": " + PQerrorMessage(conn));
}

void pg_exec(PGconn* conn, const char* sql) {
  PGresult* res = PQexec(conn, sql);
  pg_ok(res, conn, sql);
  PQclear(res);
}

/// The read model with plain libpq: one connection reads pages of 1,000,
/// another writes `batch` upserts and a checkpoint upsert per transaction,
/// one round trip per statement.
double raw_postgres_read_model(const read_fixture& fx, int batch,
                               int64_t target) {
  PGconn* out = pg_connect(fx.pg_dsn);
  pg_exec(out, "SET client_min_messages = warning");
  pg_exec(out, "DROP TABLE IF EXISTS bench_item_totals");
  pg_exec(out, create_totals);
  pg_exec(out, "CREATE TABLE IF NOT EXISTS bench_raw_checkpoints (name TEXT"
               " PRIMARY KEY, position BIGINT)");
  PGresult* prep = PQprepare(out, "upsert", postgres_upsert, 3, nullptr);
  pg_ok(prep, out, "prepare upsert");
  PQclear(prep);
  prep = PQprepare(out, "cp",
                   "INSERT INTO bench_raw_checkpoints (name, position)"
                   " VALUES ('raw', $1) ON CONFLICT (name) DO UPDATE SET"
                   " position = excluded.position",
                   1, nullptr);
  pg_ok(prep, out, "prepare checkpoint");
  PQclear(prep);
  PGconn* in = pg_connect(fx.pg_dsn);
  prep = PQprepare(in, "page",
                   "SELECT global_position, payload FROM events"
                   " WHERE global_position > $1 ORDER BY global_position"
                   " LIMIT 1000",
                   1, nullptr);
  pg_ok(prep, in, "prepare page");
  PQclear(prep);
  auto start = clock::now();
  int64_t after = 0;
  int in_tx = 0;
  while (after < target) {
    auto after_text = std::to_string(after);
    const char* param = after_text.c_str();
    PGresult* rows = PQexecPrepared(in, "page", 1, &param, nullptr, nullptr, 0);
    pg_ok(rows, in, "raw page");
    int n = PQntuples(rows);
    if (n == 0)
      fail("raw read model: the feed ended before the target");
    for (int i = 0; i < n && after < target; ++i) {
      after = std::strtoll(PQgetvalue(rows, i, 0), nullptr, 10);
      auto item = decode_raw(PQgetvalue(rows, i, 1),
                             static_cast<size_t>(PQgetlength(rows, i, 1)));
      if (in_tx == 0)
        pg_exec(out, "BEGIN");
      auto qty = std::to_string(item.quantity);
      auto rev = std::to_string(item.revenue_cents);
      const char* params[] = {item.sku.c_str(), qty.c_str(), rev.c_str()};
      PGresult* res
        = PQexecPrepared(out, "upsert", 3, params, nullptr, nullptr, 0);
      pg_ok(res, out, "raw upsert");
      PQclear(res);
      if (++in_tx == batch || after == target) {
        auto pos = std::to_string(after);
        const char* cp_param = pos.c_str();
        res = PQexecPrepared(out, "cp", 1, &cp_param, nullptr, nullptr, 0);
        pg_ok(res, out, "raw checkpoint");
        PQclear(res);
        pg_exec(out, "COMMIT");
        in_tx = 0;
      }
    }
    PQclear(rows);
  }
  auto seconds = micros_since(start) / 1e6;
  PQfinish(in);
  PQfinish(out);
  return seconds;
}

} // namespace

std::vector<run_result> run_project(caf::actor_system& sys,
                                    const bench_params& p, int64_t max_single) {
  if (p.backend != "sqlite" && p.backend != "postgres")
    fail("the project scenario needs --backend=sqlite or postgres");
  auto& fx = shared_read_fixture(p);
  auto head = fx.store->head_position();
  if (!head)
    fail(describe(head.error()));
  auto total = *head;
  std::vector<run_result> rows;
  // Reading: the plain driver, the store, and a projection actor.
  auto raw = run_raw_read_all(p);
  raw.scenario = "project";
  raw.note = "  (plain driver, pages of 1000, payload not decoded)";
  rows.push_back(raw);
  rows.push_back(make_row(p, p.backend, "project", total, 1000,
                          time_store_read(fx, false),
                          "  (store read_all, no actor, payload not"
                          " decoded)"));
  rows.push_back(make_row(p, p.backend, "project", total, 1000,
                          time_store_read(fx, true),
                          "  (store visit_all in place, no actor, payload"
                          " not decoded)"));
  struct memory_run {
    bool decode;
    size_t page;
  };
  for (auto [decode, page] : {memory_run{false, 1000}, memory_run{false, 100},
                              memory_run{true, 1000}}) {
    auto line = std::make_shared<finish_line>();
    auto proj = std::make_shared<memory_handler>(decode, total, line);
    auto secs = time_projection(sys, fx, proj, *line, page, total);
    rows.push_back(
      make_row(p, p.backend, "project", total, static_cast<int>(page), secs,
               std::string{"  (projection actor -> in-memory handler, "}
                 + (decode ? "payload decoded" : "payload not decoded")
                 + ", pages of " + std::to_string(page) + ")"));
  }
  auto decoded = run_read_all(p);
  decoded.scenario = "project";
  decoded.note = "  (store read_all, no actor, payload decoded)";
  rows.push_back(decoded);
  // Read models: transactional projection against plain-driver writes.
  for (int batch : {100, 1}) {
    auto target = batch == 1 ? std::min(total, max_single) : total;
    auto scenario = "project-rm" + std::to_string(batch);
    auto secs = p.backend == "sqlite"
                  ? raw_sqlite_read_model(p, fx, batch, target)
                  : raw_postgres_read_model(fx, batch, target);
    rows.push_back(make_row(p, "raw-" + p.backend, scenario, target, batch,
                            secs,
                            "  (plain driver: upsert per event, checkpoint,"
                            " commit per batch)"));
    auto db = fresh_read_model(p, fx, "esbench-rm.db");
    auto line = std::make_shared<finish_line>();
    auto name = "bench_totals_" + uuid::random().to_string().substr(0, 8);
    auto proj = std::make_shared<item_totals>(db, name, target, line);
    secs = time_projection(sys, fx, proj, *line, 1000, target,
                           static_cast<size_t>(batch));
    rows.push_back(make_row(p, p.backend, scenario, target, batch, secs,
                            "  (transactional read model, checkpoint in the"
                            " same transaction)"));
  }
  return rows;
}

} // namespace es::bench
