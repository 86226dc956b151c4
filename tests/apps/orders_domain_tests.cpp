// The orders demo's domain, tested with the test kit (es::testing) as an
// application would: the Order aggregate's rules as given events, a command,
// then events or a rejection (directly, and through actors where the append
// matters), and the order_summary read model as given events, then rows.
#include "es/sqlite/sqlite.hpp"
#include "es/testing/aggregate_scenario.hpp"
#include "es/testing/projection_scenario.hpp"

#include "order.hpp"
#include "order_summary.hpp"
#include "temp_dir.hpp"
#include "views.hpp"
#include <catch2/catch.hpp>

#include <ostream>

using namespace orders;
using es::testing::aggregate_scenario;
using es::testing::check_result;
using es::testing::expect_eq;
using es::testing::projection_scenario;

// The kit asserts nothing itself: this checks a scenario_result and shows
// what differed when it fails.
// [check-scenario]
#define CHECK_SCENARIO(expr)                                                   \
  do {                                                                         \
    const auto& scenario_result_ = (expr);                                     \
    INFO(scenario_result_.explain());                                          \
    CHECK(scenario_result_.ok());                                              \
  } while (false)
// [/check-scenario]

namespace orders {

// Lets expect_eq print summary rows.
std::ostream& operator<<(std::ostream& out, const summary_row& x) {
  return out << "{" << to_string(x.status) << ", customer " << x.customer
             << ", " << x.items << " items, total " << x.total_cents
             << ", paid " << x.paid_cents << ", version " << x.version << "}";
}

} // namespace orders

namespace {

auto registry = make_registry();

/// An order scenario run directly on the aggregate object.
aggregate_scenario<order> an_order() {
  return aggregate_scenario<order>{registry};
}

/// An order scenario run through an aggregate actor and a store actor.
aggregate_scenario<order> an_order_actor() {
  return aggregate_scenario<order>::through_actors(registry);
}

const order_created created{"ada", "EUR"};
const item_added pens{"pen", 2, 150};
const item_added book{"book", 1, 1200};

} // namespace

// -- the Order aggregate, directly --------------------------------------------

TEST_CASE("creating an order", "[orders][aggregate]") {
  CHECK_SCENARIO(an_order()
                   .when(create_order{"ada", "EUR"})
                   .then(order_created{"ada", "EUR"}));
  CHECK_SCENARIO(an_order()
                   .given(created)
                   .when(create_order{"bo"})
                   .then_error("already_exists"));
  CHECK_SCENARIO(an_order().when(create_order{""}).then_error("no_customer"));
  CHECK_SCENARIO(
    an_order().when(create_order{"ada", "EURO"}).then_error("bad_currency"));
}

TEST_CASE("adding and removing items", "[orders][aggregate]") {
  CHECK_SCENARIO(an_order()
                   .given(created)
                   .when(add_item{"pen", 2, 150})
                   .then(item_added{"pen", 2, 150}));
  CHECK_SCENARIO(an_order().when(add_item{"pen"}).then_error("not_found"));
  CHECK_SCENARIO(
    an_order().given(created).when(add_item{""}).then_error("no_sku"));
  CHECK_SCENARIO(an_order()
                   .given(created)
                   .when(add_item{"pen", 0, 150})
                   .then_error("bad_quantity"));
  CHECK_SCENARIO(an_order()
                   .given(created)
                   .when(add_item{"pen", 1001, 150})
                   .then_error("bad_quantity"));
  CHECK_SCENARIO(an_order()
                   .given(created)
                   .when(add_item{"pen", 1, -1})
                   .then_error("bad_price"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens)
                   .when(remove_item{"pen"})
                   .then(item_removed{"pen"}));
  CHECK_SCENARIO(an_order()
                   .given(created, pens)
                   .when(remove_item{"book"})
                   .then_error("no_such_item"));
  // Adding a SKU again adds up its quantity; the last price holds.
  CHECK_SCENARIO(an_order()
                   .given(created, pens)
                   .when(add_item{"pen", 3, 140})
                   .then_state([](const order_state& s) {
                     return expect_eq("pen quantity",
                                      s.lines.at("pen").quantity, 5);
                   }));
}

TEST_CASE("paying an order", "[orders][aggregate]") {
  // [pay-order]
  CHECK_SCENARIO(an_order()
                   .given(created, pens, book)
                   .when(pay_order{1500, "pay-1"})
                   .then(order_paid{1500, "pay-1"}));
  // [/pay-order]
  CHECK_SCENARIO(an_order()
                   .given(created, pens, book)
                   .when(pay_order{1499, "pay-1"})
                   .then_error("wrong_amount"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, item_removed{"pen"})
                   .when(pay_order{0, "pay-1"})
                   .then_error("empty_order"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, order_paid{300, "pay-1"})
                   .when(pay_order{300, "pay-2"})
                   .then_error("already_paid"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, order_paid{300, "pay-1"})
                   .when(add_item{"book", 1, 1200})
                   .then_error("already_paid"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, book)
                   .when(pay_order{1500, "pay-1"})
                   .then_state([](const order_state& s) {
                     return s.status == order_status::paid
                            && s.paid_cents == 1500;
                   }));
}

TEST_CASE("shipping and cancelling", "[orders][aggregate]") {
  const order_paid paid{300, "pay-1"};
  CHECK_SCENARIO(an_order()
                   .given(created, pens, paid)
                   .when(ship_order{"TRACK-1"})
                   .then(order_shipped{"TRACK-1"}));
  CHECK_SCENARIO(an_order()
                   .given(created, pens)
                   .when(ship_order{"TRACK-1"})
                   .then_error("not_paid"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, paid)
                   .when(ship_order{""})
                   .then_error("no_tracking"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, paid, order_shipped{"TRACK-1"})
                   .when(ship_order{"TRACK-2"})
                   .then_error("already_shipped"));
  CHECK_SCENARIO(an_order()
                   .given(created, pens)
                   .when(cancel_order{"changed my mind"})
                   .then(order_cancelled{"changed my mind"}));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, paid)
                   .when(cancel_order{"refund"})
                   .then(order_cancelled{"refund"}));
  CHECK_SCENARIO(an_order()
                   .given(created, pens, paid, order_shipped{"TRACK-1"})
                   .when(cancel_order{"too late"})
                   .then_error("already_shipped"));
  CHECK_SCENARIO(an_order()
                   .given(created, order_cancelled{"once"})
                   .when(cancel_order{"twice"})
                   .then_error("cancelled"));
  CHECK_SCENARIO(
    an_order().when(cancel_order{"nothing"}).then_error("not_found"));
  CHECK_SCENARIO(an_order()
                   .given(created, order_cancelled{"once"})
                   .when(add_item{"pen", 1, 150})
                   .then_error("cancelled"));
}

// -- the Order aggregate, through actors --------------------------------------

TEST_CASE("through actors, commands append what they emit",
          "[orders][aggregate][actors]") {
  auto paid = an_order_actor()
                .given(created, pens, book)
                .when(pay_order{1500, "pay-1"})
                .then(order_paid{1500, "pay-1"});
  CHECK_SCENARIO(paid);
  CHECK(paid.attempts() == 1);
  REQUIRE(paid.events().size() == 1);
  // Read back from the store: the next version of the stream.
  CHECK(paid.events()[0].aggregate_version == 4);
  // A rejected command writes nothing.
  CHECK_SCENARIO(an_order_actor()
                   .given(created, pens)
                   .when(pay_order{1, "pay-1"})
                   .then_error("wrong_amount"));
  CHECK_SCENARIO(an_order_actor()
                   .when(create_order{"ada", "EUR"})
                   .then(order_created{"ada", "EUR"}));
}

TEST_CASE("through actors, a concurrent writer makes the command run again",
          "[orders][aggregate][actors]") {
  SECTION("on the new state it still succeeds") {
    // Another writer adds a book between the load and the append; the
    // command runs again on top of it.
    auto r = an_order_actor()
               .given(created, pens)
               .meanwhile(book)
               .when(add_item{"pen", 1, 150})
               .then(item_added{"pen", 1, 150});
    CHECK_SCENARIO(r);
    CHECK(r.attempts() == 2);
  }
  SECTION("on the new state it may be rejected; nothing is written") {
    // The payment matched the total the actor loaded, not the one after
    // the other writer's book.
    CHECK_SCENARIO(an_order_actor()
                     .given(created, pens)
                     .meanwhile(book)
                     .when(pay_order{300, "pay-1"})
                     .then_error("wrong_amount"));
  }
  SECTION("a cancellation in between wins") {
    CHECK_SCENARIO(an_order_actor()
                     .given(created, pens)
                     .meanwhile(order_cancelled{"by the customer"})
                     .when(pay_order{300, "pay-1"})
                     .then_error("cancelled"));
  }
  SECTION("without retries the conflict reaches the caller") {
    CHECK_SCENARIO(an_order_actor()
                     .given(created, pens)
                     .meanwhile(book)
                     .max_conflict_retries(0)
                     .when(pay_order{300, "pay-1"})
                     .then_error(es::store_errc::wrong_expected_version));
  }
}

// -- the order_summary read model ---------------------------------------------

namespace {

/// A fresh read-model database with the demo's views.
struct views_fixture {
  es::test::temp_dir dir;
  views v;

  views_fixture() {
    auto opened = open_views(dir.file("views.db"), registry, false);
    if (!opened)
      FAIL(es::describe(opened.error()));
    v = std::move(*opened);
  }

  /// Checks the summary row of `id`.
  check_result row_is(const es::uuid& id, const summary_row& expected) {
    auto rows = v.summary->rows();
    if (!rows)
      return check_result::fail(es::describe(rows.error()));
    auto i = rows->find(id);
    if (i == rows->end())
      return check_result::fail("no row for " + id.to_string());
    return expect_eq("row of " + id.to_string(), i->second, expected);
  }
};

summary_row row(order_status status, int32_t items, int64_t total, int64_t paid,
                int64_t version) {
  return summary_row{status, "ada", total, items, paid, version};
}

} // namespace

TEST_CASE_METHOD(views_fixture, "order_summary keeps one row per order",
                 "[orders][projection]") {
  auto a = es::uuid::random();
  auto b = es::uuid::random();
  auto scenario
    = projection_scenario(v.summary)
        .in_stream<order>(a)
        .given(created, pens, book, order_paid{1500, "pay-1"})
        .in_stream<order>(b)
        .given(created, pens, item_removed{"pen"}, book, order_cancelled{"no"});
  CHECK_SCENARIO(scenario.then([&] {
    return row_is(a, row(order_status::paid, 3, 1500, 1500, 4));
  }));
  CHECK_SCENARIO(scenario.then([&] {
    return row_is(b, row(order_status::cancelled, 1, 1200, 0, 5));
  }));
  // A check may query the read model's database itself.
  CHECK_SCENARIO(scenario.then([&](es::sql_transaction& tx) -> check_result {
    auto n = tx.query("SELECT COUNT(*) FROM order_lines");
    if (!n)
      return check_result::fail(es::describe(n.error()));
    return expect_eq("order lines", es::sql_int(n->at(0).at(0)).value_or(-1),
                     int64_t{3});
  }));
  // Later events go on from where the first ones ended.
  scenario.in_stream<order>(a).given(order_shipped{"TRACK-1"});
  CHECK_SCENARIO(scenario.then([&] {
    return row_is(a, row(order_status::shipped, 3, 1500, 1500, 5));
  }));
}

TEST_CASE_METHOD(views_fixture,
                 "order_summary agrees with the in-memory model of the same "
                 "events",
                 "[orders][projection]") {
  auto scenario = projection_scenario(v.summary);
  for (int i = 0; i < 5; ++i) {
    scenario.in_stream<order>(es::uuid::random())
      .given(order_created{"customer-" + std::to_string(i % 2), "EUR"},
             item_added{"pen", i + 1, 150});
    if (i % 2 == 0)
      scenario.given(item_added{"book", 1, 1200});
    if (i % 3 == 0)
      scenario.given(order_cancelled{"no"});
  }
  CHECK_SCENARIO(scenario.then([&]() -> check_result {
    order_summary model{registry};
    for (const auto& ev : scenario.recorded())
      if (auto err = model.apply(ev))
        return check_result::fail(es::describe(err));
    auto rows = v.summary->rows();
    if (!rows)
      return check_result::fail(es::describe(rows.error()));
    return *rows == model.rows();
  }));
}

TEST_CASE_METHOD(views_fixture,
                 "order_summary through a projection actor on the "
                 "deterministic scheduler",
                 "[orders][projection][actors]") {
  // [projection-through-actor]
  auto a = es::uuid::random();
  auto scenario
    = projection_scenario::through_actor(v.summary).in_stream<order>(a).given(
      created, pens);
  CHECK_SCENARIO(scenario.then([&] {
    return row_is(a, row(order_status::draft, 2, 300, 0, 2));
  }));
  // [/projection-through-actor]
  // Later events reach the same actor, which polls the store for them.
  scenario.given(order_paid{300, "pay-1"});
  CHECK_SCENARIO(scenario.then([&] {
    return row_is(a, row(order_status::paid, 2, 300, 300, 3));
  }));
  // The actor wrote its checkpoint with the rows.
  auto cp = v.db->checkpoints()->load(order_summary_view::projection_name);
  REQUIRE(cp);
  REQUIRE(*cp);
  CHECK((*cp)->position == 3);
}

TEST_CASE_METHOD(views_fixture,
                 "order_summary refuses events of an order it never saw "
                 "created",
                 "[orders][projection]") {
  for (bool actor : {false, true}) {
    INFO((actor ? "through an actor" : "directly"));
    auto scenario = actor ? projection_scenario::through_actor(v.summary)
                          : projection_scenario(v.summary);
    auto r = scenario.in_stream<order>(es::uuid::random()).given(pens).then([] {
      return true;
    });
    CHECK_FALSE(r.ok());
    CHECK_THAT(r.explain(), Catch::Contains("has no row for order"));
  }
}
