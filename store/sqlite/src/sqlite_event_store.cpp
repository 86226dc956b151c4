#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"

#include "append_rules.hpp"
#include "connection.hpp"
#include "group_commit.hpp"
#include "schema.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <unordered_set>

namespace es {

namespace {

using detail::sqlite::connection;
using detail::sqlite::reset_guard;
using detail::sqlite::statement;
using detail::sqlite::translate;

constexpr const char* event_columns
  = "global_position, event_id, event_type, event_version, aggregate_type,"
    " aggregate_id, aggregate_version, tenant_id, occurred_at,"
    " correlation_id, causation_id, actor_id, metadata, payload";

recorded_event read_row(const statement& st) {
  recorded_event ev;
  ev.global_position = st.int64_at(0);
  ev.event_id = st.uuid_at(1);
  ev.event_type = st.text_at(2);
  ev.event_version = static_cast<int32_t>(st.int64_at(3));
  ev.aggregate_type = st.text_at(4);
  ev.aggregate_id = st.uuid_at(5);
  ev.aggregate_version = st.int64_at(6);
  ev.tenant_id = st.opt_uuid_at(7);
  ev.occurred_at = timestamp{std::chrono::microseconds{st.int64_at(8)}};
  ev.correlation_id = st.opt_uuid_at(9);
  ev.causation_id = st.opt_uuid_at(10);
  ev.actor_id = st.text_at(11);
  ev.metadata = st.text_at(12);
  ev.payload = st.text_at(13);
  return ev;
}

/// The event in a statement's current row, read column by column as the
/// caller asks (the columns of `event_columns`).
class row_view final : public event_view {
public:
  explicit row_view(const statement& st) noexcept : st_(st) {
    // nop
  }

  int64_t global_position() const override {
    return st_.int64_at(0);
  }
  uuid event_id() const override {
    return st_.uuid_at(1);
  }
  std::string_view event_type() const override {
    return st_.text_view_at(2);
  }
  int32_t event_version() const override {
    return static_cast<int32_t>(st_.int64_at(3));
  }
  std::string_view aggregate_type() const override {
    return st_.text_view_at(4);
  }
  uuid aggregate_id() const override {
    return st_.uuid_at(5);
  }
  int64_t aggregate_version() const override {
    return st_.int64_at(6);
  }
  std::optional<uuid> tenant_id() const override {
    return st_.opt_uuid_at(7);
  }
  timestamp occurred_at() const override {
    return timestamp{std::chrono::microseconds{st_.int64_at(8)}};
  }
  std::optional<uuid> correlation_id() const override {
    return st_.opt_uuid_at(9);
  }
  std::optional<uuid> causation_id() const override {
    return st_.opt_uuid_at(10);
  }
  std::string_view actor_id() const override {
    return st_.text_view_at(11);
  }
  std::string_view metadata() const override {
    return st_.text_view_at(12);
  }
  std::string_view payload() const override {
    return st_.text_view_at(13);
  }

private:
  const statement& st_;
};

const char* sync_pragma(sqlite_sync x) {
  switch (x) {
    case sqlite_sync::full: return "PRAGMA synchronous = FULL";
    case sqlite_sync::normal: return "PRAGMA synchronous = NORMAL";
    case sqlite_sync::off: return "PRAGMA synchronous = OFF";
  }
  return "PRAGMA synchronous = FULL";
}

std::string to_json_array(const std::vector<std::string>& xs) {
  // Type names are restricted to characters that need no escaping, but
  // the filter comes from callers: escape quotes and backslashes anyway.
  std::string result = "[";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      result += ',';
    result += '"';
    for (char c : xs[i]) {
      if (c == '"' || c == '\\')
        result += '\\';
      if (static_cast<unsigned char>(c) >= 0x20)
        result += c;
    }
    result += '"';
  }
  result += ']';
  return result;
}

/// The conditions of an `event_filter` on the events table, with
/// parameters ?3 (event types), ?4 (aggregate types) and ?5 (tenant).
struct filter_clause {
  const event_filter& filter;
  std::string sql;
  std::string types_json;
  std::string aggs_json;

  explicit filter_clause(const event_filter& f) : filter(f) {
    if (!f.event_types.empty()) {
      sql += " AND event_type IN (SELECT value FROM json_each(?3))";
      types_json = to_json_array(f.event_types);
    }
    if (!f.aggregate_types.empty()) {
      sql += " AND aggregate_type IN (SELECT value FROM json_each(?4))";
      aggs_json = to_json_array(f.aggregate_types);
    }
    if (f.tenant_id)
      sql += " AND tenant_id = ?5";
  }

  void bind(statement& st) const {
    if (!types_json.empty())
      st.bind(3, std::string_view{types_json});
    if (!aggs_json.empty())
      st.bind(4, std::string_view{aggs_json});
    if (filter.tenant_id)
      st.bind(5, *filter.tenant_id);
  }
};

/// Prepares a page of the feed and binds it: the events after ?1 (`after`)
/// that meet `condition` on ?2 (`second`) and `clause`, in position order,
/// at most ?6 (`count`). Texts are bound without a copy: `clause` must
/// outlive the statement's use, and the caller resets it (`reset_guard`).
template <class Second>
caf::expected<statement*>
prepare_feed_page(connection& conn, const char* condition,
                  const filter_clause& clause, int64_t after,
                  const Second& second, int64_t count) {
  std::string sql = "SELECT ";
  sql += event_columns;
  sql += " FROM events WHERE global_position > ?1 AND ";
  sql += condition;
  sql += clause.sql;
  sql += " ORDER BY global_position ASC LIMIT ?6";
  auto st = conn.prepare(sql);
  if (!st)
    return st;
  (*st)->bind(1, after);
  (*st)->bind(2, second);
  clause.bind(**st);
  (*st)->bind(6, count);
  return st;
}

class sqlite_event_store final : public event_store {
public:
  sqlite_event_store(sqlite_config cfg, std::unique_ptr<connection> writer)
    : cfg_(std::move(cfg)), writer_(std::move(writer)),
      queue_(cfg_.max_group_size,
             [this](const std::vector<detail::write_job*>& group) {
               commit_group(group);
             }) {
    // nop
  }

  std::string name() const override {
    return "sqlite";
  }

  const store_limits& limits() const override {
    return cfg_.limits;
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
    // Validation (JSON parsing included) runs on the caller's thread, so
    // concurrent callers validate in parallel.
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
    auto conn = checkout();
    if (!conn)
      return std::move(conn.error());
    read_txn txn{**conn};
    if (txn.error)
      return std::move(txn.error);
    stream_slice result;
    auto head = head_of(**conn, stream);
    if (!head)
      return std::move(head.error());
    auto vis = visibility(**conn, stream, head->version);
    if (!vis)
      return std::move(vis.error());
    if (vis->deleted)
      return detail::make_stream_deleted(stream, head->tombstoned,
                                         head->tenant_id);
    auto version = head->version;
    result.stream_version = version;
    result.first_version = vis->first_version;
    bool forwards = opts.direction == read_direction::forwards;
    int64_t from = 0;
    int64_t bound = 0;
    if (forwards) {
      from = std::max<int64_t>(opts.from_version, vis->first_version);
      bound
        = opts.to_version > 0 ? std::min(opts.to_version, version) : version;
    } else {
      from = opts.from_version > 0 ? std::min(opts.from_version, version)
                                   : version;
      bound = std::max<int64_t>(opts.to_version, vis->first_version);
    }
    std::string sql = "SELECT ";
    sql += event_columns;
    sql += forwards ? " FROM events WHERE aggregate_type = ?1"
                      " AND aggregate_id = ?2 AND aggregate_version >= ?3"
                      " AND aggregate_version <= ?4"
                      " ORDER BY aggregate_version ASC LIMIT ?5"
                    : " FROM events WHERE aggregate_type = ?1"
                      " AND aggregate_id = ?2 AND aggregate_version <= ?3"
                      " AND aggregate_version >= ?4"
                      " ORDER BY aggregate_version DESC LIMIT ?5";
    auto st = (*conn)->prepare(sql);
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, std::string_view{stream.aggregate_type});
    (*st)->bind(2, stream.aggregate_id);
    (*st)->bind(3, from);
    (*st)->bind(4, bound);
    (*st)->bind(5, count);
    int rc;
    while ((rc = (*st)->step()) == SQLITE_ROW)
      result.events.push_back(read_row(**st));
    if (rc != SQLITE_DONE)
      return translate(rc, (*conn)->handle(), "read_stream failed");
    // As on PostgreSQL: nothing between `from` and `bound` means nothing
    // lies beyond. (Computing `from - 1` or `from + 1` instead overflowed
    // for damaged rows at the ends of the version range.)
    if (result.events.empty()) {
      result.next_version = from;
      result.end_of_stream = true;
    } else if (forwards) {
      auto last = result.events.back().aggregate_version;
      // Saturated: a (damaged) row may hold the largest version.
      result.next_version
        = last == std::numeric_limits<int64_t>::max() ? last : last + 1;
      result.end_of_stream = last >= bound;
    } else {
      auto last = result.events.back().aggregate_version;
      result.next_version = last - 1;
      result.end_of_stream = last <= bound;
    }
    metrics_.count_read(result.events.size());
    return result;
  }

  caf::expected<all_slice> read_all(const read_all_options& opts) override {
    all_slice result;
    auto err = read_feed(opts, result, true, [&](const statement& st) {
      result.events.push_back(read_row(st));
      return true;
    });
    if (err)
      return err;
    return result;
  }

  caf::expected<all_slice>
  visit_all(const read_all_options& opts,
            const std::function<bool(const event_view&)>& fn) override {
    all_slice result;
    auto err = read_feed(opts, result, false, [&](const statement& st) {
      return fn(row_view{st});
    });
    if (err)
      return err;
    return result;
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& opts) override {
    auto page = detail::page_size(opts.max_count, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = static_cast<int64_t>(*page);
    all_slice result;
    auto err = read_at_head([&](connection& conn, int64_t head) -> caf::error {
      // Two index lookups: the chain by correlation id, and its root by id.
      filter_clause clause{opts.filter};
      auto st
        = prepare_feed_page(conn, "(correlation_id = ?2 OR event_id = ?2)",
                            clause, opts.after_position, correlation_id, count);
      if (!st)
        return std::move(st.error());
      reset_guard guard{**st};
      int rc;
      while ((rc = (*st)->step()) == SQLITE_ROW)
        result.events.push_back(read_row(**st));
      if (rc != SQLITE_DONE)
        return translate(rc, conn.handle(), "read_correlated failed");
      result.end_of_feed = static_cast<int64_t>(result.events.size()) < count;
      result.next_position = result.end_of_feed
                               ? std::max(head, opts.after_position)
                               : result.events.back().global_position;
      return caf::none;
    });
    if (err)
      return err;
    metrics_.count_read(result.events.size());
    return result;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    auto conn = checkout();
    if (!conn)
      return std::move(conn.error());
    auto head = head_of(**conn, stream);
    if (!head)
      return std::move(head.error());
    if (head->deleted || head->tombstoned)
      return detail::make_stream_deleted(stream, head->tombstoned,
                                         head->tenant_id);
    return head->version;
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    auto conn = checkout();
    if (!conn)
      return std::move(conn.error());
    std::string sql = "SELECT ";
    sql += event_columns;
    sql += " FROM events WHERE event_id = ?1";
    auto st = (*conn)->prepare(sql);
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, event_id);
    auto rc = (*st)->step();
    if (rc == SQLITE_ROW)
      return std::optional<recorded_event>{read_row(**st)};
    if (rc == SQLITE_DONE)
      return std::optional<recorded_event>{};
    return translate(rc, (*conn)->handle(), "find_event failed");
  }

  caf::expected<int64_t> head_position() override {
    auto conn = checkout();
    if (!conn)
      return std::move(conn.error());
    return detail::sqlite::query_int(
      **conn, "SELECT MAX(global_position) FROM events", 0);
  }

  store_health check_health() override {
    store_health h;
    h.expected_schema_version = sqlite_schema_version();
    auto start = std::chrono::steady_clock::now();
    auto check = [&]() -> caf::error {
      auto conn = checkout();
      if (!conn)
        return std::move(conn.error());
      auto one = detail::sqlite::query_int(**conn, "SELECT 1", 0);
      if (!one)
        return std::move(one.error());
      h.reachable = true;
      for (const char* table :
           {"dead_letter_queue", "event_outbox", "events",
            "projection_checkpoints", "schema_migrations", "snapshots"}) {
        auto n = detail::sqlite::query_int(
          **conn,
          std::string{"SELECT COUNT(*) FROM sqlite_master WHERE type = "
                      "'table' AND name = '"}
            + table + "'",
          0);
        if (!n)
          return std::move(n.error());
        if (*n == 0)
          h.missing_tables.emplace_back(table);
      }
      if (!h.missing_tables.empty())
        return caf::none;
      auto version = detail::sqlite::query_int(
        **conn, "SELECT MAX(version) FROM schema_migrations", 0);
      if (!version)
        return std::move(version.error());
      h.schema_version = static_cast<int>(*version);
      return caf::none;
    };
    auto err = check();
    detail::settle_health(h, err, start);
    return h;
  }

  store_metrics metrics() const override {
    return metrics_.snapshot();
  }

private:
  // -- reads ------------------------------------------------------------------

  /// Returns a read connection to the pool when it goes out of scope.
  class pooled {
  public:
    pooled(sqlite_event_store* owner, std::unique_ptr<connection> conn)
      : owner_(owner), conn_(std::move(conn)) {
      // nop
    }
    pooled(pooled&&) = default;
    ~pooled() {
      if (conn_)
        owner_->checkin(std::move(conn_));
    }
    connection& operator*() const {
      return *conn_;
    }
    connection* operator->() const {
      return conn_.get();
    }

  private:
    sqlite_event_store* owner_;
    std::unique_ptr<connection> conn_;
  };

  /// A deferred read transaction: every query inside sees one snapshot.
  struct read_txn {
    explicit read_txn(connection& c) : conn(c) {
      error = conn.exec("BEGIN");
    }
    ~read_txn() {
      if (!error)
        static_cast<void>(conn.exec("COMMIT"));
    }
    connection& conn;
    caf::error error;
  };

  /// Runs `body` with a pooled connection inside a read transaction and
  /// the head position as of its start: how every read of the feed begins,
  /// so that a page and the head it reports agree.
  template <class Body>
  caf::error read_at_head(Body body) {
    auto conn = checkout();
    if (!conn)
      return std::move(conn.error());
    read_txn txn{**conn};
    if (txn.error)
      return std::move(txn.error);
    auto head = detail::sqlite::query_int(
      **conn, "SELECT MAX(global_position) FROM events", 0);
    if (!head)
      return std::move(head.error());
    return body(**conn, *head);
  }

  /// Reads one page of the feed (`read_all`'s checks and bounds), handing
  /// each row to `on_row` (false ends the page after that row). Fills
  /// `result`'s bounds; the rows go wherever `on_row` puts them (with
  /// `reserve`, into `result.events`, reserved for the page).
  template <class OnRow>
  caf::error read_feed(const read_all_options& opts, all_slice& result,
                       bool reserve, OnRow on_row) {
    auto page = detail::feed_page_size(opts, cfg_.limits);
    if (!page)
      return std::move(page.error());
    auto count = static_cast<int64_t>(*page);
    return read_at_head([&](connection& conn, int64_t head) -> caf::error {
      const auto& f = opts.filter;
      // A filtered page examines at most `window` positions, so one call
      // stays short even when few events match; the slice then ends early
      // with `next_position` at the window's end.
      int64_t window = f.empty() ? count : std::max<int64_t>(count * 64, 65536);
      // Saturated: a checkpoint near the largest position must not overflow.
      auto upper = std::min(
        head, opts.after_position > std::numeric_limits<int64_t>::max() - window
                ? std::numeric_limits<int64_t>::max()
                : opts.after_position + window);
      filter_clause clause{f};
      auto st = prepare_feed_page(conn, "global_position <= ?2", clause,
                                  opts.after_position, upper, count);
      if (!st)
        return std::move(st.error());
      reset_guard guard{**st};
      if (reserve)
        result.events.reserve(static_cast<size_t>(
          std::min(count, std::max<int64_t>(upper - opts.after_position, 0))));
      int64_t rows = 0;
      int64_t last = 0;
      int rc;
      while ((rc = (*st)->step()) == SQLITE_ROW) {
        ++rows;
        last = (*st)->int64_at(0);
        if (!on_row(static_cast<const statement&>(**st))) {
          result.next_position = last;
          result.end_of_feed = false;
          metrics_.count_read(static_cast<size_t>(rows));
          return caf::none;
        }
      }
      if (rc != SQLITE_DONE)
        return translate(rc, conn.handle(), "read_all failed");
      if (rows == count)
        result.next_position = last;
      else
        result.next_position = std::max(upper, opts.after_position);
      result.end_of_feed = result.next_position >= head;
      metrics_.count_read(static_cast<size_t>(rows));
      return caf::none;
    });
  }

  caf::expected<pooled> checkout() {
    {
      std::lock_guard guard{pool_mtx_};
      if (!pool_.empty()) {
        auto conn = std::move(pool_.back());
        pool_.pop_back();
        return pooled{this, std::move(conn)};
      }
    }
    auto conn = connection::open(cfg_.path, false,
                                 static_cast<int>(cfg_.busy_timeout.count()),
                                 cfg_.cache_pages, cfg_.mmap_bytes);
    if (!conn)
      return std::move(conn.error());
    return pooled{this, std::move(*conn)};
  }

  void checkin(std::unique_ptr<connection> conn) {
    std::lock_guard guard{pool_mtx_};
    if (pool_.size() < cfg_.read_connections)
      pool_.push_back(std::move(conn));
  }

  /// The stream's version and whether its last event deletes it.
  static caf::expected<detail::stream_head> head_of(connection& conn,
                                                    const stream_id& stream) {
    auto st = conn.prepare(
      "SELECT aggregate_version, event_type, tenant_id FROM events"
      " WHERE aggregate_type = ?1 AND aggregate_id = ?2"
      " ORDER BY aggregate_version DESC LIMIT 1");
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, std::string_view{stream.aggregate_type});
    (*st)->bind(2, stream.aggregate_id);
    detail::stream_head head;
    auto rc = (*st)->step();
    if (rc == SQLITE_ROW) {
      head.version = (*st)->int64_at(0);
      head.set_last_type((*st)->text_at(1));
      head.tenant_id = (*st)->opt_uuid_at(2);
    } else if (rc != SQLITE_DONE) {
      return translate(rc, conn.handle(), "stream lookup failed");
    }
    return head;
  }

  /// What readers see of a stream at `version`, from its control events
  /// (through the partial index of schema 4).
  static caf::expected<detail::stream_visibility>
  visibility(connection& conn, const stream_id& stream, int64_t version) {
    if (version == 0)
      return detail::stream_visibility{};
    auto st = conn.prepare(
      "SELECT event_type, aggregate_version, payload FROM events"
      " WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND event_type IN"
      " ('es.StreamDeleted', 'es.StreamTombstoned', 'es.StreamTruncated')");
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, std::string_view{stream.aggregate_type});
    (*st)->bind(2, stream.aggregate_id);
    std::vector<detail::control_event> controls;
    int rc;
    while ((rc = (*st)->step()) == SQLITE_ROW)
      controls.push_back(detail::control_event{std::string{(*st)->text_at(0)},
                                               (*st)->int64_at(1),
                                               std::string{(*st)->text_at(2)}});
    if (rc != SQLITE_DONE)
      return translate(rc, conn.handle(), "stream lookup failed");
    return detail::visibility_of(version, controls);
  }

  // -- group commit -----------------------------------------------------------

  /// Commits a group in one transaction. Requests are decided in order, each
  /// seeing what the earlier ones wrote; a request whose answer rests on
  /// such an uncommitted write (a replay of it, a refusal because of it)
  /// shares the fate of the transaction: if the commit fails, it gets the
  /// commit's error too, never an answer about rows that do not exist.
  void commit_group(const std::vector<detail::write_job*>& group) {
    auto fail_all = [&](const caf::error& err) {
      detail::fail_group(group, err);
    };
    size_t valid = 0;
    for (auto* j : group)
      for (auto& r : *j->rejected)
        valid += r ? 0 : 1;
    if (valid == 0) {
      fail_all(caf::error{});
      return;
    }
    // Results that stand or fall with the transaction.
    std::vector<caf::expected<append_result>*> bound;
    try {
      if (auto err = writer_->exec("BEGIN IMMEDIATE")) {
        fail_all(err);
        return;
      }
      bool wrote = false;
      caf::error aborted;
      std::unordered_set<uuid> written_ids;
      std::set<stream_id> written_streams;
      for (auto* j : group) {
        j->results.reserve(j->requests->size());
        // An atomic job runs under a savepoint of its own: a refused
        // request takes the job's other writes back with it.
        bool job_savepoint = j->atomic && !aborted;
        if (job_savepoint)
          if (auto err = writer_->exec("SAVEPOINT es_atomic")) {
            for (size_t i = 0; i < j->requests->size(); ++i)
              j->results.emplace_back(err);
            continue;
          }
        for (size_t i = 0; i < j->requests->size(); ++i) {
          if ((*j->rejected)[i]) {
            j->results.emplace_back((*j->rejected)[i]);
            continue;
          }
          if (aborted) {
            // SQLite rolled the transaction back: nothing of the group
            // is written, and later statements would commit on their own.
            j->results.emplace_back(aborted);
            continue;
          }
          auto& req = (*j->requests)[i];
          bool depends = written_streams.count(req.stream) > 0;
          for (size_t k = 0; !depends && k < req.events.size(); ++k)
            depends = written_ids.count(req.events[k].event_id) > 0;
          // A lone request needs no savepoint: if it fails, the whole
          // transaction rolls back.
          auto res = append_one(req, valid > 1);
          if (!res && sqlite3_get_autocommit(writer_->handle()) != 0) {
            aborted = make_store_error(
              static_cast<store_errc>(res.error().code()),
              "the group's transaction was rolled back, nothing of it was "
              "written: "
                + error_description(res.error()));
            for (auto* r : bound)
              *r = aborted;
            j->results.emplace_back(aborted);
            continue;
          }
          if (res && !res->deduplicated) {
            wrote = true;
            written_streams.insert(req.stream);
            for (const auto& ev : req.events)
              written_ids.insert(ev.event_id);
          }
          j->results.emplace_back(std::move(res));
          if (depends
              || (j->results.back() && !j->results.back()->deduplicated))
            bound.push_back(&j->results.back());
        }
        if (job_savepoint && !aborted) {
          bool refused = false;
          for (const auto& res : j->results)
            refused = refused || !res;
          if (refused) {
            static_cast<void>(writer_->exec("ROLLBACK TO es_atomic"));
            for (auto& res : j->results)
              if (res)
                res = detail::atomic_sibling_refused();
          }
          if (auto err = writer_->exec("RELEASE es_atomic"); err && !refused)
            for (auto& res : j->results)
              res = err;
        }
      }
      if (aborted) {
        static_cast<void>(writer_->exec("ROLLBACK"));
        return;
      }
      auto err = writer_->exec(wrote ? "COMMIT" : "ROLLBACK");
      if (!err && wrote) {
        size_t requests = 0;
        for (auto* j : group)
          requests += j->requests->size();
        metrics_.count_transaction(requests);
      }
      if (err) {
        bool still_open = sqlite3_get_autocommit(writer_->handle()) == 0;
        static_cast<void>(writer_->exec("ROLLBACK"));
        // A commit that failed writing or syncing the log may still be
        // found committed after a crash; busy and full leave nothing.
        if (wrote && has_code(err, store_errc::io_error) && !still_open)
          err = make_store_error(store_errc::commit_outcome_unknown,
                                 "commit failed: " + error_description(err)
                                   + "; retry with the same event ids");
        for (auto* r : bound)
          *r = err;
      }
    } catch (const std::exception& ex) {
      static_cast<void>(writer_->exec("ROLLBACK"));
      fail_all(make_store_error(store_errc::internal,
                                std::string{"append failed: "} + ex.what()));
    }
  }

  caf::expected<std::optional<detail::stored_location>>
  locate(const uuid& event_id) {
    auto st = writer_->prepare(
      "SELECT aggregate_type, aggregate_id, aggregate_version, global_position,"
      " event_type, event_version, payload FROM events WHERE event_id = ?1");
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, event_id);
    auto rc = (*st)->step();
    if (rc == SQLITE_DONE)
      return std::optional<detail::stored_location>{};
    if (rc != SQLITE_ROW)
      return translate(rc, writer_->handle(), "event lookup failed");
    detail::stored_location loc;
    loc.stream.aggregate_type = (*st)->text_at(0);
    loc.stream.aggregate_id = (*st)->uuid_at(1);
    loc.version = (*st)->int64_at(2);
    loc.position = (*st)->int64_at(3);
    loc.digest = detail::content_digest(
      (*st)->text_at(4), static_cast<int32_t>((*st)->int64_at(5)),
      (*st)->text_at(6));
    return std::optional<detail::stored_location>{std::move(loc)};
  }

  caf::expected<detail::stream_head> stream_head_of(const stream_id& stream) {
    auto st = writer_->prepare(
      "SELECT aggregate_version, tenant_id, event_type FROM events"
      " WHERE aggregate_type = ?1 AND aggregate_id = ?2"
      " ORDER BY aggregate_version DESC LIMIT 1");
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, std::string_view{stream.aggregate_type});
    (*st)->bind(2, stream.aggregate_id);
    detail::stream_head head;
    auto rc = (*st)->step();
    if (rc == SQLITE_ROW) {
      head.version = (*st)->int64_at(0);
      head.tenant_id = (*st)->opt_uuid_at(1);
      head.set_last_type((*st)->text_at(2));
    } else if (rc != SQLITE_DONE) {
      return translate(rc, writer_->handle(), "stream lookup failed");
    }
    return head;
  }

  /// Runs one request inside the group's transaction. With `shared`, other
  /// requests share the transaction, and a request of several events runs
  /// under a savepoint so its failure leaves nothing behind.
  caf::expected<append_result> append_one(append_request& req, bool shared) {
    auto lookup = [this](const uuid& id) {
      return locate(id);
    };
    auto replay = detail::check_replay(req.stream, req.events, lookup, false);
    if (!replay)
      return std::move(replay.error());
    if (*replay)
      return std::move(**replay);
    auto head = stream_head_of(req.stream);
    if (!head)
      return std::move(head.error());
    if (auto err = detail::check_and_assign_versions(req.stream, req.expected,
                                                     *head, req.events))
      return err;
    bool savepoint = shared && req.events.size() > 1;
    if (savepoint)
      if (auto err = writer_->exec("SAVEPOINT es_append"))
        return err;
    auto res = insert_events(req);
    if (savepoint) {
      if (!res)
        static_cast<void>(writer_->exec("ROLLBACK TO es_append"));
      if (auto err = writer_->exec("RELEASE es_append"); err && res)
        return err;
    }
    return res;
  }

  caf::expected<append_result> insert_events(append_request& req) {
    auto st = writer_->prepare(
      "INSERT INTO events (event_id, event_type, event_version,"
      " aggregate_type, aggregate_id, aggregate_version, tenant_id,"
      " occurred_at, correlation_id, causation_id, actor_id, metadata,"
      " payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
      " ?13)");
    if (!st)
      return std::move(st.error());
    append_result result;
    result.stream = req.stream;
    for (auto& ev : req.events) {
      reset_guard guard{**st};
      (*st)->bind(1, ev.event_id);
      (*st)->bind(2, std::string_view{ev.event_type});
      (*st)->bind(3, int64_t{ev.event_version});
      (*st)->bind(4, std::string_view{ev.aggregate_type});
      (*st)->bind(5, ev.aggregate_id);
      (*st)->bind(6, ev.aggregate_version);
      (*st)->bind(7, ev.tenant_id);
      (*st)->bind(
        8, static_cast<int64_t>(ev.occurred_at.time_since_epoch().count()));
      (*st)->bind(9, ev.correlation_id);
      (*st)->bind(10, ev.causation_id);
      (*st)->bind(11, std::string_view{ev.actor_id});
      (*st)->bind(12, std::string_view{ev.metadata});
      (*st)->bind(13, std::string_view{ev.payload});
      auto rc = (*st)->step();
      if (rc != SQLITE_DONE)
        return insert_error(rc, req, ev);
      auto pos = sqlite3_last_insert_rowid(writer_->handle());
      if (result.first_position == 0)
        result.first_position = pos;
      result.last_position = pos;
      if (cfg_.outbox)
        if (auto err = insert_outbox_row(ev, pos))
          return err;
    }
    result.first_version = req.events.front().aggregate_version;
    result.last_version = req.events.back().aggregate_version;
    return result;
  }

  /// The outbox row of `ev`, in the append's transaction.
  caf::error insert_outbox_row(const event_data& ev, int64_t position) {
    auto st = writer_->prepare(
      "INSERT INTO event_outbox (event_id, global_position, event_type,"
      " aggregate_type, aggregate_id, tenant_id, created_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!st)
      return std::move(st.error());
    reset_guard guard{**st};
    (*st)->bind(1, ev.event_id);
    (*st)->bind(2, position);
    (*st)->bind(3, std::string_view{ev.event_type});
    (*st)->bind(4, std::string_view{ev.aggregate_type});
    (*st)->bind(5, ev.aggregate_id);
    (*st)->bind(6, ev.tenant_id);
    (*st)->bind(7, static_cast<int64_t>(
                     std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count()));
    auto rc = (*st)->step();
    if (rc != SQLITE_DONE)
      return detail::sqlite::translate(rc, writer_->handle(),
                                       "cannot write the outbox row");
    return caf::none;
  }

  caf::error insert_error(int rc, append_request& req, const event_data& ev) {
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      std::string msg = sqlite3_errmsg(writer_->handle());
      if (msg.find("events.event_id") != std::string::npos) {
        // The statement failed alone; classify with every id of the batch.
        auto lookup = [this](const uuid& id) {
          return locate(id);
        };
        auto replay
          = detail::check_replay(req.stream, req.events, lookup, true);
        if (!replay)
          return std::move(replay.error());
        return make_store_error(store_errc::duplicate_event_id,
                                "event " + ev.event_id.to_string()
                                  + " is already stored");
      }
      auto head = stream_head_of(req.stream);
      return make_version_conflict(req.stream, req.expected,
                                   head ? head->version : -1);
    }
    return translate(rc, writer_->handle(), "append failed");
  }

  sqlite_config cfg_;
  std::unique_ptr<connection> writer_;
  detail::metrics_counter metrics_;

  detail::group_commit_queue queue_;

  std::mutex pool_mtx_;
  std::vector<std::unique_ptr<connection>> pool_;
};

} // namespace

caf::expected<event_store_ptr> make_sqlite_event_store(sqlite_config config) {
  if (config.path.empty())
    return make_store_error(store_errc::invalid_argument,
                            "sqlite_config.path must name a file");
  if (config.max_group_size == 0)
    config.max_group_size = 1;
  auto conn = detail::sqlite::connection::open(
    config.path, true, static_cast<int>(config.busy_timeout.count()),
    config.cache_pages, config.mmap_bytes);
  if (!conn)
    return std::move(conn.error());
  auto& writer = **conn;
  // The first statement reads the header: a file that is not a database
  // fails here with corrupt_database.
  auto mode = detail::sqlite::query_int(writer, "PRAGMA schema_version", 0);
  if (!mode)
    return std::move(mode.error());
  if (auto err = detail::sqlite::enable_wal(writer, config.busy_timeout))
    return err;
  if (auto err = writer.exec(sync_pragma(config.synchronous)))
    return err;
  if (auto err = detail::sqlite::migrate(writer))
    return err;
  return std::make_shared<sqlite_event_store>(std::move(config),
                                              std::move(*conn));
}

} // namespace es
