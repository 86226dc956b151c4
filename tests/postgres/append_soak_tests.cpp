// A randomized fault soak of the PostgreSQL append path. Three writer
// processes append through direct connections and through fault-injecting
// proxies that cut connections at random protocol messages, while the parent
// terminates their sessions at random; afterwards every answer they got is
// checked against the log.
//
// Environment:
//   ES_SOAK_SECONDS  seconds of load (default 120; the ctest TIMEOUT is 600)
//   ES_SOAK_SEED     replays a run's choices (the seed is printed first);
//                    timing, and so the faults, still differ between runs
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "pg_fixture.hpp"
#include "pg_proxy.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

constexpr int worker_count = 3;
constexpr int threads_per_worker = 4;
constexpr int shared_stream_count = 40;
/// Attempts per request before a retryable error becomes its final answer.
constexpr int max_attempts = 20;
/// A worker's proxy cuts its connection at one message in this many
/// (before or after it): about one cut per 20-50 appends through it.
constexpr uint64_t cut_one_in = 500;
/// The type the soak's CHECK constraint refuses.
constexpr const char* poison_type = "Poison";

using clock_type = std::chrono::steady_clock;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// The value of environment variable `name` as a number, or `fallback`.
uint64_t env_number(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return fallback;
  return std::stoull(text);
}

/// Shared stream `i` of the pool all workers contend on: the same in every
/// process, different for every seed.
stream_id shared_stream(uint64_t seed, int i) {
  auto hi = splitmix64(seed ^ (0x5eed0000ull + static_cast<uint64_t>(i)));
  auto lo = splitmix64(hi);
  uuid::bytes_type b{};
  for (size_t k = 0; k < 8; ++k) {
    b[k] = static_cast<uint8_t>(hi >> (8 * k));
    b[8 + k] = static_cast<uint8_t>(lo >> (8 * k));
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  return {"Shared", uuid{b}};
}

/// `text` with tabs and line breaks turned into spaces, fit for one field of
/// a line of the outcome logs.
std::string one_field(std::string text) {
  for (auto& c : text)
    if (c == '\t' || c == '\n' || c == '\r')
      c = ' ';
  return text;
}

/// The name of an error's code: "wrong_expected_version" for store codes,
/// "category.code" for others.
std::string error_name(const caf::error& err) {
  if (err.category() == caf::atom("es_store"))
    return to_string(static_cast<store_errc>(err.code()));
  return caf::to_string(err.category()) + "." + std::to_string(err.code());
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> result;
  std::string field;
  std::istringstream in{line};
  while (std::getline(in, field, sep))
    result.push_back(field);
  if (!line.empty() && line.back() == sep)
    result.emplace_back();
  return result;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path};
  out << text << '\n';
}

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// -- the workers --------------------------------------------------------------

/// What the parent hands its worker processes.
struct soak_plan {
  uint64_t seed = 0;
  std::chrono::seconds duration{0};
  /// The schema, which is also the application_name of every session.
  std::string schema;
  /// A direct DSN whose search_path is the schema.
  std::string dsn;
  /// Where workers write their outcome logs and error messages.
  std::string dir;
};

std::string log_path(const soak_plan& plan, int worker) {
  return plan.dir + "/worker-" + std::to_string(worker) + ".log";
}

std::string error_path(const soak_plan& plan, int worker) {
  return plan.dir + "/worker-" + std::to_string(worker) + ".err";
}

/// One request of a call, with what the worker knows about it and its
/// answer.
struct planned_request {
  /// "worker.thread.call.index", unique over the soak.
  std::string key;
  /// new (a fresh stream, no_stream), same (a stream an earlier request of
  /// the call created), shared (from the pool), resend (the events of an
  /// earlier acknowledged append), repeat (an earlier request of the call).
  std::string kind;
  append_request request;
  bool poison = false;
  /// Whether its version condition can fail (exact or no_stream on a
  /// stream that may exist).
  bool may_conflict = false;
  /// The key of the request a repeat repeats, else "-".
  std::string repeat_of = "-";
  int attempts = 0;
  bool any_unknown = false;
  caf::expected<append_result> answer{caf::error{}};
};

/// A worker's outcome log: one line per attempt and one per final answer.
/// Thread-safe.
class outcome_log {
public:
  explicit outcome_log(const std::string& path) : out_(path) {
    if (!out_)
      throw std::runtime_error("cannot write " + path);
  }

  void write(const std::string& line, bool flush = false) {
    std::lock_guard guard{mtx_};
    out_ << line << '\n';
    if (flush)
      out_.flush();
  }

private:
  std::mutex mtx_;
  std::ofstream out_;
};

/// "ok<TAB>first_version..." or "err<TAB>name<TAB>retryable<TAB>description".
std::string answer_fields(const caf::expected<append_result>& res) {
  std::ostringstream out;
  if (res)
    out << "ok\t" << res->first_version << '\t' << res->last_version << '\t'
        << res->first_position << '\t' << res->last_position << '\t'
        << (res->deduplicated ? 1 : 0);
  else
    out << "err\t" << error_name(res.error()) << '\t'
        << (is_retryable(res.error()) ? 1 : 0) << '\t'
        << one_field(describe(res.error()));
  return out.str();
}

/// Cuts a proxied connection at random messages. Must outlive the proxy
/// whose rule it serves.
class random_cuts {
public:
  explicit random_cuts(uint64_t seed) : rng_(seed) {
    // nop
  }

  pg_proxy_action decide(const pg_message& msg) {
    // The untyped start (StartupMessage, SSLRequest, ...) passes.
    if (msg.type == 0)
      return pg_proxy_action::forward;
    std::lock_guard guard{mtx_};
    if (rng_() % cut_one_in != 0)
      return pg_proxy_action::forward;
    return rng_() % 2 == 0 ? pg_proxy_action::cut_before
                           : pg_proxy_action::cut_after;
  }

private:
  std::mutex mtx_;
  std::mt19937_64 rng_;
};

/// One thread of a worker: plans random calls, sends them with retries and
/// logs every answer.
class soak_thread {
public:
  soak_thread(const soak_plan& plan, int worker, int thread,
              std::array<event_store*, 2> stores, outcome_log& log)
    : prefix_(std::to_string(worker) + "." + std::to_string(thread) + "."),
      rng_(splitmix64(plan.seed ^ (static_cast<uint64_t>(worker) << 32)
                      ^ static_cast<uint64_t>(thread + 1))),
      stores_(stores), log_(log) {
    for (int i = 0; i < shared_stream_count; ++i) {
      shared_.push_back(shared_stream(plan.seed, i));
      last_seen_[shared_.back()] = 0;
    }
  }

  void run(clock_type::time_point deadline) {
    while (clock_type::now() < deadline) {
      auto call = plan_call();
      send(call);
      record(call);
      ++calls_;
    }
  }

private:
  /// Returns true `percent` times in a hundred.
  bool chance(int percent) {
    return static_cast<int>(rng_() % 100) < percent;
  }

  /// A uniform number in [lo, hi].
  size_t between(size_t lo, size_t hi) {
    return lo + static_cast<size_t>(rng_() % (hi - lo + 1));
  }

  event_batch fresh_batch(const stream_id& stream) {
    return make_batch(stream, static_cast<int>(between(1, 5)),
                      static_cast<int>(rng_() % 1000));
  }

  /// Plans one call: one request, or two to four for `append_many`.
  std::vector<planned_request> plan_call() {
    size_t n = chance(30) ? between(2, 4) : 1;
    std::vector<planned_request> call;
    for (size_t i = 0; i < n; ++i) {
      planned_request p;
      p.key = prefix_ + std::to_string(calls_) + "." + std::to_string(i);
      std::vector<size_t> created; // earlier requests that made a stream
      for (size_t j = 0; j < i; ++j)
        if (call[j].kind == "new")
          created.push_back(j);
      if (i > 0 && chance(20)) {
        const auto& earlier = call[between(0, i - 1)];
        p.kind = "repeat";
        p.request = earlier.request;
        p.poison = earlier.poison;
        // What the call did in between can make its condition fail.
        p.may_conflict
          = earlier.request.expected.type() != expected_version::kind::any;
        p.repeat_of = earlier.key;
      } else if (!created.empty() && chance(30)) {
        auto& base = call[created[between(0, created.size() - 1)]];
        // Should the base be retried alone, this request may have created
        // the stream meanwhile.
        base.may_conflict = true;
        const auto stream = base.request.stream;
        int64_t before = 0;
        for (size_t j = 0; j < i; ++j)
          if (call[j].kind != "repeat" && call[j].request.stream == stream)
            before += static_cast<int64_t>(call[j].request.events.size());
        p.kind = "same";
        p.request.stream = stream;
        p.may_conflict = chance(50);
        p.request.expected = p.may_conflict ? expected_version::exact(before)
                                            : expected_version::any();
        p.request.events = fresh_batch(stream);
      } else if (!acked_.empty() && chance(5)) {
        p.kind = "resend";
        p.request = acked_[between(0, acked_.size() - 1)];
      } else if (chance(50)) {
        p.kind = "new";
        p.request.stream = new_stream("Soak");
        p.request.expected = expected_version::no_stream();
        p.request.events = fresh_batch(p.request.stream);
      } else {
        p.kind = "shared";
        p.request.stream = shared_[between(0, shared_.size() - 1)];
        p.may_conflict = chance(50);
        p.request.expected
          = p.may_conflict
              ? expected_version::exact(last_seen_[p.request.stream])
              : expected_version::any();
        p.request.events = fresh_batch(p.request.stream);
      }
      bool fresh = p.kind == "new" || p.kind == "same" || p.kind == "shared";
      if (fresh && rng_() % 1000 < 22) {
        auto& events = p.request.events;
        auto& victim = events[between(0, events.size() - 1)];
        victim = make_test_event(p.request.stream, 0, poison_type);
        p.poison = true;
      }
      call.push_back(std::move(p));
    }
    return call;
  }

  /// Sends the call, retrying requests answered with a retryable error with
  /// the same event ids, and logs every attempt.
  void send(std::vector<planned_request>& call) {
    bool many = call.size() > 1;
    std::vector<size_t> pending(call.size());
    std::iota(pending.begin(), pending.end(), size_t{0});
    for (int attempt = 1; !pending.empty(); ++attempt) {
      size_t via = rng_() % stores_.size();
      auto& store = *stores_[via];
      std::vector<caf::expected<append_result>> answers;
      if (many) {
        std::vector<append_request> requests;
        for (auto i : pending)
          requests.push_back(call[i].request);
        answers = store.append_many(std::move(requests));
      } else {
        const auto& req = call.front().request;
        answers.push_back(store.append(req.stream, req.expected, req.events));
      }
      if (answers.size() != pending.size())
        throw std::runtime_error(
          "append_many gave " + std::to_string(answers.size()) + " answers to "
          + std::to_string(pending.size()) + " requests");
      std::vector<size_t> again;
      for (size_t k = 0; k < pending.size(); ++k) {
        auto& p = call[pending[k]];
        auto& res = answers[k];
        p.attempts = attempt;
        log_.write("attempt\t" + p.key + "\t" + std::to_string(attempt) + "\t"
                   + (via == 0 ? "direct" : "proxy") + "\t"
                   + answer_fields(res));
        if (!res && has_code(res.error(), store_errc::commit_outcome_unknown))
          p.any_unknown = true;
        if (!res && is_retryable(res.error()) && attempt < max_attempts) {
          again.push_back(pending[k]);
          continue;
        }
        p.answer = std::move(res);
      }
      pending = std::move(again);
      if (!pending.empty()) {
        // Backs off before retrying: paces the retries, waits for nothing.
        std::this_thread::sleep_for(std::min(5ms * attempt, 100ms));
      }
    }
  }

  /// Learns from the answers and writes the final line of every request.
  void record(const std::vector<planned_request>& call) {
    for (const auto& p : call) {
      const auto& req = p.request;
      auto seen = last_seen_.find(req.stream);
      if (p.answer) {
        if (seen != last_seen_.end())
          seen->second = std::max(seen->second, p.answer->last_version);
        if (acked_.size() < 256)
          acked_.push_back(req);
        else
          acked_[between(0, acked_.size() - 1)] = req;
      } else if (auto conflict = get_version_conflict(p.answer.error());
                 conflict && seen != last_seen_.end()) {
        seen->second = std::max(seen->second, conflict->actual);
      }
      std::string ids;
      for (const auto& ev : req.events)
        ids += (ids.empty() ? "" : ",") + ev.event_id.to_string();
      std::ostringstream line;
      line << "final\t" << p.key << '\t' << p.kind << '\t'
           << req.stream.aggregate_type << '\t'
           << req.stream.aggregate_id.to_string() << '\t'
           << to_string(req.expected) << '\t' << (p.poison ? 1 : 0) << '\t'
           << (p.may_conflict ? 1 : 0) << '\t' << p.repeat_of << '\t'
           << p.attempts << '\t' << (p.any_unknown ? 1 : 0) << '\t' << ids
           << '\t' << answer_fields(p.answer);
      log_.write(line.str(), true);
    }
  }

  std::string prefix_;
  std::mt19937_64 rng_;
  std::array<event_store*, 2> stores_;
  outcome_log& log_;
  std::vector<stream_id> shared_;
  /// The version this thread last saw of each shared stream.
  std::map<stream_id, int64_t> last_seen_;
  /// Requests answered ok, for resending.
  std::vector<append_request> acked_;
  uint64_t calls_ = 0;
};

/// Opens a store, retrying while the parent kills sessions.
event_store_ptr open_store(const postgres_config& cfg) {
  caf::error last;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto store = make_postgres_event_store(cfg);
    if (store)
      return *store;
    last = store.error();
    // Paces the attempts to open.
    std::this_thread::sleep_for(50ms);
  }
  throw std::runtime_error("cannot open a store: " + describe(last));
}

/// Runs in a child process: two stores (direct and through a proxy that cuts
/// at random), four threads appending until the soak's end. Returns the
/// exit code; on failure the message is in the worker's error file.
int run_worker(const soak_plan& plan, int worker) {
  try {
    random_cuts cuts{
      splitmix64(plan.seed + 1000 + static_cast<uint64_t>(worker))};
    auto server = pg_endpoint_of(pg_test_dsn());
    pg_proxy proxy{server.host, server.port};
    postgres_config direct_cfg;
    direct_cfg.dsn = plan.dsn;
    direct_cfg.application_name = plan.schema;
    direct_cfg.migrate = false;
    direct_cfg.reconnect_backoff = 5ms;
    direct_cfg.max_reconnect_backoff = 100ms;
    auto proxied_cfg = direct_cfg;
    proxied_cfg.dsn = proxy.dsn(plan.dsn);
    auto direct = open_store(direct_cfg);
    auto proxied = open_store(proxied_cfg);
    proxy.set_rule([&cuts](const pg_message& msg) {
      return cuts.decide(msg);
    });
    outcome_log log{log_path(plan, worker)};
    auto deadline = clock_type::now() + plan.duration;
    std::mutex mtx;
    std::string failure;
    std::vector<std::thread> threads;
    for (int t = 0; t < threads_per_worker; ++t)
      threads.emplace_back([&, t] {
        try {
          soak_thread{plan, worker, t, {direct.get(), proxied.get()}, log}.run(
            deadline);
        } catch (const std::exception& e) {
          std::lock_guard guard{mtx};
          failure += "thread " + std::to_string(t) + ": " + e.what() + "\n";
        }
      });
    for (auto& t : threads)
      t.join();
    proxy.clear_rule();
    log.write("summary\t" + std::to_string(worker) + "\t"
                + std::to_string(proxy.cuts()) + "\t"
                + std::to_string(proxy.connections()),
              true);
    if (!failure.empty()) {
      write_file(error_path(plan, worker), failure);
      return 3;
    }
    return 0;
  } catch (const std::exception& e) {
    write_file(error_path(plan, worker), e.what());
    return 2;
  }
}

// -- the checks ---------------------------------------------------------------

/// A final line of a worker's log.
struct answer_record {
  std::string line;
  std::string key;
  std::string kind;
  stream_id stream;
  std::string expected;
  bool poison = false;
  bool may_conflict = false;
  std::string repeat_of;
  int attempts = 0;
  bool any_unknown = false;
  std::vector<uuid> ids;
  bool ok = false;
  int64_t first_version = 0;
  int64_t last_version = 0;
  int64_t first_position = 0;
  int64_t last_position = 0;
  bool deduplicated = false;
  std::string error;
  bool retryable = false;

  /// Whether the request brought ids of its own (not a resend or repeat).
  bool owns_ids() const {
    return kind == "new" || kind == "same" || kind == "shared";
  }
};

answer_record parse_answer(const std::string& line) {
  auto f = split(line, '\t');
  if (f.size() < 14)
    throw std::runtime_error("malformed line: " + line);
  answer_record r;
  r.line = line;
  r.key = f[1];
  r.kind = f[2];
  r.stream = stream_id{f[3], *uuid::parse(f[4])};
  r.expected = f[5];
  r.poison = f[6] == "1";
  r.may_conflict = f[7] == "1";
  r.repeat_of = f[8];
  r.attempts = std::stoi(f[9]);
  r.any_unknown = f[10] == "1";
  for (const auto& id : split(f[11], ','))
    r.ids.push_back(*uuid::parse(id));
  r.ok = f[12] == "ok";
  if (r.ok) {
    if (f.size() < 18)
      throw std::runtime_error("malformed line: " + line);
    r.first_version = std::stoll(f[13]);
    r.last_version = std::stoll(f[14]);
    r.first_position = std::stoll(f[15]);
    r.last_position = std::stoll(f[16]);
    r.deduplicated = f[17] == "1";
  } else {
    r.error = f[13];
    r.retryable = f.size() > 14 && f[14] == "1";
  }
  return r;
}

/// An event of the log as the checks see it.
struct log_row {
  int64_t position = 0;
  uuid id;
  std::string type;
  stream_id stream;
  int64_t version = 0;
};

/// What the workers reported, read back from their logs.
struct soak_reports {
  std::vector<answer_record> answers;
  std::map<std::string, size_t> by_key;
  std::map<std::string, std::vector<std::string>> attempts;
  size_t cuts = 0;
  size_t proxied_connections = 0;
};

soak_reports read_reports(const soak_plan& plan) {
  soak_reports out;
  for (int w = 0; w < worker_count; ++w) {
    std::ifstream in{log_path(plan, w)};
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("final\t", 0) == 0) {
        out.answers.push_back(parse_answer(line));
        out.by_key[out.answers.back().key] = out.answers.size() - 1;
      } else if (line.rfind("attempt\t", 0) == 0) {
        auto f = split(line, '\t');
        out.attempts[f.at(1)].push_back(line);
      } else if (line.rfind("summary\t", 0) == 0) {
        auto f = split(line, '\t');
        out.cuts += std::stoul(f.at(2));
        out.proxied_connections += std::stoul(f.at(3));
      }
    }
  }
  return out;
}

/// Reads the whole log of `schema` in position order.
std::vector<log_row> read_log(pg_admin& admin, const std::string& schema) {
  std::string sql = "SELECT global_position, event_id, event_type,"
                    " aggregate_type, aggregate_id, aggregate_version FROM "
                    + schema + ".events ORDER BY global_position";
  auto* res = PQexec(admin.handle(), sql.c_str());
  std::unique_ptr<PGresult, decltype(&PQclear)> guard{res, &PQclear};
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    FAIL("cannot read the log: " << PQresultErrorMessage(res));
  std::vector<log_row> rows;
  rows.reserve(static_cast<size_t>(PQntuples(res)));
  for (int i = 0; i < PQntuples(res); ++i) {
    log_row row;
    row.position = std::stoll(PQgetvalue(res, i, 0));
    row.id = *uuid::parse(PQgetvalue(res, i, 1));
    row.type = PQgetvalue(res, i, 2);
    row.stream
      = stream_id{PQgetvalue(res, i, 3), *uuid::parse(PQgetvalue(res, i, 4))};
    row.version = std::stoll(PQgetvalue(res, i, 5));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string describe_row(const log_row& row) {
  return "position " + std::to_string(row.position) + " id "
         + row.id.to_string() + " type " + row.type + " stream "
         + to_string(row.stream) + " version " + std::to_string(row.version);
}

/// Collects what breaks the soak's rules, each with the evidence.
class violations {
public:
  explicit violations(const soak_reports& reports) : reports_(reports) {
    // nop
  }

  /// Adds a violation about the log alone.
  void add(std::string what) {
    items_.push_back(std::move(what));
  }

  /// Adds a violation about a request: with its final line and attempts.
  void add(const answer_record& r, const std::string& what) {
    std::string text = what + "\n    final: " + r.line;
    if (auto i = reports_.attempts.find(r.key); i != reports_.attempts.end())
      for (const auto& line : i->second)
        text += "\n    " + line;
    items_.push_back(std::move(text));
  }

  bool empty() const {
    return items_.empty();
  }

  /// The first `n` violations, and how many there are.
  std::string report(size_t n = 30) const {
    std::string text = std::to_string(items_.size()) + " violation(s):";
    for (size_t i = 0; i < items_.size() && i < n; ++i)
      text += "\n  " + items_[i];
    return text;
  }

private:
  const soak_reports& reports_;
  std::vector<std::string> items_;
};

/// Checks the log's own shape: dense positions (1; in the overlapping feed
/// increasing, with none beyond what was allocated), dense versions per
/// stream (2), no Poison event (6).
void check_log_shape(const std::vector<log_row>& log, int64_t counter,
                     bool dense, violations& out) {
  for (size_t i = 0; i < log.size(); ++i)
    if (dense ? log[i].position != static_cast<int64_t>(i) + 1
              : i > 0 && log[i].position <= log[i - 1].position) {
      out.add("positions are not " + std::string{dense ? "1..head" : "rising"}
              + ": row " + std::to_string(i + 1) + " is "
              + describe_row(log[i]));
      break;
    }
  int64_t head = log.empty() ? 0 : log.back().position;
  if (dense ? counter != head : counter < head)
    out.add("the allocated position is " + std::to_string(counter)
            + ", the head " + std::to_string(head));
  std::map<stream_id, std::vector<const log_row*>> streams;
  for (const auto& row : log)
    streams[row.stream].push_back(&row);
  for (auto& [sid, rows] : streams) {
    std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) {
      return a->version < b->version;
    });
    for (size_t i = 0; i < rows.size(); ++i)
      if (rows[i]->version != static_cast<int64_t>(i) + 1) {
        out.add("stream " + to_string(sid) + " versions are not 1.."
                + std::to_string(rows.size()) + ": " + describe_row(*rows[i]));
        break;
      }
  }
  for (const auto& row : log)
    if (row.type == poison_type)
      out.add("a Poison event is stored: " + describe_row(row));
}

/// Checks every answer against the log (3, 4, 5) and against what its
/// request could be answered.
void check_answers(const soak_reports& reports, const std::vector<log_row>& log,
                   violations& out) {
  std::unordered_map<uuid, const log_row*> stored;
  for (const auto& row : log)
    stored[row.id] = &row;
  std::unordered_map<uuid, const answer_record*> owner;
  // Requests whose repeat later in the same call may have written their ids
  // (the repeat was acknowledged or its outcome was unknown): once a group
  // is split, a repeat is decided on its own and can write what the request
  // it repeats did not.
  std::unordered_map<std::string, bool> written_by_repeat;
  for (const auto& r : reports.answers)
    if (r.kind == "repeat" && (r.ok || r.any_unknown))
      written_by_repeat[r.repeat_of] = true;
  for (const auto& r : reports.answers) {
    bool own_write = r.owns_ids() && written_by_repeat.count(r.key) == 0;
    if (r.owns_ids())
      for (const auto& id : r.ids)
        owner[id] = &r;
    size_t present = 0;
    for (const auto& id : r.ids)
      present += stored.count(id);
    if (r.ok) {
      // 3: in the log with exactly its ids, at the versions and positions
      // it was told.
      auto n = static_cast<int64_t>(r.ids.size());
      bool match = r.last_version - r.first_version + 1 == n
                   && r.last_position - r.first_position + 1 == n;
      for (size_t k = 0; match && k < r.ids.size(); ++k) {
        auto i = stored.find(r.ids[k]);
        auto off = static_cast<int64_t>(k);
        match = i != stored.end() && i->second->stream == r.stream
                && i->second->version == r.first_version + off
                && i->second->position == r.first_position + off;
      }
      if (!match)
        out.add(r, "acknowledged, but the log does not hold its events at "
                   "the versions and positions it was told ("
                     + std::to_string(present) + " of "
                     + std::to_string(r.ids.size()) + " ids stored)");
      if (r.poison)
        out.add(r, "a request with a Poison event was acknowledged");
      if (r.kind == "resend" && !r.deduplicated)
        out.add(r, "a re-sent acknowledged append was not answered as a "
                   "replay");
      if (own_write && r.deduplicated && !r.any_unknown)
        out.add(r, "a new append was answered as a replay although no "
                   "attempt was commit_outcome_unknown: an attempt that "
                   "failed wrote it");
    } else if (r.error == "commit_outcome_unknown") {
      // 5: all or nothing.
      if (r.owns_ids() && present != 0 && present != r.ids.size())
        out.add(r, "outcome unknown, and " + std::to_string(present) + " of "
                     + std::to_string(r.ids.size()) + " of its ids are stored");
    } else {
      // 4: nothing written.
      if (own_write && present != 0)
        out.add(r, "failed with " + r.error + ", yet " + std::to_string(present)
                     + " of " + std::to_string(r.ids.size())
                     + " of its ids are stored");
      bool conflict = r.error == "wrong_expected_version";
      bool allowed = r.retryable || (conflict && r.may_conflict)
                     || (r.error == "invalid_argument" && r.poison);
      if (r.kind == "resend" && !r.retryable)
        allowed = false;
      if (r.poison && !conflict && r.error != "invalid_argument"
          && !r.retryable)
        allowed = false;
      if (!allowed)
        out.add(r, "answered " + r.error
                     + ", which this request cannot "
                       "get");
    }
    if (r.kind == "repeat") {
      // A request acknowledged in the attempt that answered its repeat
      // too: the repeat is a replay of it. A refused one is decided again
      // (the call may have changed its stream in between), which the rules
      // above check; so is one answered in another attempt (a split group
      // can have left the request unknown and let its repeat write).
      auto i = reports.by_key.find(r.repeat_of);
      if (i == reports.by_key.end()) {
        out.add(r, "the request it repeats has no final line");
      } else if (const auto& o = reports.answers[i->second];
                 o.ok && o.attempts == r.attempts && !r.retryable
                 && !(r.ok && r.deduplicated
                      && o.first_version == r.first_version
                      && o.last_version == r.last_version
                      && o.first_position == r.first_position
                      && o.last_position == r.last_position)) {
        out.add(r, "a repeat of an acknowledged request of its call was not "
                   "answered as its replay: "
                     + o.line);
      }
    }
  }
  // Every stored event was sent by a worker (acknowledged or unknown).
  for (const auto& row : log)
    if (owner.count(row.id) == 0)
      out.add("an event no request sent is stored: " + describe_row(row));
}

/// Terminates a random session of the soak; returns whether one ended.
bool terminate_one(PGconn* admin, const std::string& sql) {
  if (PQstatus(admin) != CONNECTION_OK)
    PQreset(admin);
  auto* res = PQexec(admin, sql.c_str());
  bool killed = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0
                && std::string{PQgetvalue(res, 0, 0)} == "t";
  PQclear(res);
  return killed;
}

} // namespace

TEST_CASE("appends under random connection cuts and killed sessions keep "
          "every answer true to the log",
          "[postgres][stress][soak]") {
  auto seed
    = env_number("ES_SOAK_SEED", (uint64_t{std::random_device{}()} << 32)
                                   | std::random_device{}());
  auto seconds = env_number("ES_SOAK_SECONDS", 120);
  std::cout << "postgres_append_soak: seed " << seed
            << " (ES_SOAK_SEED=" << seed << " replays it), " << seconds
            << " s of load" << std::endl;
  CAPTURE(seed);
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  const auto schema = cfg.application_name;
  {
    // Runs the migrations; closed before the workers start.
    auto store = make_postgres_event_store(cfg);
    if (!store)
      FAIL("cannot open the store: " << describe(store.error()));
  }
  fx.admin.exec("ALTER TABLE " + schema
                + ".events ADD CONSTRAINT soak_no_poison"
                  " CHECK (event_type <> 'Poison')");
  temp_dir dir;
  soak_plan plan;
  plan.seed = seed;
  plan.duration = std::chrono::seconds{seconds};
  plan.schema = schema;
  plan.dsn = cfg.dsn;
  plan.dir = dir.path().string();
  // Fork before this process starts any thread; the children use none of
  // its connections and leave with _exit.
  std::cout.flush();
  std::vector<pid_t> children;
  for (int w = 0; w < worker_count; ++w) {
    auto pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
      _exit(run_worker(plan, w));
    children.push_back(pid);
  }
  // Terminate a random session of the soak's every 50-300 ms until the
  // workers are done.
  std::mt19937_64 rng{splitmix64(seed ^ 0x6b696c6cull)};
  const auto kill_sql = "SELECT pg_terminate_backend(pid) FROM"
                        " pg_stat_activity WHERE application_name = '"
                        + schema + "' ORDER BY random() LIMIT 1";
  auto started = clock_type::now();
  auto give_up = started + plan.duration + 240s;
  size_t kills = 0;
  std::map<pid_t, int> statuses;
  bool overran = false;
  while (statuses.size() < children.size()) {
    // Paces the kills.
    std::this_thread::sleep_for(std::chrono::milliseconds{50 + rng() % 251});
    kills += terminate_one(fx.admin.handle(), kill_sql) ? 1 : 0;
    for (auto pid : children) {
      int status = 0;
      if (statuses.count(pid) == 0 && waitpid(pid, &status, WNOHANG) == pid)
        statuses[pid] = status;
    }
    if (clock_type::now() > give_up) {
      overran = true;
      for (auto pid : children) {
        if (statuses.count(pid) > 0)
          continue;
        int status = 0;
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        statuses[pid] = status;
      }
    }
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
    clock_type::now() - started);
  std::string failures;
  for (int w = 0; w < worker_count; ++w) {
    int status = statuses[children[static_cast<size_t>(w)]];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
      continue;
    failures += "worker " + std::to_string(w) + " ";
    if (WIFEXITED(status))
      failures += "exited with " + std::to_string(WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
      failures += "was killed by signal " + std::to_string(WTERMSIG(status));
    failures += ": " + read_file(error_path(plan, w)) + "\n";
  }
  if (overran)
    failures += "the workers overran the soak by 240 s and were killed\n";
  if (!failures.empty())
    FAIL(failures);

  auto reports = read_reports(plan);
  auto log = read_log(fx.admin, schema);
  auto counter = std::stoll(fx.admin.value(
    "SELECT GREATEST(c.position, CASE WHEN s.is_called THEN s.last_value"
    " ELSE 0 END) FROM "
    + schema + ".es_position c, " + schema + ".es_position_seq s"));
  violations found{reports};
  check_log_shape(log, counter, pg_test_feed() == postgres_feed::serialized,
                  found);
  check_answers(reports, log, found);

  // What happened, for a reader of the output.
  size_t ok = 0;
  size_t replays = 0;
  size_t events = 0;
  size_t retried_ok = 0;
  size_t retries = 0;
  size_t saw_unknown = 0;
  std::map<std::string, size_t> by_kind;
  std::map<std::string, size_t> errors;
  for (const auto& r : reports.answers) {
    ++by_kind[r.kind];
    retries += static_cast<size_t>(r.attempts - 1);
    saw_unknown += r.any_unknown ? 1 : 0;
    if (r.ok) {
      ++ok;
      replays += r.deduplicated ? 1 : 0;
      events += r.deduplicated ? 0 : r.ids.size();
      retried_ok += r.attempts > 1 ? 1 : 0;
    } else {
      ++errors[r.error];
    }
  }
  std::ostringstream summary;
  summary << "postgres_append_soak: seed " << seed << ", " << elapsed.count()
          << " ms, " << reports.answers.size() << " requests (";
  for (const auto& [kind, n] : by_kind)
    summary << kind << " " << n << ", ";
  summary << "poison "
          << std::count_if(reports.answers.begin(), reports.answers.end(),
                           [](auto& r) {
                             return r.poison;
                           })
          << ")\n  ok " << ok << " (replays " << replays << ", after a retry "
          << retried_ok << "), events written " << events << ", log head "
          << counter << "\n  errors:";
  for (const auto& [name, n] : errors)
    summary << " " << name << " " << n;
  summary << "\n  retries " << retries << ", requests that saw "
          << "commit_outcome_unknown " << saw_unknown << ", proxy cuts "
          << reports.cuts << " (of " << reports.proxied_connections
          << " proxied connections), sessions killed " << kills;
  std::cout << summary.str() << std::endl;
  INFO(summary.str());
  if (!found.empty()) {
    // Printed unwrapped too: the lines hold the workers' log lines.
    std::cout << found.report() << std::endl;
    FAIL(found.report());
  }
  // 7: the soak was not vacuous.
  CHECK(ok >= std::min<size_t>(2000, 20 * seconds));
  CHECK(reports.cuts > 0);
  CHECK(kills > 0);
  CHECK(retried_ok > 0);
  CHECK(errors["invalid_argument"] > 0);
}
