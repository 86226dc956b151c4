// Bad input (es/testing/store_contract_bad_input.hpp) on this repository's
// adapters; compiled with contract_tests.cpp and the same fixture list.
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

#include "es/testing/store_contract_bad_input.hpp"
