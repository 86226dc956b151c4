// quickstart: the smallest complete program on the framework. One aggregate
// type (a bank account), the SQLite store, a region of account actors, the
// in-process bus, and commands sent from main(). docs/aggregates.md walks
// through it.
// Laid out as the docs show it (aligned comments, one-line members):
// clang-format off
#include "es/actors/aggregate_region.hpp"
#include "es/actors/blocking.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/sqlite/sqlite.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exec_main.hpp>
#include <caf/scoped_actor.hpp>

#include <atomic>
#include <iostream>

// -- 1. events: plain structs with a type name, a version and their fields ---

struct account_opened {
  static constexpr std::string_view event_type = "AccountOpened";
  static constexpr int32_t event_version = 1;
  std::string owner;
};

template <class F>
bool fields(F& f, account_opened& x) {
  return f("owner", x.owner);
}

// [event]
struct money_deposited {
  static constexpr std::string_view event_type = "MoneyDeposited";
  static constexpr int32_t event_version = 1;
  int64_t cents = 0;
};

template <class F>
bool fields(F& f, money_deposited& x) {
  return f("cents", x.cents);
}
// [/event]

// -- 2. commands: plain structs CAF can inspect -------------------------------

struct open_account {
  std::string owner;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_account& x) {
  return f(caf::meta::type_name("open_account"), x.owner);
}

// [command]
struct deposit {
  int64_t cents = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deposit& x) {
  return f(caf::meta::type_name("deposit"), x.cents);
}

CAF_BEGIN_TYPE_ID_BLOCK(quickstart, caf::id_block::es_actors::end)
CAF_ADD_TYPE_ID(quickstart, (open_account))
CAF_ADD_TYPE_ID(quickstart, (deposit))
CAF_END_TYPE_ID_BLOCK(quickstart)
// [/command]

// -- 3. the aggregate: state, event handlers, command handlers ----------------

struct account_state {
  bool open = false;
  int64_t balance = 0;
};

// [aggregate]
class account : public es::aggregate<account_state> {
public:
  static constexpr std::string_view aggregate_type = "Account";
  using commands = es::command_list<open_account, deposit>;

  account(es::uuid id, std::shared_ptr<const es::event_registry> registry)
    : aggregate(std::string{aggregate_type}, id, std::move(registry)) {
    on<account_opened>([](account_state& s, const account_opened&) {
      s.open = true;
    });
    on<money_deposited>([](account_state& s, const money_deposited& e) {
      s.balance += e.cents;
    });
  }

  // Business rules first; events only once they pass.
  caf::error handle(const open_account& cmd) {
    if (state().open)
      return es::reject("already_open", "the account is already open");
    return emit(account_opened{cmd.owner});
  }

  caf::error handle(const deposit& cmd) {
    if (!state().open)
      return es::reject("not_open", "open the account first");
    if (cmd.cents <= 0)
      return es::reject("bad_amount", "deposits must be positive");
    return emit(money_deposited{cmd.cents});
  }
};
// [/aggregate]

// -- 4. commands from an actor ------------------------------------------------

/// Deposits for its callers: `(uuid account, int64_t cents) -> int64_t`,
/// the account's new version.
caf::behavior depositor(caf::event_based_actor* self, caf::actor region) {
  return {
    [=](const es::uuid& id, int64_t cents) {
      auto rp = self->make_response_promise<int64_t>();
      // [request]
      self->request(region, std::chrono::seconds(5),
                    es::command_envelope::to(id), deposit{cents})
        .then([rp](es::command_result& r) mutable { rp.deliver(r.version); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      // [/request]
      return rp;
    },
  };
}

// -- 5. wiring ----------------------------------------------------------------

struct config : caf::actor_system_config {
  std::string path = "data/quickstart.db";

  config() {
    opt_group{custom_options_, "global"}.add(path, "path", "SQLite file");
    es::add_actors_module(*this);
    add_message_types<caf::id_block::quickstart>();
    set("scheduler.max-threads", 2);
  }
};

void caf_main(caf::actor_system& sys, const config& cfg) {
  // [registry]
  auto registry = std::make_shared<es::event_registry>();
  for (auto err : {registry->add<account_opened>(),   // duplicate_registration
                   registry->add<money_deposited>()}) // if added twice
    if (err) {
      std::cerr << es::describe(err) << "\n";
      return;
    }
  // [/registry]
  // [wiring]
  es::sqlite_config sc;
  sc.path = cfg.path;                                // --path=...
  auto store = es::make_sqlite_event_store(sc);      // caf::expected: check it
  if (!store) {
    std::cerr << es::describe(store.error()) << "\n";
    return;
  }

  auto bus = es::make_in_process_bus(sys);           // optional
  es::store_actor_config sac;
  sac.bus = bus->handle();                           // publish after commit
  auto store_actor = es::spawn_store_actor(sys, *store, sac);

  es::aggregate_options ao;
  ao.store = store_actor;
  ao.registry = registry;
  ao.max_conflict_retries = 3;                       // on wrong_expected_version
  es::region_options ro;
  ro.idle_timeout = std::chrono::minutes(5);         // passivate idle aggregates
  ro.max_live = 100'000;                             // and beyond this many, LRU first
  auto region = es::spawn_region<account>(sys, ao, ro);
  // [/wiring]
  // Committed events go to the bus; a subscriber sums the deposits.
  auto deposited = std::make_shared<std::atomic<int64_t>>(0);
  es::subscribe_typed<money_deposited>(
    *bus, registry,
    [deposited](const money_deposited& e, const es::recorded_event&) {
      *deposited += e.cents;
    });
  // Commands from a thread that is not an actor: send_command blocks.
  auto id = es::uuid::random();
  auto send = [&](auto cmd) {
    // [send-command]
    auto res = es::send_command(sys, region, es::command_envelope::to(id), cmd);
    // [/send-command]
    if (res)
      std::cout << "accepted, account now at version " << res->version << "\n";
    else
      std::cout << "refused: " << es::describe(res.error()) << "\n";
  };
  send(deposit{100});        // refused: not open
  send(open_account{"ada"}); // version 1
  send(deposit{2500});       // version 2
  send(deposit{-5});         // refused: bad amount
  // The same through an actor that asks the region.
  caf::scoped_actor self{sys};
  auto teller = sys.spawn(depositor, caf::actor_cast<caf::actor>(region));
  self->request(teller, std::chrono::seconds(10), id, int64_t{100})
    .receive(
      [](int64_t version) {
        std::cout << "an actor's deposit: version " << version << "\n";
      },
      [](caf::error& err) {
        std::cout << "an actor's deposit failed: " << es::describe(err) << "\n";
      });
  bus->drain(std::chrono::seconds(5));
  std::cout << "the bus saw " << deposited->load() << " cents deposited\n";
  self->send_exit(teller, caf::exit_reason::user_shutdown);
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(store_actor, caf::exit_reason::user_shutdown);
  // Without actors: the repository loads and saves on the store itself.
  // (The region is stopping and has nothing left to write.)
  // [repository]
  es::repository_options rop;
  rop.registry = registry;
  es::aggregate_repository<account> repo{*store, rop};
  auto acc = repo.load_or_create(id); // caf::expected<std::unique_ptr<account>>
  if (!acc || (*acc)->handle(deposit{5}))
    return;
  auto saved = repo.save(**acc); // wrong_expected_version if another saved first
  // [/repository]
  if (saved)
    std::cout << "the repository saved version " << (*acc)->version()
              << ", balance " << (*acc)->state().balance << "\n";
  else
    std::cout << "the repository failed: " << es::describe(saved.error())
              << "\n";
}

CAF_MAIN()
