// A small bank-account domain for the actor tests.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/aggregate_actor.hpp"
#include "es/actors/type_ids.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include <stdexcept>
#include <string>

namespace es::test {

// -- events -------------------------------------------------------------------

struct account_opened {
  static constexpr std::string_view event_type = "AccountOpened";
  static constexpr int32_t event_version = 1;
  std::string owner;
};

template <class F>
bool fields(F& f, account_opened& x) {
  return f("owner", x.owner);
}

struct money_deposited {
  static constexpr std::string_view event_type = "MoneyDeposited";
  static constexpr int32_t event_version = 1;
  int64_t amount = 0;
};

template <class F>
bool fields(F& f, money_deposited& x) {
  return f("amount", x.amount);
}

struct money_withdrawn {
  static constexpr std::string_view event_type = "MoneyWithdrawn";
  static constexpr int32_t event_version = 1;
  int64_t amount = 0;
};

template <class F>
bool fields(F& f, money_withdrawn& x) {
  return f("amount", x.amount);
}

inline std::shared_ptr<event_registry> make_account_registry() {
  auto reg = std::make_shared<event_registry>();
  static_cast<void>(reg->add<account_opened>());
  static_cast<void>(reg->add<money_deposited>());
  static_cast<void>(reg->add<money_withdrawn>());
  return reg;
}

// -- commands -----------------------------------------------------------------

struct open_account {
  std::string owner;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_account& x) {
  return f(caf::meta::type_name("open_account"), x.owner);
}

struct deposit {
  int64_t amount = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deposit& x) {
  return f(caf::meta::type_name("deposit"), x.amount);
}

struct withdraw {
  int64_t amount = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, withdraw& x) {
  return f(caf::meta::type_name("withdraw"), x.amount);
}

/// Makes the handler throw: for crash tests.
struct explode {
  int32_t code = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, explode& x) {
  return f(caf::meta::type_name("explode"), x.code);
}

/// Emits nothing: a command that changes nothing.
struct noop {
  int32_t code = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, noop& x) {
  return f(caf::meta::type_name("noop"), x.code);
}

// -- the aggregate (declarative style) ----------------------------------------

struct account_state {
  bool open = false;
  std::string owner;
  int64_t balance = 0;
  int64_t deposits = 0;
};

template <class F>
bool fields(F& f, account_state& x) {
  return f("open", x.open) && f("owner", x.owner) && f("balance", x.balance)
         && f("deposits", x.deposits);
}

class account : public aggregate<account_state> {
public:
  static constexpr std::string_view aggregate_type = "Account";
  static constexpr int32_t snapshot_schema_version = 2;
  using commands = command_list<open_account, deposit, withdraw, explode, noop>;

  account(uuid id, std::shared_ptr<const event_registry> registry)
    : aggregate(std::string{aggregate_type}, id, std::move(registry)) {
    on<account_opened>([](account_state& s, const account_opened& e) {
      s.open = true;
      s.owner = e.owner;
    });
    on<money_deposited>([](account_state& s, const money_deposited& e) {
      s.balance += e.amount;
      ++s.deposits;
    });
    on<money_withdrawn>([](account_state& s, const money_withdrawn& e) {
      s.balance -= e.amount;
    });
  }

  caf::error handle(const open_account& cmd) {
    if (state().open)
      return reject("already_open", "account is already open");
    if (cmd.owner.empty())
      return reject("no_owner", "an account needs an owner");
    return emit(account_opened{cmd.owner});
  }

  caf::error handle(const deposit& cmd) {
    if (!state().open)
      return reject("not_open", "account is not open");
    if (cmd.amount <= 0)
      return reject("bad_amount", "deposits must be positive");
    return emit(money_deposited{cmd.amount});
  }

  caf::error handle(const withdraw& cmd) {
    if (!state().open)
      return reject("not_open", "account is not open");
    if (cmd.amount > state().balance)
      return reject("insufficient_funds",
                    "balance " + std::to_string(state().balance)
                      + " is less than " + std::to_string(cmd.amount));
    return emit(money_withdrawn{cmd.amount});
  }

  caf::error handle(const explode& cmd) {
    // Change state first, so a restart must really reload.
    if (auto err = emit(money_deposited{1000}))
      return err;
    throw std::runtime_error("explode " + std::to_string(cmd.code));
  }

  caf::error handle(const noop&) {
    return caf::none;
  }
};

} // namespace es::test

CAF_BEGIN_TYPE_ID_BLOCK(es_test, caf::id_block::es_actors::end)

CAF_ADD_TYPE_ID(es_test, (es::test::open_account))
CAF_ADD_TYPE_ID(es_test, (es::test::deposit))
CAF_ADD_TYPE_ID(es_test, (es::test::withdraw))
CAF_ADD_TYPE_ID(es_test, (es::test::explode))
CAF_ADD_TYPE_ID(es_test, (es::test::noop))

CAF_END_TYPE_ID_BLOCK(es_test)
