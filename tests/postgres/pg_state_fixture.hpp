// The PostgreSQL state store fixture: each store gets a fresh schema in the
// test database, dropped afterwards (see pg_fixture.hpp).
#pragma once

#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"

#include "pg_fixture.hpp"
#include <catch2/catch.hpp>

namespace es::test {

struct postgres_state_fixture {
  static constexpr const char* name = "postgres";

  postgres_fixture pg;

  snapshot_store_ptr snapshots() {
    auto store = make_postgres_snapshot_store(pg.fresh_config());
    if (!store)
      FAIL("cannot open the PostgreSQL snapshot store: "
           << describe(store.error()) << hint);
    return *store;
  }

  checkpoint_store_ptr checkpoints() {
    checkpoints_cfg = pg.fresh_config();
    auto store = make_postgres_checkpoint_store(checkpoints_cfg);
    if (!store)
      FAIL("cannot open the PostgreSQL checkpoint store: "
           << describe(store.error()) << hint);
    return *store;
  }

  /// Another checkpoint store on the schema of the last `checkpoints()`.
  caf::expected<checkpoint_store_ptr> reopen_checkpoints() {
    auto cfg = checkpoints_cfg;
    cfg.migrate = false;
    return make_postgres_checkpoint_store(cfg);
  }

  /// A read-model database on the schema of the last `checkpoints()`.
  caf::expected<read_model_db_ptr> reopen_as_read_model() {
    auto cfg = checkpoints_cfg;
    cfg.migrate = false;
    return make_postgres_read_model_db(cfg);
  }

  /// Ends the sessions of this fixture's stores that hold advisory locks
  /// (the leases), waiting for each to exit; returns how many there were.
  int end_lease_sessions() {
    return std::stoi(pg.admin.value(
      "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid, 10000))"
      " FROM pg_stat_activity a WHERE a.application_name = '"
      + checkpoints_cfg.application_name
      + "' AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
        " AND l.locktype = 'advisory')"));
  }

  postgres_config checkpoints_cfg;

  dead_letter_store_ptr dead_letters() {
    auto store = make_postgres_dead_letter_store(pg.fresh_config());
    if (!store)
      FAIL("cannot open the PostgreSQL dead-letter store: "
           << describe(store.error()) << hint);
    return *store;
  }

private:
  static constexpr const char* hint
    = " (start the server with `scripts/pg start`)";
};

} // namespace es::test
