#include "order.hpp"

#include "es/actors/errors.hpp"

namespace orders {

std::shared_ptr<es::event_registry> make_registry() {
  auto reg = std::make_shared<es::event_registry>();
  static_cast<void>(reg->add<order_created>());
  static_cast<void>(reg->add<item_added>());
  static_cast<void>(reg->add<item_removed>());
  static_cast<void>(reg->add<order_paid>());
  static_cast<void>(reg->add<order_shipped>());
  static_cast<void>(reg->add<order_cancelled>());
  return reg;
}

const char* to_string(order_status x) {
  switch (x) {
    case order_status::none: return "none";
    case order_status::draft: return "draft";
    case order_status::paid: return "paid";
    case order_status::shipped: return "shipped";
    case order_status::cancelled: return "cancelled";
  }
  return "?";
}

int64_t order_state::total_cents() const {
  int64_t total = 0;
  for (const auto& [sku, line] : lines)
    total += line.quantity * line.unit_price_cents;
  return total;
}

int32_t order_state::item_count() const {
  int32_t n = 0;
  for (const auto& [sku, line] : lines)
    n += line.quantity;
  return n;
}

order::order(es::uuid id, std::shared_ptr<const es::event_registry> registry)
  : aggregate(std::string{aggregate_type}, id, std::move(registry)) {
  on<order_created>([](order_state& s, const order_created& e) {
    s.status = order_status::draft;
    s.customer = e.customer;
    s.currency = e.currency;
  });
  on<item_added>([](order_state& s, const item_added& e) {
    auto& line = s.lines[e.sku];
    line.quantity += e.quantity;
    line.unit_price_cents = e.unit_price_cents;
  });
  on<item_removed>([](order_state& s, const item_removed& e) {
    s.lines.erase(e.sku);
  });
  on<order_paid>([](order_state& s, const order_paid& e) {
    s.status = order_status::paid;
    s.paid_cents = e.amount_cents;
  });
  on<order_shipped>([](order_state& s, const order_shipped& e) {
    s.status = order_status::shipped;
    s.tracking = e.tracking;
  });
  on<order_cancelled>([](order_state& s, const order_cancelled& e) {
    s.status = order_status::cancelled;
    s.cancel_reason = e.reason;
  });
}

namespace {

caf::error require_draft(const order_state& s) {
  switch (s.status) {
    case order_status::none:
      return es::reject("not_found", "the order does not exist");
    case order_status::draft: return caf::none;
    case order_status::paid:
      return es::reject("already_paid", "the order is already paid");
    case order_status::shipped:
      return es::reject("already_shipped", "the order is already shipped");
    case order_status::cancelled:
      return es::reject("cancelled", "the order is cancelled");
  }
  return caf::none;
}

} // namespace

caf::error order::handle(const create_order& cmd) {
  if (state().status != order_status::none)
    return es::reject("already_exists", "the order already exists");
  if (cmd.customer.empty())
    return es::reject("no_customer", "an order needs a customer");
  if (cmd.currency.size() != 3)
    return es::reject("bad_currency", "currency must be an ISO 4217 code");
  return emit(order_created{cmd.customer, cmd.currency});
}

caf::error order::handle(const add_item& cmd) {
  if (auto err = require_draft(state()))
    return err;
  if (cmd.sku.empty())
    return es::reject("no_sku", "an item needs a SKU");
  if (cmd.quantity <= 0 || cmd.quantity > 1000)
    return es::reject("bad_quantity", "quantity must be 1 to 1000");
  if (cmd.unit_price_cents < 0)
    return es::reject("bad_price", "prices must not be negative");
  return emit(item_added{cmd.sku, cmd.quantity, cmd.unit_price_cents});
}

caf::error order::handle(const remove_item& cmd) {
  if (auto err = require_draft(state()))
    return err;
  if (state().lines.count(cmd.sku) == 0)
    return es::reject("no_such_item", "the order has no item " + cmd.sku);
  return emit(item_removed{cmd.sku});
}

caf::error order::handle(const pay_order& cmd) {
  if (auto err = require_draft(state()))
    return err;
  if (state().lines.empty())
    return es::reject("empty_order", "an empty order cannot be paid");
  if (cmd.amount_cents != state().total_cents())
    return es::reject("wrong_amount",
                      "payment of " + std::to_string(cmd.amount_cents)
                        + " does not match the total "
                        + std::to_string(state().total_cents()));
  return emit(order_paid{cmd.amount_cents, cmd.payment_ref});
}

caf::error order::handle(const ship_order& cmd) {
  switch (state().status) {
    case order_status::none:
      return es::reject("not_found", "the order does not exist");
    case order_status::draft:
      return es::reject("not_paid", "an unpaid order cannot be shipped");
    case order_status::shipped:
      return es::reject("already_shipped", "the order is already shipped");
    case order_status::cancelled:
      return es::reject("cancelled", "the order is cancelled");
    case order_status::paid: break;
  }
  if (cmd.tracking.empty())
    return es::reject("no_tracking", "a shipment needs a tracking number");
  return emit(order_shipped{cmd.tracking});
}

caf::error order::handle(const cancel_order& cmd) {
  switch (state().status) {
    case order_status::none:
      return es::reject("not_found", "the order does not exist");
    case order_status::shipped:
      return es::reject("already_shipped", "a shipped order cannot be "
                                           "cancelled");
    case order_status::cancelled:
      return es::reject("cancelled", "the order is already cancelled");
    default: break;
  }
  return emit(order_cancelled{cmd.reason});
}

} // namespace orders
