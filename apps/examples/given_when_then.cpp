// given_when_then: the orders demo's aggregate tested with es::testing,
// without a test framework. docs/testing.md shows this file; tests/docs
// keeps the two the same and runs it.
#include "es/testing/aggregate_scenario.hpp"

#include "order.hpp"

#include <iostream>
#include <vector>

using namespace orders;
using es::testing::aggregate_scenario;

int main() {
  auto registry = make_registry();
  const order_created created{"ada", "EUR"};
  const item_added pens{"pen", 2, 150};
  std::vector<es::testing::scenario_result> results{
    // Given the order's history, when a command, then these events...
    aggregate_scenario<order>(registry)
      .given(created, pens)
      .when(pay_order{300, "pay-1"})
      .then(order_paid{300, "pay-1"}),
    // ... or this rejection, and no events.
    aggregate_scenario<order>(registry)
      .given(created, pens)
      .when(ship_order{"TRACK-1"})
      .then_error("not_paid"),
    // Through an aggregate actor and a store actor on CAF's deterministic
    // scheduler: another writer cancels between load and append, and the
    // command runs again on the new state.
    aggregate_scenario<order>::through_actors(registry)
      .given(created, pens)
      .meanwhile(order_cancelled{"by the customer"})
      .when(pay_order{300, "pay-1"})
      .then_error("cancelled"),
  };
  size_t passed = 0;
  for (const auto& r : results) {
    if (r.ok())
      ++passed;
    else
      std::cerr << r.explain() << '\n';
  }
  std::cout << passed << " of " << results.size() << " scenarios passed\n";
  return passed == results.size() ? 0 : 1;
}
