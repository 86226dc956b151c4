#include "store_scenarios.hpp"

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"

#include "postgres_scenarios.hpp"
#include <sqlite3.h>

#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace es::bench {

std::vector<writer_rows> make_rows(const bench_params& p) {
  std::vector<writer_rows> result(static_cast<size_t>(p.writers));
  auto calls = std::max<int64_t>(1, p.events / (p.writers * p.batch));
  int64_t n = 0;
  for (auto& w : result) {
    w.stream = stream_id{"Order", uuid::random()};
    for (int64_t c = 0; c < calls; ++c) {
      event_batch batch;
      for (int b = 0; b < p.batch; ++b) {
        event_data ev;
        ev.event_id = uuid::time_ordered();
        ev.event_type = "ItemAdded";
        ev.aggregate_id = w.stream.aggregate_id;
        ev.aggregate_type = w.stream.aggregate_type;
        ev.occurred_at = now_utc();
        ev.correlation_id = uuid::time_ordered();
        ev.payload = sample_payload(n++);
        batch.push_back(std::move(ev));
      }
      w.calls.push_back(std::move(batch));
    }
  }
  return result;
}

namespace {

std::string fresh_file(const bench_params& p, const std::string& name) {
  std::filesystem::create_directories(p.dir);
  auto path = (std::filesystem::path{p.dir} / name).string();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix);
  return path;
}

} // namespace

double run_threads(int writers, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  std::mutex mtx;
  std::condition_variable cv;
  bool go = false;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      {
        std::unique_lock guard{mtx};
        cv.wait(guard, [&] {
          return go;
        });
      }
      body(w);
    });
  auto start = clock::now();
  {
    std::lock_guard guard{mtx};
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads)
    t.join();
  return micros_since(start) / 1e6;
}

void fail(const std::string& what) {
  std::cerr << "esbench: " << what << std::endl;
  std::exit(1);
}

run_result run_store_append(const bench_params& p) {
  event_store_ptr store;
  std::shared_ptr<void> keep;
  if (p.backend == "postgres") {
    store = open_postgres_store(p, keep);
  } else if (p.backend == "memory") {
    store = make_memory_event_store();
  } else if (p.backend == "sqlite") {
    sqlite_config cfg;
    cfg.path = fresh_file(p, "esbench-store.db");
    cfg.synchronous = p.sync;
    auto res = make_sqlite_event_store(cfg);
    if (!res)
      fail(describe(res.error()));
    store = *res;
  } else {
    fail("unknown backend " + p.backend);
  }
  auto rows = make_rows(p);
  std::vector<std::vector<double>> lat(rows.size());
  std::atomic<int64_t> written{0};
  auto seconds = run_threads(p.writers, [&](int w) {
    auto& mine = rows[static_cast<size_t>(w)];
    auto& out = lat[static_cast<size_t>(w)];
    out.reserve(mine.calls.size());
    int64_t version = 0;
    for (auto& batch : mine.calls) {
      auto n = static_cast<int64_t>(batch.size());
      auto start = clock::now();
      auto res = store->append(mine.stream, expected_version::exact(version),
                               std::move(batch));
      out.push_back(micros_since(start));
      if (!res)
        fail("append failed: " + describe(res.error()));
      version = res->last_version;
      written += n;
    }
  });
  run_result r;
  r.backend = p.backend;
  r.scenario = p.scenario;
  r.events = written.load();
  r.writers = p.writers;
  r.batch = p.batch;
  r.seconds = seconds;
  for (auto& l : lat)
    r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  auto m = store->metrics();
  r.note = "  (" + std::to_string(m.transactions) + " transactions for "
           + std::to_string(m.append_requests) + " appends)";
  return r;
}

run_result run_raw_sqlite_append(const bench_params& p) {
  auto path = fresh_file(p, "esbench-raw.db");
  {
    // Same schema as the store: let the store create the file, then close it.
    sqlite_config cfg;
    cfg.path = path;
    if (auto res = make_sqlite_event_store(cfg); !res)
      fail(describe(res.error()));
  }
  auto rows = make_rows(p);
  std::vector<std::vector<double>> lat(rows.size());
  const char* sync = p.sync == sqlite_sync::full ? "PRAGMA synchronous=FULL"
                     : p.sync == sqlite_sync::normal
                       ? "PRAGMA synchronous=NORMAL"
                       : "PRAGMA synchronous=OFF";
  std::atomic<int64_t> written{0};
  auto seconds = run_threads(p.writers, [&](int w) {
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK)
      fail("raw open failed");
    sqlite3_busy_timeout(db, 600000);
    sqlite3_exec(db, sync, nullptr, nullptr, nullptr);
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db,
                       "INSERT INTO events (event_id, event_type,"
                       " event_version, aggregate_type, aggregate_id,"
                       " aggregate_version, tenant_id, occurred_at,"
                       " correlation_id, causation_id, actor_id, metadata,"
                       " payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7,"
                       " ?8, NULL, '', '', ?9)",
                       -1, &ins, nullptr);
    auto& mine = rows[static_cast<size_t>(w)];
    auto& out = lat[static_cast<size_t>(w)];
    int64_t version = 0;
    for (auto& batch : mine.calls) {
      auto start = clock::now();
      if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
          != SQLITE_OK)
        fail(std::string{"raw begin failed: "} + sqlite3_errmsg(db));
      for (auto& ev : batch) {
        sqlite3_bind_blob(ins, 1, ev.event_id.bytes().data(), 16,
                          SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, ev.event_type.data(),
                          static_cast<int>(ev.event_type.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, ev.event_version);
        sqlite3_bind_text(ins, 4, ev.aggregate_type.data(),
                          static_cast<int>(ev.aggregate_type.size()),
                          SQLITE_STATIC);
        sqlite3_bind_blob(ins, 5, ev.aggregate_id.bytes().data(), 16,
                          SQLITE_STATIC);
        sqlite3_bind_int64(ins, 6, ++version);
        sqlite3_bind_int64(ins, 7, ev.occurred_at.time_since_epoch().count());
        sqlite3_bind_blob(ins, 8, ev.correlation_id->bytes().data(), 16,
                          SQLITE_STATIC);
        sqlite3_bind_text(ins, 9, ev.payload.data(),
                          static_cast<int>(ev.payload.size()), SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
          fail(std::string{"raw insert failed: "} + sqlite3_errmsg(db));
        sqlite3_reset(ins);
      }
      if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
        fail(std::string{"raw commit failed: "} + sqlite3_errmsg(db));
      out.push_back(micros_since(start));
      written += static_cast<int64_t>(batch.size());
    }
    sqlite3_finalize(ins);
    sqlite3_close(db);
  });
  run_result r;
  r.backend = "raw-sqlite";
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

run_result run_raw_memory_append(const bench_params& p) {
  auto rows = make_rows(p);
  std::vector<std::vector<double>> lat(rows.size());
  std::mutex mtx;
  std::vector<event_data> log;
  std::unordered_map<uuid, size_t> index;
  std::atomic<int64_t> written{0};
  auto seconds = run_threads(p.writers, [&](int w) {
    auto& mine = rows[static_cast<size_t>(w)];
    auto& out = lat[static_cast<size_t>(w)];
    for (auto& batch : mine.calls) {
      auto start = clock::now();
      {
        std::lock_guard guard{mtx};
        for (auto& ev : batch) {
          index.emplace(ev.event_id, log.size());
          log.push_back(std::move(ev));
        }
      }
      out.push_back(micros_since(start));
      written += static_cast<int64_t>(batch.size());
    }
  });
  run_result r;
  r.backend = "raw-memory";
  r.scenario = p.scenario;
  r.events = written.load();
  r.writers = p.writers;
  r.batch = p.batch;
  r.seconds = seconds;
  for (auto& l : lat)
    r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  return r;
}

} // namespace es::bench
