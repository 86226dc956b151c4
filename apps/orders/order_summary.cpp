#include "order_summary.hpp"

#include "es/store/errors.hpp"

#include <string>

namespace orders {

order_summary::order_summary(std::shared_ptr<const es::event_registry> registry)
  : registry_(std::move(registry)) {
  // nop
}

caf::error order_summary::apply(const es::recorded_event& ev) {
  std::lock_guard guard{mtx_};
  if (ev.global_position <= last_position_)
    return caf::none;
  auto decoded = registry_->decode(ev);
  if (!decoded)
    return es::in_event_context(decoded.error(), ev);
  auto& row = rows_[ev.aggregate_id];
  auto& lines = lines_[ev.aggregate_id];
  if (auto* created = decoded->as<order_created>()) {
    row.status = order_status::draft;
    row.customer = created->customer;
  } else if (auto* added = decoded->as<item_added>()) {
    auto& line = lines[added->sku];
    line.quantity += added->quantity;
    line.unit_price_cents = added->unit_price_cents;
  } else if (auto* removed = decoded->as<item_removed>()) {
    // The event names the SKU only: the model keeps the lines to know what
    // went away.
    lines.erase(removed->sku);
  } else if (auto* paid = decoded->as<order_paid>()) {
    row.status = order_status::paid;
    row.paid_cents = paid->amount_cents;
  } else if (decoded->as<order_shipped>() != nullptr) {
    row.status = order_status::shipped;
  } else if (decoded->as<order_cancelled>() != nullptr) {
    row.status = order_status::cancelled;
  }
  row.items = 0;
  row.total_cents = 0;
  for (const auto& [sku, line] : lines) {
    row.items += line.quantity;
    row.total_cents += line.quantity * line.unit_price_cents;
  }
  row.version = ev.aggregate_version;
  last_position_ = ev.global_position;
  ++applied_;
  return caf::none;
}

caf::error order_summary::catch_up(es::event_store& store, int64_t up_to,
                                   std::vector<caf::error>* bad) {
  es::read_all_options opts;
  opts.after_position = last_position();
  opts.max_count = 1000;
  // Positions are dense: a gap means events are missing from the log.
  auto previous = opts.after_position;
  auto res = es::for_each_in_feed(
    store, opts, [this, up_to, bad, &previous](es::recorded_event& ev) {
      if (ev.global_position > up_to)
        return caf::error{};
      if (bad != nullptr && ev.global_position > previous + 1) {
        auto from = std::to_string(previous + 1);
        auto to = std::to_string(ev.global_position - 1);
        bad->push_back(es::make_store_error(
          es::store_errc::corrupt_database,
          (from == to ? "position " + from + " is"
                      : "positions " + from + " to " + to + " are")
            + " missing from the log (deleted, or a partly restored "
              "backup?); the next is "
            + es::describe_event(ev)));
      }
      previous = ev.global_position;
      auto err = apply(ev);
      if (err && bad != nullptr) {
        bad->push_back(std::move(err));
        return caf::error{};
      }
      return err;
    });
  if (!res)
    return std::move(res.error());
  return caf::none;
}

std::map<es::uuid, summary_row> order_summary::rows() const {
  std::lock_guard guard{mtx_};
  return rows_;
}

std::map<order_status, size_t> order_summary::counts_by_status() const {
  std::lock_guard guard{mtx_};
  std::map<order_status, size_t> result;
  for (const auto& [id, row] : rows_)
    ++result[row.status];
  return result;
}

int64_t order_summary::last_position() const {
  std::lock_guard guard{mtx_};
  return last_position_;
}

uint64_t order_summary::events_applied() const {
  std::lock_guard guard{mtx_};
  return applied_;
}

summary_row row_of(const order_state& s, int64_t version) {
  summary_row row;
  row.status = s.status;
  row.customer = s.customer;
  row.total_cents = s.total_cents();
  row.items = s.item_count();
  row.paid_cents = s.paid_cents;
  row.version = version;
  return row;
}

} // namespace orders
