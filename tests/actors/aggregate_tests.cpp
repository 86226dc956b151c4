// Aggregates without actors: both routing styles, unhandled-event policies,
// fail-fast commands, rollback.
#include "es/actors/aggregate.hpp"

#include "account.hpp"
#include <catch2/catch.hpp>

using namespace es;
using namespace es::test;

namespace {

// The explicit style: one apply function routes decoded events.
class ledger : public aggregate<account_state> {
public:
  static constexpr std::string_view aggregate_type = "Ledger";

  ledger(uuid id, std::shared_ptr<const event_registry> registry)
    : aggregate(std::string{aggregate_type}, id, std::move(registry)) {
    // nop
  }

  caf::error open(std::string owner) {
    return emit(account_opened{std::move(owner)});
  }

  caf::error put(int64_t amount) {
    if (!state().open)
      return reject("not_open", "ledger is not open");
    return emit(money_deposited{amount});
  }

  caf::error take(int64_t amount) {
    return emit(money_withdrawn{amount});
  }

protected:
  bool apply_event(account_state& s, const decoded_event& ev) override {
    if (auto* x = ev.as<account_opened>()) {
      s.open = true;
      s.owner = x->owner;
      return true;
    }
    if (auto* x = ev.as<money_deposited>()) {
      s.balance += x->amount;
      return true;
    }
    // money_withdrawn is deliberately not handled.
    return false;
  }
};

recorded_events history(const stream_id& s, const event_batch& events) {
  recorded_events result;
  int64_t v = 0;
  for (const auto& ev : events) {
    recorded_event rec;
    static_cast<event_data&>(rec) = ev;
    rec.aggregate_id = s.aggregate_id;
    rec.aggregate_type = s.aggregate_type;
    rec.aggregate_version = ++v;
    rec.global_position = v;
    result.push_back(rec);
  }
  return result;
}

} // namespace

TEST_CASE("declarative aggregates apply emitted and stored events",
          "[aggregate]") {
  auto reg = make_account_registry();
  account acc{uuid::random(), reg};
  REQUIRE_FALSE(acc.handle(open_account{"ada"}));
  REQUIRE_FALSE(acc.handle(deposit{50}));
  REQUIRE_FALSE(acc.handle(withdraw{20}));
  CHECK(acc.state().balance == 30);
  CHECK(acc.version() == 3);
  CHECK(acc.committed_version() == 0);
  REQUIRE(acc.uncommitted_events().size() == 3);
  const auto& evs = acc.uncommitted_events();
  CHECK(evs[0].event_type == "AccountOpened");
  CHECK(evs[2].aggregate_version == 3);
  CHECK(evs[1].aggregate_id == acc.id());
  CHECK(evs[1].aggregate_type == "Account");
  // Replaying the same events into a fresh aggregate gives the same state.
  account copy{acc.id(), reg};
  REQUIRE_FALSE(copy.load_from_history(history(acc.stream(), evs)));
  CHECK(copy.state().balance == 30);
  CHECK(copy.state().owner == "ada");
  CHECK(copy.version() == 3);
  CHECK(copy.committed_version() == 3);
  CHECK_FALSE(copy.has_uncommitted());
}

TEST_CASE("commands fail fast and leave state untouched", "[aggregate]") {
  account acc{uuid::random(), make_account_registry()};
  auto err = acc.handle(deposit{10});
  REQUIRE(err);
  CHECK(has_code(err, actors_errc::command_rejected));
  CHECK(rejection_reason(err) == "not_open");
  CHECK(acc.version() == 0);
  CHECK_FALSE(acc.has_uncommitted());
  REQUIRE_FALSE(acc.handle(open_account{"bo"}));
  REQUIRE_FALSE(acc.handle(deposit{5}));
  auto over = acc.handle(withdraw{6});
  CHECK(rejection_reason(over) == "insufficient_funds");
  CHECK(acc.state().balance == 5);
  CHECK(acc.version() == 2);
  CHECK(acc.uncommitted_events().size() == 2);
}

TEST_CASE("rollback returns to the state before the change", "[aggregate]") {
  account acc{uuid::random(), make_account_registry()};
  REQUIRE_FALSE(acc.handle(open_account{"cy"}));
  acc.mark_committed();
  acc.begin_change();
  REQUIRE_FALSE(acc.handle(deposit{7}));
  REQUIRE_FALSE(acc.handle(deposit{8}));
  CHECK(acc.state().balance == 15);
  acc.rollback();
  CHECK(acc.state().balance == 0);
  CHECK(acc.version() == 1);
  CHECK_FALSE(acc.has_uncommitted());
}

TEST_CASE("explicit-style aggregates route decoded events", "[aggregate]") {
  auto reg = make_account_registry();
  ledger l{uuid::random(), reg};
  REQUIRE_FALSE(l.open("di"));
  REQUIRE_FALSE(l.put(40));
  CHECK(l.state().balance == 40);
  ledger copy{l.id(), reg};
  REQUIRE_FALSE(
    copy.load_from_history(history(l.stream(), l.uncommitted_events())));
  CHECK(copy.state().balance == 40);
}

TEST_CASE("unhandled events follow the aggregate's policy", "[aggregate]") {
  auto reg = make_account_registry();
  SECTION("error (the default)") {
    ledger l{uuid::random(), reg};
    REQUIRE_FALSE(l.open("ed"));
    auto err = l.take(5);
    CHECK(has_code(err, actors_errc::unhandled_event));
    CHECK(l.version() == 1);
    CHECK(l.uncommitted_events().size() == 1);
  }
  SECTION("ignore") {
    ledger l{uuid::random(), reg};
    l.set_unhandled_policy(unhandled_event_policy::ignore);
    REQUIRE_FALSE(l.open("fa"));
    REQUIRE_FALSE(l.take(5));
    CHECK(l.version() == 2);
    CHECK(l.state().balance == 0);
  }
  SECTION("warn logs and skips") {
    std::vector<std::string> logged;
    set_log_sink([&](log_level, std::string_view text) {
      logged.emplace_back(text);
    });
    ledger l{uuid::random(), reg};
    l.set_unhandled_policy(unhandled_event_policy::warn);
    REQUIRE_FALSE(l.open("gu"));
    REQUIRE_FALSE(l.take(5));
    set_log_sink(nullptr);
    CHECK(l.version() == 2);
    REQUIRE(logged.size() == 1);
    CHECK(logged[0].find("MoneyWithdrawn") != std::string::npos);
  }
  SECTION("a stored event of an unknown type") {
    account acc{uuid::random(), reg};
    event_data ev;
    ev.event_id = uuid::random();
    ev.event_type = "SomethingElse";
    ev.payload = "{}";
    recorded_events h = history(acc.stream(), {ev});
    auto err = acc.load_from_history(h);
    // Named as what it is, with the event it is about.
    CHECK(has_code(err, store_errc::unknown_event_type));
    CHECK_THAT(describe(err), Catch::Contains("SomethingElse")
                                && Catch::Contains(ev.event_id.to_string()));
    acc.set_unhandled_policy(unhandled_event_policy::ignore);
    CHECK_FALSE(acc.load_from_history(h));
    CHECK(acc.version() == 1);
  }
}

TEST_CASE("loading checks versions and tenants", "[aggregate]") {
  auto reg = make_account_registry();
  account acc{uuid::random(), reg};
  REQUIRE_FALSE(acc.handle(open_account{"hu"}));
  REQUIRE_FALSE(acc.handle(deposit{1}));
  auto h = history(acc.stream(), acc.uncommitted_events());
  SECTION("a gap") {
    account other{acc.id(), reg};
    h.erase(h.begin());
    CHECK(has_code(other.load_from_history(h), actors_errc::version_gap));
  }
  SECTION("another tenant") {
    account other{acc.id(), reg};
    other.set_tenant(uuid::random());
    CHECK(has_code(other.load_from_history(h), store_errc::tenant_mismatch));
  }
  SECTION("emitted events carry tenant and command context") {
    account other{uuid::random(), reg};
    auto tenant = uuid::random();
    other.set_tenant(tenant);
    command_context ctx{uuid::random(), uuid::random(), "user:7"};
    other.set_context(ctx);
    REQUIRE_FALSE(other.handle(open_account{"iv"}));
    const auto& ev = other.uncommitted_events().front();
    CHECK(ev.tenant_id == tenant);
    CHECK(ev.causation_id == ctx.command_id);
    CHECK(ev.correlation_id == ctx.correlation_id);
    CHECK(ev.actor_id == "user:7");
  }
}
