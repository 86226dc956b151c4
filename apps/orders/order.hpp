// The Order aggregate of the orders demo: events, commands, state, rules.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/aggregate_actor.hpp"
#include "es/projections/type_ids.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace orders {

// -- events -------------------------------------------------------------------

struct order_created {
  static constexpr std::string_view event_type = "OrderCreated";
  static constexpr int32_t event_version = 1;
  std::string customer;
  std::string currency;
};

template <class F>
bool fields(F& f, order_created& x) {
  return f("customer", x.customer) && f("currency", x.currency);
}

struct item_added {
  static constexpr std::string_view event_type = "ItemAdded";
  static constexpr int32_t event_version = 1;
  std::string sku;
  int32_t quantity = 0;
  int64_t unit_price_cents = 0;
};

template <class F>
bool fields(F& f, item_added& x) {
  return f("sku", x.sku) && f("quantity", x.quantity)
         && f("unit_price_cents", x.unit_price_cents);
}

struct item_removed {
  static constexpr std::string_view event_type = "ItemRemoved";
  static constexpr int32_t event_version = 1;
  std::string sku;
};

template <class F>
bool fields(F& f, item_removed& x) {
  return f("sku", x.sku);
}

struct order_paid {
  static constexpr std::string_view event_type = "OrderPaid";
  static constexpr int32_t event_version = 1;
  int64_t amount_cents = 0;
  std::string payment_ref;
};

template <class F>
bool fields(F& f, order_paid& x) {
  return f("amount_cents", x.amount_cents) && f("payment_ref", x.payment_ref);
}

struct order_shipped {
  static constexpr std::string_view event_type = "OrderShipped";
  static constexpr int32_t event_version = 1;
  std::string tracking;
};

template <class F>
bool fields(F& f, order_shipped& x) {
  return f("tracking", x.tracking);
}

struct order_cancelled {
  static constexpr std::string_view event_type = "OrderCancelled";
  static constexpr int32_t event_version = 1;
  std::string reason;
};

template <class F>
bool fields(F& f, order_cancelled& x) {
  return f("reason", x.reason);
}

/// A registry with every order event.
std::shared_ptr<es::event_registry> make_registry();

// -- commands -----------------------------------------------------------------

struct create_order {
  std::string customer;
  std::string currency = "EUR";
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, create_order& x) {
  return f(caf::meta::type_name("orders.create_order"), x.customer, x.currency);
}

struct add_item {
  std::string sku;
  int32_t quantity = 1;
  int64_t unit_price_cents = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, add_item& x) {
  return f(caf::meta::type_name("orders.add_item"), x.sku, x.quantity,
           x.unit_price_cents);
}

struct remove_item {
  std::string sku;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remove_item& x) {
  return f(caf::meta::type_name("orders.remove_item"), x.sku);
}

struct pay_order {
  int64_t amount_cents = 0;
  std::string payment_ref;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pay_order& x) {
  return f(caf::meta::type_name("orders.pay_order"), x.amount_cents,
           x.payment_ref);
}

struct ship_order {
  std::string tracking;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ship_order& x) {
  return f(caf::meta::type_name("orders.ship_order"), x.tracking);
}

struct cancel_order {
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cancel_order& x) {
  return f(caf::meta::type_name("orders.cancel_order"), x.reason);
}

// -- state and aggregate ------------------------------------------------------

enum class order_status : uint8_t { none, draft, paid, shipped, cancelled };

const char* to_string(order_status x);

struct order_line {
  int32_t quantity = 0;
  int64_t unit_price_cents = 0;
  friend bool operator==(const order_line&, const order_line&) = default;
};

struct order_state {
  order_status status = order_status::none;
  std::string customer;
  std::string currency;
  std::map<std::string, order_line> lines;
  int64_t paid_cents = 0;
  std::string tracking;
  std::string cancel_reason;

  int64_t total_cents() const;
  int32_t item_count() const;
};

class order : public es::aggregate<order_state> {
public:
  static constexpr std::string_view aggregate_type = "Order";
  using commands = es::command_list<create_order, add_item, remove_item,
                                    pay_order, ship_order, cancel_order>;

  order(es::uuid id, std::shared_ptr<const es::event_registry> registry);

  caf::error handle(const create_order& cmd);
  caf::error handle(const add_item& cmd);
  caf::error handle(const remove_item& cmd);
  caf::error handle(const pay_order& cmd);
  caf::error handle(const ship_order& cmd);
  caf::error handle(const cancel_order& cmd);
};

} // namespace orders

CAF_BEGIN_TYPE_ID_BLOCK(orders, caf::id_block::es_projections::end)

CAF_ADD_TYPE_ID(orders, (orders::create_order))
CAF_ADD_TYPE_ID(orders, (orders::add_item))
CAF_ADD_TYPE_ID(orders, (orders::remove_item))
CAF_ADD_TYPE_ID(orders, (orders::pay_order))
CAF_ADD_TYPE_ID(orders, (orders::ship_order))
CAF_ADD_TYPE_ID(orders, (orders::cancel_order))

CAF_END_TYPE_ID_BLOCK(orders)
