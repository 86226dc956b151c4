#include "leases.hpp"

#include "es/store/errors.hpp"
#include "es/store/log.hpp"

#include "pg_session.hpp"
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

namespace es::cluster::detail {

namespace {

using steady = std::chrono::steady_clock;

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
  = "SELECT pg_advisory_xact_lock(hashtext('es.cluster/schema'));"
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
    " acquired_at = now() RETURNING epoch, extract(epoch FROM acquired_at)";

constexpr const char* unclaim_sql
  = "UPDATE es_cluster_leases SET node_id = NULL WHERE cluster = $1"
    " AND kind = $2 AND item = $3::int AND node_id = $4";

constexpr const char* unlock_sql
  = "SELECT pg_advisory_unlock(hashtext($1), $2::int)";

template <class... Ts>
std::vector<std::string> args(const Ts&... xs) {
  return {std::string{xs}...};
}

} // namespace

caf::error create_cluster_tables(const std::string& dsn) {
  pg_session s;
  if (auto err = s.connect(dsn, "es.cluster/migrate", std::chrono::seconds{60}))
    return err;
  auto res = s.exec(std::string{"BEGIN;"} + create_sql + "COMMIT;");
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
  pg_session db;
  /// Last failure, logged once.
  std::string last_failure;
};

lease_keeper::lease_keeper(node_config cfg, std::vector<lease_kind> kinds)
  : cfg_(std::move(cfg)), st_(std::make_unique<state>()) {
  for (auto& k : kinds) {
    state::kind_state ks;
    ks.lock_key = "es.cluster/" + cfg_.cluster + "/" + k.kind;
    ks.spec = std::move(k);
    st_->kinds.push_back(std::move(ks));
  }
  view_ = empty_view();
}

lease_keeper::~lease_keeper() {
  stop();
}

void lease_keeper::start(std::function<void()> changed) {
  changed_ = std::move(changed);
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

std::shared_ptr<cluster_view> lease_keeper::empty_view() const {
  auto v = std::make_shared<cluster_view>();
  v->self = cfg_.node_id;
  return v;
}

void lease_keeper::publish(std::shared_ptr<const cluster_view> v) {
  {
    std::lock_guard guard{mtx_};
    view_ = std::move(v);
  }
  if (changed_)
    changed_();
}

void lease_keeper::lose_all() {
  st_->db.close();
  for (auto& k : st_->kinds) {
    for (auto& [item, epoch] : k.held)
      if (k.spec.released)
        k.spec.released(item);
    k.held.clear();
    k.draining.clear();
  }
  publish(empty_view());
}

caf::error lease_keeper::open_session() {
  auto& db = st_->db;
  if (auto err
      = db.connect(cfg_.dsn, "es.cluster/" + cfg_.node_id,
                   std::chrono::ceil<std::chrono::seconds>(cfg_.lease_ttl),
                   cfg_.lease_ttl))
    return err;
  if (auto res
      = db.exec(register_sql,
                args(cfg_.cluster, cfg_.node_id, cfg_.host,
                     std::to_string(cfg_.port), std::to_string(getpid())));
      !res)
    return std::move(res.error());
  if (auto res = db.exec(forget_sql, args(cfg_.cluster, cfg_.node_id)); !res)
    return std::move(res.error());
  return caf::none;
}

caf::error lease_keeper::balance(size_t index,
                                 const std::set<std::string>& live,
                                 owner_rows& table) {
  auto& k = st_->kinds[index];
  auto& rows = table[k.spec.kind];
  auto& db = st_->db;
  const auto& kind = k.spec.kind;
  auto item_text = [](uint32_t item) {
    return std::to_string(item);
  };
  // Items given up on the last tick: their next owners may take them now.
  for (auto item : k.draining) {
    if (auto r = db.exec(
          unclaim_sql, args(cfg_.cluster, kind, item_text(item), cfg_.node_id));
        !r)
      return std::move(r.error());
    if (auto r = db.exec(unlock_sql, args(k.lock_key, item_text(item))); !r)
      return std::move(r.error());
    rows.erase(item);
  }
  k.draining.clear();
  auto nodes = std::max<size_t>(1, live.size());
  auto target = static_cast<size_t>((k.spec.items + nodes - 1) / nodes);
  auto by_score = [&](uint32_t a, uint32_t b) {
    return score(cfg_.node_id, kind, a) > score(cfg_.node_id, kind, b);
  };
  if (k.held.size() > target) {
    // Give up the items this node wants least; they stay locked until the
    // next tick so that their work here can wind down first.
    std::vector<uint32_t> mine;
    for (auto& [item, epoch] : k.held)
      mine.push_back(item);
    std::sort(mine.begin(), mine.end(), by_score);
    for (size_t i = target; i < mine.size(); ++i) {
      k.held.erase(mine[i]);
      k.draining.insert(mine[i]);
      if (k.spec.released)
        k.spec.released(mine[i]);
    }
    return caf::none;
  }
  // Free items: no owner, or an owner whose session is gone.
  std::vector<uint32_t> free;
  for (uint32_t item = 0; item < k.spec.items; ++item) {
    auto o = rows.find(item);
    if (k.held.count(item) == 0
        && (o == rows.end() || live.count(o->second.node_id) == 0))
      free.push_back(item);
  }
  std::sort(free.begin(), free.end(), by_score);
  for (auto item : free) {
    if (k.held.size() >= target)
      break;
    auto got = db.exec(try_lock_sql, args(k.lock_key, item_text(item)));
    if (!got)
      return std::move(got.error());
    if (text(*got, 0, 0) != "t")
      continue;
    auto claim = db.exec(
      claim_sql, args(cfg_.cluster, kind, item_text(item), cfg_.node_id));
    if (!claim)
      return std::move(claim.error());
    lease_owner o;
    o.node_id = cfg_.node_id;
    o.epoch = std::atoll(text(*claim, 0, 0).c_str());
    o.acquired_at = number(*claim, 0, 1);
    k.held[item] = o.epoch;
    rows[item] = o;
    if (k.spec.acquired)
      k.spec.acquired(item, o.epoch);
  }
  return caf::none;
}

caf::expected<std::shared_ptr<const cluster_view>> lease_keeper::tick() {
  auto& st = *st_;
  if (!st.db.open()) {
    if (auto err = open_session())
      return err;
    if (!st.last_failure.empty())
      log(log_level::info,
          "cluster node " + cfg_.node_id + ": lease session open again",
          log_context{"cluster"});
    st.last_failure.clear();
  }
  // Renewing the heartbeat proves the session (and so every lock) alive as
  // of now; the server keeps it at least the TTL after this query.
  auto sent = steady::now();
  auto hb = st.db.exec(heartbeat_sql, args(cfg_.cluster, cfg_.node_id));
  if (!hb)
    return std::move(hb.error());
  if (std::atoi(PQcmdTuples(hb->get())) != 1)
    return make_store_error(store_errc::internal,
                            "another process registered node id "
                              + cfg_.node_id);
  auto live = st.db.exec(live_sql, args(cfg_.cluster));
  if (!live)
    return std::move(live.error());
  auto v = empty_view();
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
  auto table = st.db.exec(owners_sql, args(cfg_.cluster));
  if (!table)
    return std::move(table.error());
  owner_rows rows;
  for (int r = 0; r < PQntuples(table->get()); ++r) {
    lease_owner o;
    o.node_id = text(*table, r, 2);
    o.epoch = std::atoll(text(*table, r, 3).c_str());
    o.acquired_at = number(*table, r, 4);
    rows[text(*table, r, 0)]
        [static_cast<uint32_t>(std::atoi(text(*table, r, 1).c_str()))]
      = std::move(o);
  }
  for (size_t i = 0; i < st.kinds.size(); ++i)
    if (auto err = balance(i, live_ids, rows))
      return err;
  // The routing table: live owners. Claims other nodes made during this
  // tick show on the next one.
  for (const auto& k : st.kinds) {
    auto& owners = v->owners[k.spec.kind];
    owners.resize(k.spec.items);
    v->held[k.spec.kind] = k.held;
    for (const auto& [item, o] : rows[k.spec.kind]) {
      // This node's rows count only for what it serves: a draining item
      // has no owner to route to until its next owner claims it.
      bool mine = o.node_id == cfg_.node_id;
      if (item < owners.size() && live_ids.count(o.node_id) > 0
          && (!mine || k.held.count(item) > 0))
        owners[item] = o;
    }
  }
  // Conservative: the server can end the session no earlier than the TTL
  // after the heartbeat finished, and that was after `sent`.
  v->valid_until = sent + cfg_.lease_ttl - cfg_.tick / 2;
  return v;
}

void lease_keeper::run() {
  auto& st = *st_;
  std::unique_lock guard{mtx_};
  while (!stopping_) {
    guard.unlock();
    if (auto v = tick()) {
      publish(std::move(*v));
    } else {
      // The session is gone or unusable: the server released (or will
      // release, once it closes) every lock.
      auto why = describe(v.error());
      bool had = false;
      for (const auto& k : st.kinds)
        had = had || !k.held.empty();
      if (why != st.last_failure) {
        log(log_level::warning,
            "cluster node " + cfg_.node_id + ": "
              + (had ? "lost its leases: " : "") + why,
            log_context{"cluster"});
        st.last_failure = why;
      }
      lose_all();
    }
    guard.lock();
    cv_.wait_for(guard, cfg_.tick, [this] {
      return stopping_;
    });
  }
  guard.unlock();
  // Ending the session releases every lock at once.
  lose_all();
}

} // namespace es::cluster::detail
