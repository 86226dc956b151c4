// One fixture per event store adapter, so suites run for every backend.
#pragma once

#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"

#include "temp_dir.hpp"
#include <catch2/catch.hpp>

#include <memory>
#include <string>

namespace es::test {

struct memory_fixture {
  static constexpr const char* name = "memory";

  event_store_ptr open(std::shared_ptr<const event_registry> registry = {},
                       store_limits limits = {}) {
    memory_store_config cfg;
    cfg.registry = std::move(registry);
    cfg.limits = limits;
    return make_memory_event_store(std::move(cfg));
  }
};

struct sqlite_fixture {
  static constexpr const char* name = "sqlite";

  temp_dir dir;
  int opened = 0;

  event_store_ptr open(std::shared_ptr<const event_registry> registry = {},
                       store_limits limits = {}) {
    sqlite_config cfg;
    cfg.path = dir.file("events-" + std::to_string(opened++) + ".db");
    cfg.synchronous = sqlite_sync::normal;
    cfg.registry = std::move(registry);
    cfg.limits = limits;
    auto store = make_sqlite_event_store(std::move(cfg));
    if (!store)
      FAIL("cannot open SQLite store: " << describe(store.error()));
    return *store;
  }
};

} // namespace es::test
