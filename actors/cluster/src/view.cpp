#include "es/cluster/view.hpp"
#include "es/store/errors.hpp"

#include <libpq-fe.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>

namespace es::cluster {

namespace {

struct conn_deleter {
  void operator()(PGconn* c) const {
    PQfinish(c);
  }
};

struct result_deleter {
  void operator()(PGresult* r) const {
    PQclear(r);
  }
};

using result_ptr = std::unique_ptr<PGresult, result_deleter>;

std::string field(PGresult* r, int row, int col) {
  return PQgetisnull(r, row, col) ? std::string{} : PQgetvalue(r, row, col);
}

std::string clock_time(double seconds) {
  if (seconds <= 0)
    return "-";
  auto t = static_cast<time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03dZ", tm.tm_hour, tm.tm_min,
                tm.tm_sec,
                static_cast<int>((seconds - static_cast<double>(t)) * 1000));
  return buf;
}

} // namespace

caf::expected<cluster_status> read_cluster_status(const std::string& dsn,
                                                  const std::string& cluster) {
  std::unique_ptr<PGconn, conn_deleter> conn{PQconnectdb(dsn.c_str())};
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return make_store_error(store_errc::connection_failed,
                            "cluster status: "
                              + std::string{PQerrorMessage(conn.get())});
  auto query = [&](const char* sql) -> caf::expected<result_ptr> {
    const char* params[] = {cluster.c_str()};
    result_ptr r{
      PQexecParams(conn.get(), sql, 1, nullptr, params, nullptr, nullptr, 0)};
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK)
      return make_store_error(store_errc::internal,
                              "cluster status: "
                                + std::string{PQresultErrorMessage(r.get())});
    return r;
  };
  auto nodes = query(
    "SELECT n.node_id, n.host, n.port, n.pid,"
    " extract(epoch FROM n.heartbeat_at), extract(epoch FROM n.started_at),"
    " a.pid IS NOT NULL"
    " FROM es_cluster_nodes n LEFT JOIN pg_stat_activity a"
    " ON a.pid = n.backend_pid AND a.backend_start = n.backend_start"
    " WHERE n.cluster = $1 ORDER BY n.node_id");
  if (!nodes)
    return std::move(nodes.error());
  cluster_status st;
  std::map<std::string, bool> live;
  for (int r = 0; r < PQntuples(nodes->get()); ++r) {
    cluster_status::node_row row;
    row.info.node_id = field(nodes->get(), r, 0);
    row.info.host = field(nodes->get(), r, 1);
    row.info.port
      = static_cast<uint16_t>(std::atoi(field(nodes->get(), r, 2).c_str()));
    row.info.pid = std::atoi(field(nodes->get(), r, 3).c_str());
    row.info.heartbeat_at = std::atof(field(nodes->get(), r, 4).c_str());
    row.info.started_at = std::atof(field(nodes->get(), r, 5).c_str());
    row.live = field(nodes->get(), r, 6) == "t";
    live[row.info.node_id] = row.live;
    st.nodes.push_back(std::move(row));
  }
  auto leases = query("SELECT kind, item, coalesce(node_id, ''), epoch,"
                      " extract(epoch FROM acquired_at) FROM es_cluster_leases"
                      " WHERE cluster = $1 ORDER BY kind, item");
  if (!leases)
    return std::move(leases.error());
  for (int r = 0; r < PQntuples(leases->get()); ++r) {
    cluster_status::lease_row row;
    row.kind = field(leases->get(), r, 0);
    row.item
      = static_cast<uint32_t>(std::atoi(field(leases->get(), r, 1).c_str()));
    row.node_id = field(leases->get(), r, 2);
    row.epoch = std::atoll(field(leases->get(), r, 3).c_str());
    row.acquired_at = std::atof(field(leases->get(), r, 4).c_str());
    auto i = live.find(row.node_id);
    row.live = i != live.end() && i->second;
    st.leases.push_back(std::move(row));
  }
  return st;
}

std::string render(const cluster_status& st) {
  std::string out;
  char buf[256];
  // node -> kind -> count
  std::map<std::string, std::map<std::string, int>> counts;
  std::map<std::string, int> unowned;
  for (const auto& l : st.leases) {
    if (l.live)
      ++counts[l.node_id][l.kind];
    else
      ++unowned[l.kind];
  }
  std::snprintf(buf, sizeof(buf), "%-16s %-5s %-21s %-8s %-13s %s\n", "NODE",
                "LIVE", "ADDRESS", "PID", "HEARTBEAT", "LEASES");
  out += buf;
  for (const auto& n : st.nodes) {
    std::string held;
    for (const auto& [kind, count] : counts[n.info.node_id])
      held += (held.empty() ? "" : ", ") + kind + "=" + std::to_string(count);
    auto addr = n.info.host + ":" + std::to_string(n.info.port);
    std::snprintf(buf, sizeof(buf), "%-16s %-5s %-21s %-8d %-13s %s\n",
                  n.info.node_id.c_str(), n.live ? "yes" : "no", addr.c_str(),
                  n.info.pid, clock_time(n.info.heartbeat_at).c_str(),
                  held.empty() ? "-" : held.c_str());
    out += buf;
  }
  for (const auto& [kind, count] : unowned)
    out += "unowned " + kind + ": " + std::to_string(count) + "\n";
  out += "\nKIND             ITEM  OWNER            EPOCH  ACQUIRED\n";
  for (const auto& l : st.leases) {
    std::snprintf(buf, sizeof(buf), "%-16s %4u  %-16s %5lld  %s\n",
                  l.kind.c_str(), l.item, l.live ? l.node_id.c_str() : "-",
                  static_cast<long long>(l.epoch),
                  clock_time(l.acquired_at).c_str());
    out += buf;
  }
  return out;
}

} // namespace es::cluster
