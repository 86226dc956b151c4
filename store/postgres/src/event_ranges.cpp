// Maintenance of the range-partitioned events table: partitions created
// ahead of the head, old ones detached.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "connection.hpp"
#include "schema.hpp"

#include <algorithm>
#include <map>
#include <string>

namespace es {

namespace {

using detail::pg::connection;

/// Opens an owner session for schema changes: no statement timeout.
caf::expected<std::unique_ptr<connection>>
open_maintenance(const postgres_config& cfg) {
  auto maintenance_cfg = cfg;
  maintenance_cfg.statement_timeout = std::chrono::milliseconds{0};
  auto conn = connection::open(maintenance_cfg);
  if (!conn)
    return std::move(conn.error());
  if (auto res = (*conn)->exec("SET statement_timeout = 0"); !res)
    return std::move(res.error());
  return conn;
}

caf::expected<int64_t> query_int8(connection& conn, const std::string& sql) {
  auto r = conn.exec(sql);
  if (!r)
    return std::move(r.error());
  if (r->rows() == 0 || r->is_null(0, 0))
    return int64_t{0};
  return std::stoll(r->text(0, 0));
}

/// The range size, or `invalid_argument` for a table of another layout.
caf::expected<int64_t> range_size_of(connection& conn) {
  auto r = conn.exec("SELECT to_regclass('es_event_ranges') IS NOT NULL");
  if (!r)
    return std::move(r.error());
  if (r->text(0, 0) != "t")
    return make_store_error(store_errc::invalid_argument,
                            "the events table is not range-partitioned "
                            "(postgres_config::events_range_size)");
  return query_int8(conn, "SELECT range_size FROM es_event_ranges");
}

/// The indexes of the range partitions attached to events now.
caf::expected<std::vector<int64_t>> attached_ranges(connection& conn) {
  auto r = conn.exec("SELECT c.relname FROM pg_inherits i"
                     " JOIN pg_class c ON c.oid = i.inhrelid"
                     " WHERE i.inhparent = 'events'::regclass");
  if (!r)
    return std::move(r.error());
  std::vector<int64_t> result;
  const std::string prefix = "events_r";
  for (int row = 0; row < r->rows(); ++row) {
    auto name = r->text(row, 0);
    if (name.rfind(prefix, 0) != 0)
      continue;
    auto digits = name.substr(prefix.size());
    if (digits.empty()
        || !std::all_of(digits.begin(), digits.end(), [](char c) {
             return c >= '0' && c <= '9';
           }))
      continue;
    result.push_back(std::stoll(digits));
  }
  std::sort(result.begin(), result.end());
  return result;
}

/// Runs `sql` in a transaction of its own.
caf::error in_transaction(connection& conn, const std::string& sql) {
  auto res = conn.exec("BEGIN; " + sql + "; COMMIT");
  if (!res) {
    static_cast<void>(conn.exec("ROLLBACK"));
    return std::move(res.error());
  }
  return caf::none;
}

caf::expected<event_ranges_report> report(connection& conn, int64_t size) {
  event_ranges_report result;
  result.range_size = size;
  auto head = query_int8(conn, detail::pg::allocated_head_sql);
  if (!head)
    return std::move(head.error());
  result.head = *head;
  auto in_default = query_int8(conn, "SELECT count(*) FROM events_default");
  if (!in_default)
    return std::move(in_default.error());
  result.default_rows = *in_default;
  auto ranges = attached_ranges(conn);
  if (!ranges)
    return std::move(ranges.error());
  for (auto k : *ranges)
    result.ranges.push_back(event_range{detail::pg::range_partition_name(k),
                                        k * size + 1, (k + 1) * size});
  return result;
}

} // namespace

caf::expected<event_ranges_report>
postgres_prepare_event_ranges(const postgres_config& cfg, int ahead) {
  if (ahead < 0)
    return make_store_error(store_errc::invalid_argument,
                            "ranges ahead must not be negative");
  auto conn = open_maintenance(cfg);
  if (!conn)
    return std::move(conn.error());
  auto& c = **conn;
  auto size = range_size_of(c);
  if (!size)
    return std::move(size.error());
  auto head = query_int8(c, detail::pg::allocated_head_sql);
  if (!head)
    return std::move(head.error());
  auto ranges = attached_ranges(c);
  if (!ranges)
    return std::move(ranges.error());
  // The range holding the head, and `ahead` more; from the lowest attached
  // range, or the head's when every range was detached.
  auto at_head = *head > 0 ? (*head - 1) / *size : 0;
  auto last = at_head + ahead;
  auto lowest = ranges->empty() ? at_head : ranges->front();
  for (auto k = lowest; k <= last; ++k) {
    if (std::binary_search(ranges->begin(), ranges->end(), k))
      continue;
    // A detached range keeps its table until it is dropped: its positions
    // are history, not room for new rows.
    auto gone
      = c.exec("SELECT to_regclass('" + detail::pg::range_partition_name(k)
               + "') IS NOT NULL");
    if (!gone)
      return std::move(gone.error());
    if (gone->text(0, 0) == "t")
      continue;
    // Rows the default partition took for this range move into the new
    // partition in the same transaction (the default partition is locked
    // meanwhile, so appends landing there wait); attaching builds the
    // partition's indexes.
    auto name = detail::pg::range_partition_name(k);
    auto lo = std::to_string(k * *size + 1);
    auto hi = std::to_string((k + 1) * *size + 1);
    auto where
      = " WHERE global_position >= " + lo + " AND global_position < " + hi;
    auto sql = "LOCK TABLE events_default IN ACCESS EXCLUSIVE MODE;"
               " CREATE TABLE "
               + name
               + " (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
                 " INSERT INTO "
               + name + " SELECT * FROM events_default" + where
               + "; DELETE FROM events_default" + where
               + "; ALTER TABLE events ATTACH PARTITION " + name
               + " FOR VALUES FROM (" + lo + ") TO (" + hi + ")";
    if (auto err = in_transaction(c, sql))
      return make_store_error(static_cast<store_errc>(err.code()),
                              "cannot create " + name + ": "
                                + error_description(err));
  }
  return report(c, *size);
}

caf::expected<event_ranges_report>
postgres_event_ranges(const postgres_config& cfg) {
  auto conn = open_maintenance(cfg);
  if (!conn)
    return std::move(conn.error());
  auto size = range_size_of(**conn);
  if (!size)
    return std::move(size.error());
  return report(**conn, *size);
}

caf::expected<std::vector<std::string>>
postgres_detach_event_ranges(const postgres_config& cfg,
                             int64_t up_to_position) {
  auto conn = open_maintenance(cfg);
  if (!conn)
    return std::move(conn.error());
  auto& c = **conn;
  auto size = range_size_of(c);
  if (!size)
    return std::move(size.error());
  auto head = query_int8(c, detail::pg::allocated_head_sql);
  if (!head)
    return std::move(head.error());
  if (up_to_position < 0 || up_to_position > *head)
    return make_store_error(
      store_errc::invalid_argument,
      "detach up to position " + std::to_string(up_to_position)
        + ": must lie from 0 to the head, " + std::to_string(*head));
  auto ranges = attached_ranges(c);
  if (!ranges)
    return std::move(ranges.error());
  std::vector<std::string> detached;
  for (auto k : *ranges) {
    if ((k + 1) * *size > up_to_position)
      break;
    auto name = detail::pg::range_partition_name(k);
    auto res = c.exec("ALTER TABLE events DETACH PARTITION " + name);
    if (!res)
      return make_store_error(static_cast<store_errc>(res.error().code()),
                              "cannot detach " + name + ": "
                                + error_description(res.error()));
    detached.push_back(std::move(name));
  }
  return detached;
}

} // namespace es
