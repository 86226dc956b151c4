#include "leases.hpp"

#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

namespace es::cluster {

// -- the view -----------------------------------------------------------------

const lease_owner* cluster_view::owner(const std::string& kind,
                                       uint32_t item) const {
  auto i = owners.find(kind);
  if (i == owners.end() || item >= i->second.size() || !i->second[item])
    return nullptr;
  return &*i->second[item];
}

const node_info* cluster_view::node(const std::string& node_id) const {
  for (const auto& n : nodes)
    if (n.node_id == node_id)
      return &n;
  return nullptr;
}

bool cluster_view::serves(const std::string& kind, uint32_t item,
                          std::chrono::steady_clock::time_point now) const {
  if (!connected || now >= valid_until)
    return false;
  auto i = held.find(kind);
  return i != held.end() && i->second.count(item) > 0;
}

namespace detail {

namespace {

using steady = std::chrono::steady_clock;

struct result_deleter {
  void operator()(PGresult* r) const {
    PQclear(r);
  }
};

using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// A PostgreSQL session of the lease keeper (text-format queries).
class session {
public:
  ~session() {
    close();
  }

  bool open() const {
    return conn_ != nullptr;
  }

  caf::error connect(const std::string& dsn, const std::string& app_name,
                     std::chrono::milliseconds ttl) {
    close();
    const char* keys[]
      = {"dbname", "application_name", "connect_timeout", nullptr};
    auto timeout = std::to_string(std::max<int64_t>(
      2, std::chrono::ceil<std::chrono::seconds>(ttl).count()));
    const char* values[]
      = {dsn.c_str(), app_name.c_str(), timeout.c_str(), nullptr};
    conn_ = PQconnectdbParams(keys, values, 1);
    if (PQstatus(conn_) != CONNECTION_OK) {
      auto why = std::string{PQerrorMessage(conn_)};
      close();
      return make_store_error(store_errc::connection_failed,
                              "cluster lease session: " + why);
    }
    // The server ends this session when it sits idle past the TTL, which
    // releases its locks: a paused or hung node loses its leases. Ticks
    // keep a healthy session busy well inside the TTL.
    auto set = "SET idle_session_timeout = " + std::to_string(ttl.count());
    if (auto res = exec(set, {}); !res)
      return std::move(res.error());
    return caf::none;
  }

  void close() {
    if (conn_ != nullptr)
      PQfinish(conn_);
    conn_ = nullptr;
  }

  caf::expected<result_ptr> exec(const std::string& sql,
                                 const std::vector<std::string>& params) {
    if (conn_ == nullptr)
      return make_store_error(store_errc::connection_failed,
                              "cluster lease session is closed");
    std::vector<const char*> ptrs;
    for (const auto& p : params)
      ptrs.push_back(p.c_str());
    // Without parameters, a script of several statements may run.
    result_ptr r{params.empty()
                   ? PQexec(conn_, sql.c_str())
                   : PQexecParams(conn_, sql.c_str(),
                                  static_cast<int>(ptrs.size()), nullptr,
                                  ptrs.data(), nullptr, nullptr, 0)};
    auto status = PQresultStatus(r.get());
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
      return r;
    auto why = std::string{PQresultErrorMessage(r.get())};
    if (why.empty())
      why = PQerrorMessage(conn_);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
      why.pop_back();
    if (PQstatus(conn_) != CONNECTION_OK)
      return make_store_error(store_errc::connection_failed,
                              "cluster lease session: " + why);
    return make_store_error(store_errc::internal,
                            "cluster lease query failed: " + why);
  }

private:
  PGconn* conn_ = nullptr;
};

std::string text(const result_ptr& r, int row, int col) {
  return PQgetisnull(r.get(), row, col) ? std::string{}
                                        : PQgetvalue(r.get(), row, col);
}

double number(const result_ptr& r, int row, int col) {
  return PQgetisnull(r.get(), row, col)
           ? 0.0
           : std::strtod(PQgetvalue(r.get(), row, col), nullptr);
}

/// Rendezvous score of `item` for `node`: nodes prefer different items, so
/// two nodes taking free items at once rarely try the same ones.
uint64_t score(const std::string& node, const std::string& kind,
               uint32_t item) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& s) {
    for (auto c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
  };
  mix(node);
  mix(kind);
  mix(std::to_string(item));
  return h;
}

constexpr const char* create_sql
  = "SET client_min_messages = warning;"
    "SELECT pg_advisory_xact_lock(hashtext('es.cluster/schema'));"
    "CREATE TABLE IF NOT EXISTS es_cluster_nodes ("
    " cluster TEXT NOT NULL,"
    " node_id TEXT NOT NULL,"
    " host TEXT NOT NULL,"
    " port INTEGER NOT NULL,"
    " pid INTEGER NOT NULL,"
    " backend_pid INTEGER NOT NULL,"
    " backend_start TIMESTAMPTZ NOT NULL,"
    " started_at TIMESTAMPTZ NOT NULL,"
    " heartbeat_at TIMESTAMPTZ NOT NULL,"
    " PRIMARY KEY (cluster, node_id));"
    "CREATE TABLE IF NOT EXISTS es_cluster_leases ("
    " cluster TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " item INTEGER NOT NULL,"
    " node_id TEXT,"
    " epoch BIGINT NOT NULL DEFAULT 0,"
    " acquired_at TIMESTAMPTZ,"
    " PRIMARY KEY (cluster, kind, item));";

constexpr const char* register_sql
  = "INSERT INTO es_cluster_nodes (cluster, node_id, host, port, pid,"
    " backend_pid, backend_start, started_at, heartbeat_at)"
    " SELECT $1, $2, $3, $4::int, $5::int, a.pid, a.backend_start, now(),"
    " now() FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()"
    " ON CONFLICT (cluster, node_id) DO UPDATE SET host = excluded.host,"
    " port = excluded.port, pid = excluded.pid,"
    " backend_pid = excluded.backend_pid,"
    " backend_start = excluded.backend_start,"
    " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at";

// A new session holds no locks: rows naming this node are from an earlier
// session and would keep others from taking those items.
constexpr const char* forget_sql = "UPDATE es_cluster_leases SET node_id = NULL"
                                   " WHERE cluster = $1 AND node_id = $2";

constexpr const char* heartbeat_sql
  = "UPDATE es_cluster_nodes SET heartbeat_at = now()"
    " WHERE cluster = $1 AND node_id = $2 AND backend_pid = pg_backend_pid()";

// Live means: the session that registered the node still exists. The
// server knows that at once when a process dies (its socket closes) and
// after `idle_session_timeout` when a process hangs.
constexpr const char* live_sql
  = "SELECT n.node_id, n.host, n.port, n.pid,"
    " extract(epoch FROM n.heartbeat_at), extract(epoch FROM n.started_at)"
    " FROM es_cluster_nodes n JOIN pg_stat_activity a"
    " ON a.pid = n.backend_pid AND a.backend_start = n.backend_start"
    " WHERE n.cluster = $1 ORDER BY n.node_id";

constexpr const char* owners_sql
  = "SELECT kind, item, node_id, epoch, extract(epoch FROM acquired_at)"
    " FROM es_cluster_leases WHERE cluster = $1 AND node_id IS NOT NULL";

constexpr const char* try_lock_sql
  = "SELECT pg_try_advisory_lock(hashtext($1), $2::int)";

constexpr const char* claim_sql
  = "INSERT INTO es_cluster_leases (cluster, kind, item, node_id, epoch,"
    " acquired_at) VALUES ($1, $2, $3::int, $4, 1, now())"
    " ON CONFLICT (cluster, kind, item) DO UPDATE SET"
    " node_id = excluded.node_id, epoch = es_cluster_leases.epoch + 1,"
    " acquired_at = now() RETURNING epoch";

constexpr const char* unclaim_sql
  = "UPDATE es_cluster_leases SET node_id = NULL WHERE cluster = $1"
    " AND kind = $2 AND item = $3::int AND node_id = $4";

constexpr const char* unlock_sql
  = "SELECT pg_advisory_unlock(hashtext($1), $2::int)";

} // namespace

caf::error create_cluster_tables(const std::string& dsn) {
  session s;
  if (auto err
      = s.connect(dsn, "es.cluster.migrate", std::chrono::milliseconds{60000}))
    return err;
  auto res = s.exec(std::string{"BEGIN;"} + create_sql + "COMMIT;", {});
  return res ? caf::error{} : std::move(res.error());
}

struct lease_keeper::state {
  struct kind_state {
    lease_kind spec;
    std::string lock_key;
    /// Items this node holds and serves, with their epochs.
    std::map<uint32_t, int64_t> held;
    /// Items given up last tick, still locked until this tick.
    std::set<uint32_t> draining;
  };

  std::vector<kind_state> kinds;
  session db;
  bool registered = false;
  /// Last connection failure, reported once.
  std::string last_failure;
};

lease_keeper::lease_keeper(node_config cfg, std::vector<lease_kind> kinds,
                           std::function<void()> changed)
  : cfg_(std::move(cfg)), st_(std::make_unique<state>()),
    changed_(std::move(changed)) {
  for (auto& k : kinds) {
    state::kind_state ks;
    ks.lock_key = "es.cluster/" + cfg_.cluster + "/" + k.kind;
    ks.spec = std::move(k);
    st_->kinds.push_back(std::move(ks));
  }
  auto v = std::make_shared<cluster_view>();
  v->self = cfg_.node_id;
  view_ = std::move(v);
}

lease_keeper::~lease_keeper() {
  stop();
}

void lease_keeper::start() {
  thread_ = std::thread{[this] {
    run();
  }};
}

void lease_keeper::stop() {
  {
    std::lock_guard guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

std::shared_ptr<const cluster_view> lease_keeper::view() const {
  std::lock_guard guard{mtx_};
  return view_;
}

void lease_keeper::run() {
  auto& st = *st_;
  const auto& cfg = cfg_;
  auto publish = [this](std::shared_ptr<const cluster_view> v) {
    {
      std::lock_guard guard{mtx_};
      view_ = std::move(v);
    }
    if (changed_)
      changed_();
  };
  // Forgets every lease: the session is gone, so the server released them.
  auto drop_all = [&](const std::string& why) {
    st.db.close();
    st.registered = false;
    bool had = false;
    for (auto& k : st.kinds) {
      for (auto& [item, epoch] : k.held) {
        had = true;
        if (k.spec.released)
          k.spec.released(item);
      }
      k.held.clear();
      k.draining.clear();
    }
    if (why != st.last_failure) {
      log(log_level::warning, "cluster node " + cfg.node_id + ": "
                                + (had ? "lost its leases: " : "") + why);
      st.last_failure = why;
    }
    auto v = std::make_shared<cluster_view>();
    v->self = cfg.node_id;
    publish(std::move(v));
  };
  auto tick = [&]() {
    auto p = [&](auto&&... xs) {
      return std::vector<std::string>{std::string{xs}...};
    };
    if (!st.db.open()) {
      if (auto err = st.db.connect(cfg.dsn, "es.cluster/" + cfg.node_id,
                                   cfg.lease_ttl)) {
        drop_all(describe(err));
        return;
      }
      auto reg = st.db.exec(register_sql, p(cfg.cluster, cfg.node_id, cfg.host,
                                            std::to_string(cfg.port),
                                            std::to_string(getpid())));
      if (!reg) {
        drop_all(describe(reg.error()));
        return;
      }
      if (auto res = st.db.exec(forget_sql, p(cfg.cluster, cfg.node_id));
          !res) {
        drop_all(describe(res.error()));
        return;
      }
      st.registered = true;
      if (!st.last_failure.empty())
        log(log_level::info,
            "cluster node " + cfg.node_id + ": lease session open again");
      st.last_failure.clear();
    }
    // Renewing the heartbeat proves the session (and so every lock) alive
    // as of now; it stays alive at least the TTL after this query.
    auto sent = steady::now();
    auto hb = st.db.exec(heartbeat_sql, p(cfg.cluster, cfg.node_id));
    if (!hb) {
      drop_all(describe(hb.error()));
      return;
    }
    if (std::atoi(PQcmdTuples(hb->get())) != 1) {
      drop_all("another process registered node id " + cfg.node_id);
      return;
    }
    auto live = st.db.exec(live_sql, p(cfg.cluster));
    if (!live) {
      drop_all(describe(live.error()));
      return;
    }
    auto v = std::make_shared<cluster_view>();
    v->self = cfg.node_id;
    v->connected = true;
    std::set<std::string> live_ids;
    for (int r = 0; r < PQntuples(live->get()); ++r) {
      node_info n;
      n.node_id = text(*live, r, 0);
      n.host = text(*live, r, 1);
      n.port = static_cast<uint16_t>(std::atoi(text(*live, r, 2).c_str()));
      n.pid = std::atoi(text(*live, r, 3).c_str());
      n.heartbeat_at = number(*live, r, 4);
      n.started_at = number(*live, r, 5);
      live_ids.insert(n.node_id);
      v->nodes.push_back(std::move(n));
    }
    auto live_count = std::max<size_t>(1, live_ids.size());
    auto read_owners = [&]() -> caf::expected<result_ptr> {
      return st.db.exec(owners_sql, p(cfg.cluster));
    };
    auto rows = read_owners();
    if (!rows) {
      drop_all(describe(rows.error()));
      return;
    }
    // kind -> item -> owner node id
    std::map<std::string, std::map<uint32_t, std::string>> owner_of;
    for (int r = 0; r < PQntuples(rows->get()); ++r)
      owner_of[text(*rows, r, 0)]
              [static_cast<uint32_t>(std::atoi(text(*rows, r, 1).c_str()))]
        = text(*rows, r, 2);
    bool failed = false;
    auto check = [&](caf::expected<result_ptr>& res) {
      if (!res) {
        drop_all(describe(res.error()));
        failed = true;
      }
      return !failed;
    };
    for (auto& k : st.kinds) {
      auto kind = k.spec.kind;
      // Items given up on the last tick: their new owners may take them.
      for (auto item : k.draining) {
        auto r1 = st.db.exec(
          unclaim_sql, p(cfg.cluster, kind, std::to_string(item), cfg.node_id));
        if (!check(r1))
          return;
        auto r2 = st.db.exec(unlock_sql, p(k.lock_key, std::to_string(item)));
        if (!check(r2))
          return;
      }
      k.draining.clear();
      auto target
        = static_cast<size_t>((k.spec.items + live_count - 1) / live_count);
      if (k.held.size() > target) {
        // Give up the items this node wants least; they stay locked until
        // the next tick so their work here can wind down first.
        std::vector<uint32_t> mine;
        for (auto& [item, epoch] : k.held)
          mine.push_back(item);
        std::sort(mine.begin(), mine.end(), [&](uint32_t a, uint32_t b) {
          return score(cfg.node_id, kind, a) < score(cfg.node_id, kind, b);
        });
        for (size_t i = 0; i < mine.size() - target; ++i) {
          k.held.erase(mine[i]);
          k.draining.insert(mine[i]);
          if (k.spec.released)
            k.spec.released(mine[i]);
        }
      } else if (k.held.size() < target) {
        // Free items: no owner, or an owner whose session is gone.
        auto& owners = owner_of[kind];
        std::vector<uint32_t> free;
        for (uint32_t item = 0; item < k.spec.items; ++item) {
          if (k.held.count(item) > 0)
            continue;
          auto o = owners.find(item);
          if (o == owners.end() || live_ids.count(o->second) == 0)
            free.push_back(item);
        }
        std::sort(free.begin(), free.end(), [&](uint32_t a, uint32_t b) {
          return score(cfg.node_id, kind, a) > score(cfg.node_id, kind, b);
        });
        for (auto item : free) {
          if (k.held.size() >= target)
            break;
          auto got
            = st.db.exec(try_lock_sql, p(k.lock_key, std::to_string(item)));
          if (!check(got))
            return;
          if (text(*got, 0, 0) != "t")
            continue;
          auto claim = st.db.exec(
            claim_sql, p(cfg.cluster, kind, std::to_string(item), cfg.node_id));
          if (!check(claim))
            return;
          auto epoch = std::atoll(text(*claim, 0, 0).c_str());
          k.held[item] = epoch;
          owner_of[kind][item] = cfg.node_id;
          if (k.spec.acquired)
            k.spec.acquired(item, epoch);
        }
      }
      if (failed)
        return;
    }
    // The routing table: owners whose sessions are alive.
    rows = read_owners();
    if (!rows) {
      drop_all(describe(rows.error()));
      return;
    }
    for (const auto& k : st.kinds) {
      v->owners[k.spec.kind].resize(k.spec.items);
      v->held[k.spec.kind] = k.held;
    }
    for (int r = 0; r < PQntuples(rows->get()); ++r) {
      auto kind = text(*rows, r, 0);
      auto item = static_cast<uint32_t>(std::atoi(text(*rows, r, 1).c_str()));
      lease_owner o;
      o.node_id = text(*rows, r, 2);
      o.epoch = std::atoll(text(*rows, r, 3).c_str());
      o.acquired_at = number(*rows, r, 4);
      auto i = v->owners.find(kind);
      if (i == v->owners.end() || item >= i->second.size()
          || live_ids.count(o.node_id) == 0)
        continue;
      // This node's own rows count only for what it serves: an item being
      // drained has no owner to route to until its next owner claims it.
      if (o.node_id == cfg.node_id && v->held[kind].count(item) == 0)
        continue;
      i->second[item] = std::move(o);
    }
    // Conservative: the server can end the session no earlier than the
    // TTL after the heartbeat finished, and that was after `sent`.
    v->valid_until = sent + cfg.lease_ttl - cfg.tick / 2;
    publish(std::move(v));
  };
  std::unique_lock guard{mtx_};
  while (!stopping_) {
    guard.unlock();
    tick();
    guard.lock();
    cv_.wait_for(guard, cfg.tick, [this] {
      return stopping_;
    });
  }
  guard.unlock();
  // Ending the session releases every lock at once.
  st.db.close();
  for (auto& k : st.kinds) {
    for (auto& [item, epoch] : k.held)
      if (k.spec.released)
        k.spec.released(item);
    k.held.clear();
    k.draining.clear();
  }
  auto v = std::make_shared<cluster_view>();
  v->self = cfg.node_id;
  publish(std::move(v));
}

} // namespace detail

} // namespace es::cluster
