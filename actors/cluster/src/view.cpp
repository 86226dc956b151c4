#include "es/cluster/view.hpp"

#include "pg_session.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>

namespace es::cluster {

namespace {

using detail::number;
using detail::text;

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

caf::expected<cluster_status> read_cluster_status(const std::string& dsn,
                                                  const std::string& cluster) {
  detail::pg_session db;
  if (auto err = db.connect(dsn, "es.cluster/status", std::chrono::seconds{10}))
    return err;
  auto nodes = db.exec(
    "SELECT n.node_id, n.host, n.port, n.pid,"
    " extract(epoch FROM n.heartbeat_at), extract(epoch FROM n.started_at),"
    " a.pid IS NOT NULL"
    " FROM es_cluster_nodes n LEFT JOIN pg_stat_activity a"
    " ON a.pid = n.backend_pid AND a.backend_start = n.backend_start"
    " WHERE n.cluster = $1 ORDER BY n.node_id",
    {cluster});
  if (!nodes)
    return std::move(nodes.error());
  cluster_status st;
  std::map<std::string, bool> live;
  for (int r = 0; r < PQntuples(nodes->get()); ++r) {
    cluster_status::node_row row;
    row.info.node_id = text(*nodes, r, 0);
    row.info.host = text(*nodes, r, 1);
    row.info.port = static_cast<uint16_t>(number(*nodes, r, 2));
    row.info.pid = static_cast<int32_t>(number(*nodes, r, 3));
    row.info.heartbeat_at = number(*nodes, r, 4);
    row.info.started_at = number(*nodes, r, 5);
    row.live = text(*nodes, r, 6) == "t";
    live[row.info.node_id] = row.live;
    st.nodes.push_back(std::move(row));
  }
  auto leases
    = db.exec("SELECT kind, item, coalesce(node_id, ''), epoch,"
              " extract(epoch FROM acquired_at) FROM es_cluster_leases"
              " WHERE cluster = $1 ORDER BY kind, item",
              {cluster});
  if (!leases)
    return std::move(leases.error());
  for (int r = 0; r < PQntuples(leases->get()); ++r) {
    cluster_status::lease_row row;
    row.kind = text(*leases, r, 0);
    row.item = static_cast<uint32_t>(number(*leases, r, 1));
    row.node_id = text(*leases, r, 2);
    row.epoch = static_cast<int64_t>(number(*leases, r, 3));
    row.acquired_at = number(*leases, r, 4);
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
  out += "\nKIND                     ITEM  OWNER            EPOCH  ACQUIRED\n";
  for (const auto& l : st.leases) {
    std::snprintf(buf, sizeof(buf), "%-24s %4u  %-16s %5lld  %s\n",
                  l.kind.c_str(), l.item, l.live ? l.node_id.c_str() : "-",
                  static_cast<long long>(l.epoch),
                  clock_time(l.acquired_at).c_str());
    out += buf;
  }
  return out;
}

} // namespace es::cluster
