// A region on CAF's threaded scheduler: clients that pipeline commands to a
// few aggregates while the region passivates them all the time (max_live,
// the idle check and explicit requests). Every command must be answered
// once, succeed, run in its sender's order and be stored once.

#include "es/actors/aggregate_region.hpp"
#include "es/actors/store_actor.hpp"
#include "es/store/memory_event_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "account.hpp"
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <vector>

namespace es::test {

namespace {

struct threaded_config : caf::actor_system_config {
  threaded_config() {
    add_actors_module(*this);
    add_message_types<caf::id_block::es_test>();
    set("scheduler.max-threads", 2);
    set("logger.verbosity", caf::atom("quiet"));
  }
};

constexpr size_t aggregates = 6;
constexpr size_t clients = 8;
constexpr size_t per_client = 400;

/// What one client saw: the version each of its commands got (0 while
/// unanswered), and how many failed.
struct client_record {
  std::vector<int64_t> versions = std::vector<int64_t>(per_client, 0);
  size_t failed = 0;
};

/// Which aggregate the k-th command of client c goes to.
size_t target(size_t c, size_t k) {
  return (c + k * 5) % aggregates;
}

/// Commands a client sent, and those not answered yet.
struct client_state {
  size_t next = 0;
  size_t open = 0;
};

/// Keeps `window` commands in flight until it sent `per_client`, then
/// reports to `done` when every answer arrived.
caf::behavior
pipelining_client(caf::stateful_actor<client_state>* self, caf::actor region,
                  std::shared_ptr<std::vector<uuid>> ids, size_t index,
                  std::shared_ptr<client_record> record, caf::actor done) {
  constexpr size_t window = 4;
  auto send_next = std::make_shared<std::function<void()>>();
  *send_next = [self, region, ids, index, record, done, send_next] {
    auto& st = self->state;
    if (st.next == per_client) {
      if (st.open == 0) {
        self->send(done, caf::ok_atom_v);
        self->quit();
      }
      return;
    }
    auto k = st.next++;
    ++st.open;
    auto answered = [self, send_next] {
      --self->state.open;
      (*send_next)();
    };
    self
      ->request(region, std::chrono::seconds(60),
                command_envelope::to((*ids)[target(index, k)]), deposit{1})
      .then(
        [record, k, answered](command_result& res) {
          record->versions[k] = res.version;
          answered();
        },
        [record, answered](caf::error&) {
          ++record->failed;
          answered();
        });
  };
  for (size_t i = 0; i < window; ++i)
    (*send_next)();
  return {};
}

} // namespace

TEST_CASE("a region under passivation keeps every command and its order",
          "[actors][region]") {
  threaded_config cfg;
  caf::actor_system sys{cfg};
  auto store = make_memory_event_store();
  auto store_handle = spawn_store_actor(sys, store);
  aggregate_options ao;
  ao.store = store_handle;
  ao.registry = make_account_registry();
  region_options ro;
  // Fewer live actors than aggregates, and an idle check every 10 ms.
  ro.max_live = 3;
  ro.idle_timeout = std::chrono::milliseconds(1);
  auto region = spawn_region<account>(sys, ao, ro);
  caf::scoped_actor self{sys};
  // Ends the region and the store actor however the test ends: the system
  // waits for them before it goes.
  struct stopper {
    caf::scoped_actor& self;
    caf::actor region;
    caf::actor store;
    ~stopper() {
      self->send_exit(region, caf::exit_reason::user_shutdown);
      self->send_exit(store, caf::exit_reason::user_shutdown);
    }
  } stop{self, region, caf::actor_cast<caf::actor>(store_handle)};
  auto ids = std::make_shared<std::vector<uuid>>();
  for (size_t i = 0; i < aggregates; ++i) {
    ids->push_back(uuid::random());
    auto opened = false;
    self
      ->request(region, std::chrono::seconds(30),
                command_envelope::to(ids->back()), open_account{"p"})
      .receive(
        [&](command_result&) {
          opened = true;
        },
        [&](caf::error& err) {
          FAIL(describe(err));
        });
    REQUIRE(opened);
  }
  std::vector<std::shared_ptr<client_record>> records;
  for (size_t c = 0; c < clients; ++c) {
    records.push_back(std::make_shared<client_record>());
    sys.spawn(pipelining_client, region, ids, c, records.back(),
              caf::actor{self});
  }
  // Explicit passivations while the clients run.
  for (size_t i = 0; i < 60; ++i)
    self
      ->request(region, std::chrono::seconds(30), passivate_atom_v,
                (*ids)[i % aggregates])
      .receive([](bool) {},
               [&](caf::error& err) {
                 FAIL(describe(err));
               });
  bool timed_out = false;
  for (size_t i = 0; i < clients && !timed_out; ++i)
    self->receive([](caf::ok_atom) {}, caf::after(std::chrono::seconds(60)) >>
                                         [&] {
                                           timed_out = true;
                                         });
  REQUIRE_FALSE(timed_out);
  // Every command succeeded, and each client's commands to one aggregate
  // ran in the order it sent them.
  std::vector<int64_t> expected_version(aggregates, 1);
  for (size_t c = 0; c < clients; ++c) {
    const auto& rec = *records[c];
    CHECK(rec.failed == 0);
    std::vector<int64_t> last(aggregates, 0);
    for (size_t k = 0; k < per_client; ++k) {
      auto a = target(c, k);
      INFO("client " << c << ", command " << k << ", aggregate " << a);
      REQUIRE(rec.versions[k] > last[a]);
      last[a] = rec.versions[k];
      ++expected_version[a];
    }
  }
  // Each command's event is stored once: the stream holds the opening
  // event and one deposit per command, and the versions clients saw are
  // those of the stream.
  for (size_t a = 0; a < aggregates; ++a) {
    auto v = store->stream_version({"Account", (*ids)[a]});
    REQUIRE(v);
    CHECK(*v == expected_version[a]);
  }
  region_stats st;
  self->request(region, std::chrono::seconds(30), region_stats_atom_v)
    .receive(
      [&](region_stats& x) {
        st = x;
      },
      [&](caf::error& err) {
        FAIL(describe(err));
      });
  CHECK(st.commands_routed == aggregates + clients * per_client);
  CHECK(st.passivated > 0);
  CHECK(st.spawned > aggregates);
  CHECK(st.crashed == 0);
}

} // namespace es::test
