// my_store_contract: the framework's store contract suite run against an
// adapter of this project (my_store_fixture.hpp). docs/testing.md shows
// this file; tests/docs keeps the two the same.
#include "my_store_fixture.hpp"
#define ES_CONTRACT_FIXTURES my_store_fixture
#include "es/testing/store_contract.hpp"
#include "es/testing/store_contract_bad_input.hpp"
