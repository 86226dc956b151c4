// Shadow rebuilds of a transactional read model on SQLite.
#include "es/sqlite/sqlite.hpp"
#include "es/store/memory_event_store.hpp"

#include "shadow_rebuild_checks.hpp"
#include "temp_dir.hpp"

#include <filesystem>

using namespace es;
using namespace es::test;

TEST_CASE("on SQLite, a read model is rebuilt in a shadow and swapped in",
          "[projections][rebuild]") {
  temp_dir dir;
  auto path = dir.file("views.db");
  auto db = make_sqlite_read_model_db(path);
  REQUIRE(db);
  check_shadow_rebuilds(make_memory_event_store(), *db, [&] {
    return std::filesystem::exists(path + ".rebuild_sums");
  });
}
