// The order-summary read model: one row per order, fed with events.
#pragma once

#include "es/store/event_store.hpp"

#include <caf/error.hpp>

#include "order.hpp"

#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace orders {

struct summary_row {
  order_status status = order_status::none;
  std::string customer;
  int64_t total_cents = 0;
  int32_t items = 0;
  int64_t paid_cents = 0;
  int64_t version = 0;
  friend bool operator==(const summary_row&, const summary_row&) = default;
};

/// Applies order events to summary rows. Thread-safe. Events at or below
/// the last applied global position are skipped, so feeding the same event
/// twice (log replay, then the bus) changes nothing.
class order_summary {
public:
  explicit order_summary(std::shared_ptr<const es::event_registry> registry);

  /// Applies one event. Errors: the registry's decoding errors, naming
  /// the event (`es::in_event_context`).
  caf::error apply(const es::recorded_event& ev);

  /// Replays the store's feed from the last applied position, up to
  /// `up_to` (the whole feed by default). Stops at the first event that
  /// fails, unless `bad` is given: then each failing event's error is added
  /// there, the event is left out, and the replay goes on; each run of
  /// global positions missing from the feed (a deleted row, a partly
  /// restored log) is added there as a `corrupt_database` error naming the
  /// positions and the event after them.
  caf::error catch_up(es::event_store& store,
                      int64_t up_to = std::numeric_limits<int64_t>::max(),
                      std::vector<caf::error>* bad = nullptr);

  std::map<es::uuid, summary_row> rows() const;
  std::map<order_status, size_t> counts_by_status() const;
  int64_t last_position() const;
  uint64_t events_applied() const;

private:
  std::shared_ptr<const es::event_registry> registry_;
  mutable std::mutex mtx_;
  std::map<es::uuid, summary_row> rows_;
  std::map<es::uuid, std::map<std::string, order_line>> lines_;
  int64_t last_position_ = 0;
  uint64_t applied_ = 0;
};

/// Returns the row the read model should hold for an aggregate's state.
summary_row row_of(const order_state& s, int64_t version);

} // namespace orders
