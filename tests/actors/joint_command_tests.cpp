// Joint commands: several aggregates, one atomic append, through regions
// on real threads.
#include "es/actors/aggregate_region.hpp"
#include "es/actors/blocking.hpp"
#include "es/actors/joint_command.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/store/memory_event_store.hpp"

#include "account.hpp"
#include "actor_store_fixtures.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

struct joint_fixture {
  threaded_config cfg;
  caf::actor_system sys;
  event_store_ptr store = make_memory_event_store();
  store_actor handle;
  caf::actor region;
  std::shared_ptr<event_registry> registry = make_account_registry();

  joint_fixture() : sys(init(cfg)) {
    handle = spawn_store_actor(sys, store);
    aggregate_options ao;
    ao.store = handle;
    ao.registry = registry;
    region = spawn_region<account>(sys, ao);
  }

  ~joint_fixture() {
    caf::scoped_actor self{sys};
    self->send_exit(region, caf::exit_reason::user_shutdown);
    self->send_exit(handle, caf::exit_reason::user_shutdown);
  }

  static threaded_config& init(threaded_config& c) {
    c.add_message_types<caf::id_block::es_test>();
    return c;
  }

  uuid open(const std::string& owner, int64_t balance) {
    auto id = uuid::random();
    REQUIRE(
      send_command(sys, region, command_envelope::to(id), open_account{owner}));
    if (balance > 0)
      REQUIRE(
        send_command(sys, region, command_envelope::to(id), deposit{balance}));
    return id;
  }

  int64_t balance(const uuid& id) {
    repository_options opts;
    opts.registry = registry;
    aggregate_repository<account> repo{store, opts};
    auto acc = repo.load(id);
    REQUIRE(acc);
    return (*acc)->state().balance;
  }

  caf::expected<std::vector<command_result>>
  transfer(const uuid& from, const uuid& to, int64_t amount) {
    // [joint_transfer]
    std::vector<joint_part> parts;
    parts.push_back(
      joint(region, command_envelope::to(from), withdraw{amount}));
    parts.push_back(joint(region, command_envelope::to(to), deposit{amount}));
    // Each aggregate decides its part; one atomic append writes both or
    // neither, and a refusal of either part is the answer.
    return run_joint_command(sys, handle, std::move(parts));
    // [/joint_transfer]
  }
};

} // namespace

TEST_CASE("a joint command writes both aggregates or neither", "[joint]") {
  joint_fixture fx;
  auto a = fx.open("ada", 50);
  auto b = fx.open("bo", 0);
  auto head = *fx.store->head_position();
  auto done = fx.transfer(a, b, 30);
  if (!done)
    FAIL(describe(done.error()));
  REQUIRE(done->size() == 2);
  CHECK((*done)[0].aggregate_id == a);
  CHECK((*done)[1].aggregate_id == b);
  CHECK((*done)[0].events == 1);
  // One atomic append: adjacent positions.
  CHECK(std::max((*done)[0].last_position, (*done)[1].last_position)
        == head + 2);
  CHECK(fx.balance(a) == 20);
  CHECK(fx.balance(b) == 30);
  // One part refuses: nothing is written, the refusal is the answer, and
  // both aggregates go on serving commands.
  head = *fx.store->head_position();
  auto refused = fx.transfer(a, b, 100);
  REQUIRE_FALSE(refused);
  CHECK(rejection_reason(refused.error()) == "insufficient_funds");
  CHECK(*fx.store->head_position() == head);
  REQUIRE(send_command(fx.sys, fx.region, command_envelope::to(b), deposit{1}));
  REQUIRE(
    send_command(fx.sys, fx.region, command_envelope::to(a), withdraw{1}));
  CHECK(fx.balance(a) == 19);
  CHECK(fx.balance(b) == 31);
  // Bad input.
  CHECK_FALSE(run_joint_command(fx.sys, fx.handle, {}));
  std::vector<joint_part> twice;
  twice.push_back(joint(fx.region, command_envelope::to(a), deposit{1}));
  twice.push_back(joint(fx.region, command_envelope::to(a), deposit{1}));
  auto dup = run_joint_command(fx.sys, fx.handle, std::move(twice));
  REQUIRE_FALSE(dup);
  CHECK(has_code(dup.error(), store_errc::invalid_argument));
}

TEST_CASE("a joint command runs again after another writer moved a stream",
          "[joint]") {
  joint_fixture fx;
  auto a = fx.open("cy", 40);
  auto b = fx.open("di", 0);
  // Prime the aggregate actors, then write behind their backs.
  REQUIRE(fx.transfer(a, b, 10));
  auto extra = make_event(money_deposited{5});
  REQUIRE(extra);
  REQUIRE(fx.store->append({"Account", a}, expected_version::any(), {*extra}));
  auto done = fx.transfer(a, b, 25);
  REQUIRE(done);
  CHECK(fx.balance(a) == 10);
  CHECK(fx.balance(b) == 35);
}

TEST_CASE("joint commands over shared aggregates neither deadlock nor lose "
          "money",
          "[joint]") {
  joint_fixture fx;
  auto a = fx.open("ed", 1000);
  auto b = fx.open("fa", 1000);
  constexpr int rounds = 25;
  std::atomic<int> failures{0};
  std::thread ab{[&] {
    for (int i = 0; i < rounds; ++i)
      if (!fx.transfer(a, b, 3))
        ++failures;
  }};
  std::thread ba{[&] {
    for (int i = 0; i < rounds; ++i)
      if (!fx.transfer(b, a, 2))
        ++failures;
  }};
  std::thread plain{[&] {
    for (int i = 0; i < rounds; ++i)
      if (!send_command(fx.sys, fx.region, command_envelope::to(a), deposit{1}))
        ++failures;
  }};
  ab.join();
  ba.join();
  plain.join();
  CHECK(failures == 0);
  CHECK(fx.balance(a) == 1000 - rounds * 3 + rounds * 2 + rounds);
  CHECK(fx.balance(b) == 1000 + rounds * 3 - rounds * 2);
}
