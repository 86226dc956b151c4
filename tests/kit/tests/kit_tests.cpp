// The test kit's own tests: that scenarios pass when they should, and that
// a failing one says what differs.
#include "es/store/memory_event_store.hpp"
#include "es/testing/aggregate_scenario.hpp"
#include "es/testing/concurrent_writer_store.hpp"
#include "es/testing/event_matching.hpp"
#include "es/testing/projection_scenario.hpp"

#include "account.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <map>
#include <mutex>

using namespace es;
using namespace es::testing;
using Catch::Contains;
using test::account;
using test::account_opened;
using test::money_deposited;
using test::money_withdrawn;

namespace {

auto registry = test::make_account_registry();

aggregate_scenario<account> an_account() {
  return aggregate_scenario<account>{registry};
}

aggregate_scenario<account> an_account_actor() {
  return aggregate_scenario<account>::through_actors(registry);
}

/// Sums quantities of ItemAdded per stream; fails on a chosen SKU.
class quantities : public declarative_projection {
public:
  explicit quantities(std::shared_ptr<const event_registry> reg)
    : declarative_projection("quantities", std::move(reg)) {
    on<test::item_added>([this](const test::item_added& e,
                                const recorded_event& ev) -> caf::error {
      if (e.sku == "poison")
        return make_store_error(store_errc::malformed_payload,
                                "refusing poison");
      std::lock_guard guard{mtx_};
      totals_[ev.aggregate_id] += e.quantity;
      ++handled_;
      return caf::none;
    });
  }

  int total(const uuid& id) const {
    std::lock_guard guard{mtx_};
    auto i = totals_.find(id);
    return i == totals_.end() ? 0 : i->second;
  }

  int handled() const {
    std::lock_guard guard{mtx_};
    return handled_;
  }

private:
  mutable std::mutex mtx_;
  std::map<uuid, int> totals_;
  int handled_ = 0;
};

event_data event_of(const auto& payload) {
  auto ev = make_event(payload);
  REQUIRE(ev);
  return *ev;
}

} // namespace

TEST_CASE("events compare by type and payload", "[kit]") {
  auto reg = test::make_test_registry();
  auto actual = event_of(test::item_added{"pen", 2, 150});
  SECTION("typed structs with operator==") {
    CHECK(expected_event{test::item_added{"pen", 2, 150}}
            .difference(reg.get(), actual)
            .empty());
    auto diff = expected_event{test::item_added{"pen", 3, 150}}.difference(
      reg.get(), actual);
    CHECK(diff == "quantity: expected 3, got 2");
    diff
      = expected_event{test::note_written{"hi"}}.difference(reg.get(), actual);
    CHECK_THAT(diff, Contains("expected a NoteWritten, got ItemAdded"));
  }
  SECTION("typed structs without operator== compare as JSON") {
    auto deposit = event_of(money_deposited{5});
    CHECK(expected_event{money_deposited{5}}
            .difference(registry.get(), deposit)
            .empty());
    CHECK(expected_event{money_deposited{6}}.difference(registry.get(), deposit)
          == "amount: expected 6, got 5");
  }
  SECTION("JSON payloads compare up to member order") {
    auto e = expected_event::json(
      "ItemAdded", R"({"quantity":2,"price_cents":150,"sku":"pen"})");
    CHECK(e.difference(nullptr, actual).empty());
    auto other = expected_event::json("ItemAdded", R"({"sku":"pen"})");
    CHECK(other.difference(nullptr, actual)
          == "price_cents: not expected, got 150; quantity: not expected, "
             "got 2");
  }
  SECTION("lists name the missing or extra events") {
    event_batch two{actual, event_of(test::note_written{"n"})};
    auto diff = compare_events(
      {expected_event{test::item_added{"pen", 2, 150}}}, two, reg.get());
    CHECK_THAT(diff, Contains("expected 1 event [ItemAdded], got 2 events "
                              "[ItemAdded, NoteWritten]"));
    CHECK_THAT(diff, Contains(R"(extra one is NoteWritten {"text":"n"})"));
  }
  CHECK(*canonical_json(R"({ "b": [1, {"d":1,"c":2}], "a": null })")
        == R"({"a":null,"b":[1,{"c":2,"d":1}]})");
}

TEST_CASE("aggregate scenarios pass and fail for the right reasons", "[kit]") {
  for (bool actors : {false, true}) {
    INFO((actors ? "through actors" : "directly"));
    auto sc = [&] {
      return actors ? an_account_actor() : an_account();
    };
    CHECK(sc()
            .given(account_opened{"ada"}, money_deposited{50})
            .when(test::withdraw{20})
            .then(money_withdrawn{20})
            .ok());
    CHECK(sc().given(account_opened{"ada"}).when(test::noop{}).then().ok());
    CHECK(sc()
            .given(account_opened{"ada"}, money_deposited{50})
            .when(test::withdraw{80})
            .then_error("insufficient_funds")
            .ok());
    auto wrong = sc()
                   .given(account_opened{"ada"}, money_deposited{50})
                   .when(test::withdraw{20})
                   .then(money_withdrawn{30});
    CHECK_FALSE(wrong.ok());
    CHECK_THAT(wrong.explain(),
               Contains("event 1 of 1 (MoneyWithdrawn): amount: expected "
                        "30, got 20"));
    CHECK_THAT(wrong.explain(), Contains("given [AccountOpened, "
                                         "MoneyDeposited], when "
                                         "es::test::withdraw on "
                                         "Account/"));
    auto rejected = sc().when(test::deposit{5}).then(money_deposited{5});
    CHECK_THAT(rejected.explain(),
               Contains("expected [MoneyDeposited] but the command failed: "
                        "es_actors.command_rejected"));
    CHECK(rejection_reason(rejected.error()) == "not_open");
    auto succeeded = sc().when(test::open_account{"bo"}).then_error("x");
    CHECK_THAT(succeeded.explain(),
               Contains("expected rejection 'x' but the command succeeded "
                        "with [AccountOpened]"));
    auto other_reason = sc().when(test::deposit{5}).then_error("bad_amount");
    CHECK_THAT(other_reason.explain(), Contains("expected rejection "
                                                "'bad_amount', got"));
    // A throwing handler: nothing is kept.
    auto boom = sc()
                  .given(account_opened{"ada"})
                  .when(test::explode{7})
                  .then_error(actors_errc::handler_failed);
    CHECK(boom.ok());
    CHECK(boom.events().empty());
    auto state = sc()
                   .given(account_opened{"ada"}, money_deposited{50})
                   .when(test::deposit{25})
                   .then_state([](const test::account_state& s) {
                     return expect_eq("balance", s.balance, int64_t{70});
                   });
    CHECK(
      state.explain().starts_with("state check: balance: expected 70, got 75"));
    auto no_command = sc().given(account_opened{"ada"}).then();
    CHECK_THAT(no_command.explain(), Contains("no command"));
    // Given events the aggregate cannot apply.
    auto bad_given
      = sc().given(test::item_added{"pen", 1, 1}).when(test::noop{}).then();
    CHECK_FALSE(bad_given.ok());
  }
  auto direct_meanwhile = an_account()
                            .given(account_opened{"ada"})
                            .meanwhile(money_deposited{1})
                            .when(test::deposit{1})
                            .then(money_deposited{1});
  CHECK_THAT(direct_meanwhile.explain(), Contains("needs through_actors()"));
}

TEST_CASE("through actors, meanwhile events make the command retry", "[kit]") {
  auto r = an_account_actor()
             .given(account_opened{"ada"}, money_deposited{50})
             .meanwhile(money_withdrawn{40})
             .when(test::withdraw{20})
             .then_error("insufficient_funds");
  INFO(r.explain());
  CHECK(r.ok());
  auto ok = an_account_actor()
              .given(account_opened{"ada"}, money_deposited{50})
              .meanwhile(money_deposited{10})
              .when(test::withdraw{45})
              .then(money_withdrawn{45});
  INFO(ok.explain());
  CHECK(ok.ok());
  CHECK(ok.attempts() == 2);
  REQUIRE(ok.events().size() == 1);
  CHECK(ok.events()[0].aggregate_version == 4);
}

TEST_CASE("the concurrent writer store appends once, before the first append",
          "[kit]") {
  auto inner = make_memory_event_store();
  auto s = test::new_stream();
  auto other = test::new_stream();
  auto store
    = make_concurrent_writer_store(inner, s, test::make_batch(s, 2, 100));
  REQUIRE(
    store->append(other, expected_version::any(), test::make_batch(other, 1)));
  CHECK(*inner->stream_version(s) == 0);
  auto res
    = store->append(s, expected_version::no_stream(), test::make_batch(s, 1));
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::wrong_expected_version));
  CHECK(*inner->stream_version(s) == 2);
  REQUIRE(store->append(s, expected_version::exact(2), test::make_batch(s, 1)));
  CHECK(*store->stream_version(s) == 3);
}

TEST_CASE("projection scenarios feed events and run checks", "[kit]") {
  auto reg = test::make_test_registry();
  for (bool actor : {false, true}) {
    INFO((actor ? "through an actor" : "directly"));
    auto proj = std::make_shared<quantities>(reg);
    auto make = [&] {
      return actor ? projection_scenario::through_actor(proj)
                   : projection_scenario(proj);
    };
    auto a = uuid::random();
    auto b = uuid::random();
    auto sc = make()
                .in_stream({"Order", a})
                .given(test::item_added{"pen", 2, 1}, test::note_written{"x"})
                .in_stream({"Order", b})
                .given(test::item_added{"pen", 5, 1});
    auto r = sc.then([&] {
      return expect_eq("total of a", proj->total(a), 2);
    });
    INFO(r.explain());
    CHECK(r.ok());
    auto recorded = sc.recorded();
    REQUIRE(recorded.size() == 3);
    CHECK(recorded[1].aggregate_version == 2);
    CHECK(recorded[2].aggregate_version == 1);
    CHECK(recorded[2].global_position == 3);
    // Later events only; the earlier ones are not fed again.
    sc.in_stream({"Order", a}).given(test::item_added{"pen", 1, 1});
    auto more = sc.then([&] {
      return proj->total(a) == 3 && proj->handled() == 3;
    });
    INFO(more.explain());
    CHECK(more.ok());
    auto failed_check = sc.then([&] {
      return expect_eq("total of b", proj->total(b), 6);
    });
    CHECK(failed_check.explain().starts_with(
      "total of b: expected 6, got 5\n  in: given [ItemAdded, "));
    // A handler error fails the scenario, naming the event, and sticks.
    sc.given(test::item_added{"poison", 1, 1});
    auto poisoned = sc.then([] {
      return true;
    });
    CHECK_FALSE(poisoned.ok());
    CHECK_THAT(poisoned.explain(), Contains("refusing poison"));
    CHECK_THAT(poisoned.explain(), Contains("position 5"));
    CHECK_FALSE(sc.run().ok());
  }
}
