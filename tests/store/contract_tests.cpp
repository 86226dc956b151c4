// The event store contract (es/testing/store_contract.hpp) on this
// repository's adapters. Other test binaries compile this file with their
// own fixture list (the store actor behind the blocking facade, PostgreSQL).
#include "store_fixtures.hpp"

#ifdef ES_CONTRACT_FIXTURES_HEADER
#  include ES_CONTRACT_FIXTURES_HEADER
#endif
#ifndef ES_CONTRACT_FIXTURES
#  define ES_CONTRACT_FIXTURES memory_fixture, sqlite_fixture
#endif

// The fixtures live in es::test; the suite looks them up from its own
// namespace.
using namespace es::test;

#include "es/testing/store_contract.hpp"
