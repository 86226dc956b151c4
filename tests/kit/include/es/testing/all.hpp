// Every header of the test kit that needs no test framework. The store
// contract suite (store_contract.hpp, store_contract_bad_input.hpp) is
// Catch2 code and is included on its own by the test program that runs it.
#pragma once

#include "es/testing/aggregate_scenario.hpp"
#include "es/testing/concurrent_writer_store.hpp"
#include "es/testing/deterministic_system.hpp"
#include "es/testing/event_matching.hpp"
#include "es/testing/projection_scenario.hpp"
#include "es/testing/scenario_result.hpp"
