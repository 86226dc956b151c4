// upcasting: a stored event of an old schema version read as the current
// one. docs/aggregates.md shows this file; tests/docs keeps the two the same.
#include "es/store/errors.hpp"
#include "es/store/event_registry.hpp"

#include <iostream>

// What was stored before: whole euros.
struct money_deposited_v1 {
  static constexpr std::string_view event_type = "MoneyDeposited";
  static constexpr int32_t event_version = 1;
  int64_t euros = 0;
};

template <class F>
bool fields(F& f, money_deposited_v1& x) {
  return f("euros", x.euros);
}

// The current version: cents and a currency.
struct money_deposited {
  static constexpr std::string_view event_type = "MoneyDeposited";
  static constexpr int32_t event_version = 2;
  int64_t cents = 0;
  std::string currency;
};

template <class F>
bool fields(F& f, money_deposited& x) {
  return f("cents", x.cents) && f("currency", x.currency);
}

int main() {
  es::event_registry registry;
  for (auto err :
       {registry.add<money_deposited_v1>(), registry.add<money_deposited>(),
        registry.add_upcaster<money_deposited_v1, money_deposited>(
          [](const money_deposited_v1& old) {
            return money_deposited{old.euros * 100, "EUR"};
          })})
    if (err) {
      std::cerr << es::describe(err) << '\n';
      return 1;
    }
  // A payload as version 1 wrote it, decoded as the current version.
  es::event_data stored;
  stored.event_type = "MoneyDeposited";
  stored.event_version = 1;
  stored.payload = R"({"euros":12})";
  auto now = registry.decode_as<money_deposited>(stored);
  if (!now) {
    std::cerr << es::describe(now.error()) << '\n';
    return 1;
  }
  std::cout << now->cents << " cents in " << now->currency << '\n';
}
