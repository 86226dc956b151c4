// The PostgreSQL state store fixture: each store gets a fresh schema in the
// test database, dropped afterwards (see pg_fixture.hpp).
#pragma once

#include "es/store/errors.hpp"
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
    auto store = make_postgres_checkpoint_store(pg.fresh_config());
    if (!store)
      FAIL("cannot open the PostgreSQL checkpoint store: "
           << describe(store.error()) << hint);
    return *store;
  }

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
