// The database's feed (es_position.feed) and switching it.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"

#include "connection.hpp"
#include "schema.hpp"

#include <string>
#include <thread>

namespace es {

const char* to_string(postgres_feed feed) {
  return feed == postgres_feed::serialized ? "serialized" : "overlapping";
}

namespace detail::pg {

const char* const allocated_head_sql
  = "SELECT GREATEST(c.position,"
    " CASE WHEN s.is_called THEN s.last_value ELSE 0 END)"
    " FROM es_position c, es_position_seq s WHERE c.id = 1";

caf::expected<postgres_feed> read_feed(connection& conn) {
  auto r = conn.exec("SELECT feed FROM es_position WHERE id = 1");
  if (!r)
    return std::move(r.error());
  if (r->rows() != 1)
    return make_store_error(store_errc::corrupt_database,
                            "es_position has no row");
  return r->text(0, 0) == "overlapping" ? postgres_feed::overlapping
                                        : postgres_feed::serialized;
}

namespace {

caf::error rollback_with(connection& conn, caf::error err) {
  static_cast<void>(conn.exec("ROLLBACK"));
  return err;
}

} // namespace

caf::error switch_feed(connection& conn, postgres_feed feed, bool only_if_empty,
                       std::chrono::milliseconds wait) {
  auto step = [&](const std::string& sql) -> caf::expected<result> {
    return conn.exec(sql);
  };
  if (auto r = step("BEGIN"); !r)
    return std::move(r.error());
  // The lock `es_reserve` takes: no reservation runs while this one does.
  // Then the position row: no serialized append is in flight.
  auto locked = step("SELECT pg_advisory_xact_lock(es_reserve_lock_key())");
  if (!locked)
    return rollback_with(conn, std::move(locked.error()));
  auto row = step("SELECT feed FROM es_position WHERE id = 1 FOR UPDATE");
  if (!row)
    return rollback_with(conn, std::move(row.error()));
  if (row->rows() != 1)
    return rollback_with(conn, make_store_error(store_errc::corrupt_database,
                                                "es_position has no row"));
  if (row->text(0, 0) == to_string(feed)) {
    static_cast<void>(step("COMMIT"));
    return caf::none;
  }
  if (feed == postgres_feed::serialized) {
    // Overlapping appends that reserved positions may still be running;
    // serialized readers would step over them when they commit. Wait until
    // every transaction older than this one has ended (reservations
    // waiting for the lock have no transaction id yet).
    auto mine = step("SELECT pg_current_xact_id()::text");
    if (!mine)
      return rollback_with(conn, std::move(mine.error()));
    auto check = "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= '"
                 + mine->text(0, 0) + "'::xid8";
    auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      auto done = step(check);
      if (!done)
        return rollback_with(conn, std::move(done.error()));
      if (done->text(0, 0) == "t")
        break;
      if (std::chrono::steady_clock::now() >= deadline)
        return rollback_with(
          conn, make_store_error(store_errc::timeout,
                                 "transactions older than the feed switch "
                                 "did not end; nothing was changed"));
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }
  if (only_if_empty) {
    auto any = step("SELECT EXISTS (SELECT 1 FROM events)");
    if (!any)
      return rollback_with(conn, std::move(any.error()));
    if (any->text(0, 0) == "t")
      return rollback_with(
        conn, make_store_error(store_errc::invalid_argument,
                               "the database's feed is " + row->text(0, 0)
                                 + ", the store's " + to_string(feed)
                                 + ": open the store with the database's feed,"
                                   " or switch it with postgres_switch_feed"
                                   " (esctl feed set) while no store appends"));
  }
  auto allocated = step(
    std::string{"SELECT GREATEST(("} + allocated_head_sql
    + "), COALESCE((SELECT max(global_position) FROM events), 0))::text");
  if (!allocated)
    return rollback_with(conn, std::move(allocated.error()));
  auto next = allocated->text(0, 0);
  std::string sql;
  if (feed == postgres_feed::overlapping) {
    // Readers of the overlapping feed find its end through this index.
    if (next != "0")
      sql = "SELECT setval('es_position_seq', " + next + ");";
    sql += "UPDATE es_position SET position = " + next
           + ", feed = 'overlapping' WHERE id = 1;"
             " CREATE INDEX IF NOT EXISTS events_tx_position"
             " ON events (tx_id, global_position)";
  } else {
    sql = "UPDATE es_position SET position = " + next
          + ", feed = 'serialized' WHERE id = 1;"
            " DROP INDEX IF EXISTS events_tx_position";
  }
  if (auto r = step(sql); !r)
    return rollback_with(conn, std::move(r.error()));
  if (auto r = step("COMMIT"); !r)
    return rollback_with(conn, std::move(r.error()));
  return caf::none;
}

} // namespace detail::pg

caf::expected<postgres_feed> postgres_feed_of(const postgres_config& cfg) {
  auto conn = detail::pg::connection::open(cfg);
  if (!conn)
    return std::move(conn.error());
  return detail::pg::read_feed(**conn);
}

caf::error postgres_switch_feed(const postgres_config& cfg,
                                postgres_feed feed) {
  auto owner_cfg = cfg;
  owner_cfg.statement_timeout = std::chrono::milliseconds{0};
  auto conn = detail::pg::connection::open(owner_cfg);
  if (!conn)
    return std::move(conn.error());
  auto wait = cfg.statement_timeout.count() > 0 ? cfg.statement_timeout
                                                : std::chrono::minutes{1};
  return detail::pg::switch_feed(**conn, feed, false, wait);
}

} // namespace es
