// One fixture per state store adapter, so the state suite runs for every
// backend. Each call returns a fresh, empty store. Fixtures of adapters
// whose stores share a database across objects and processes also open
// more objects on the database of their last checkpoint store
// (`reopen_checkpoints`, `reopen_as_read_model`); those never FAIL, so a
// forked child can call them.
#pragma once

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"

#include "temp_dir.hpp"
#include <catch2/catch.hpp>

#include <string>

namespace es::test {

struct memory_state_fixture {
  static constexpr const char* name = "memory";

  snapshot_store_ptr snapshots() {
    return make_memory_snapshot_store();
  }

  checkpoint_store_ptr checkpoints() {
    return make_memory_checkpoint_store();
  }

  dead_letter_store_ptr dead_letters() {
    return make_memory_dead_letter_store();
  }
};

struct sqlite_state_fixture {
  static constexpr const char* name = "sqlite";

  temp_dir dir;
  int opened = 0;
  std::string checkpoints_file;

  snapshot_store_ptr snapshots() {
    auto store = make_sqlite_snapshot_store(next_file());
    if (!store)
      FAIL(
        "cannot open the SQLite snapshot store: " << describe(store.error()));
    return *store;
  }

  checkpoint_store_ptr checkpoints() {
    checkpoints_file = next_file();
    auto store = make_sqlite_checkpoint_store(checkpoints_file);
    if (!store)
      FAIL(
        "cannot open the SQLite checkpoint store: " << describe(store.error()));
    return *store;
  }

  /// Another checkpoint store on the file of the last `checkpoints()`.
  caf::expected<checkpoint_store_ptr> reopen_checkpoints() {
    return make_sqlite_checkpoint_store(checkpoints_file);
  }

  /// A read-model database on the file of the last `checkpoints()`.
  caf::expected<read_model_db_ptr> reopen_as_read_model() {
    return make_sqlite_read_model_db(checkpoints_file);
  }

  dead_letter_store_ptr dead_letters() {
    auto store = make_sqlite_dead_letter_store(next_file());
    if (!store)
      FAIL("cannot open the SQLite dead-letter store: "
           << describe(store.error()));
    return *store;
  }

private:
  /// A database file no store of this fixture used yet.
  std::string next_file() {
    return dir.file("state-" + std::to_string(opened++) + ".db");
  }
};

} // namespace es::test
