// The demo's read models in a SQLite database of their own, kept by
// projections: an order summary (transactional: each batch commits with the
// checkpoint) and per-customer figures (at-least-once delivery deduplicated
// by event id), which can be told to fail on cancellations so the
// dead-letter queue fills.
#pragma once

#include "es/projections/projection.hpp"
#include "es/store/sql.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "order.hpp"
#include "order_summary.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace orders {

/// One row per order, written in the same transaction as the checkpoint.
class order_summary_view : public es::transactional_projection {
public:
  static constexpr const char* projection_name = "order_summary";

  order_summary_view(es::read_model_db_ptr db,
                     std::shared_ptr<const es::event_registry> registry);

  std::string name() const override;

  std::vector<std::string> subscribed_to() const override;

  caf::error handle(es::sql_transaction& tx,
                    const es::recorded_event& ev) override;

  caf::error reset(es::sql_transaction& tx) override;

  const es::event_registry* type_registry() const override;

  /// Rebuilt in a shadow database and swapped in (`orders rebuild`).
  std::vector<std::string> tables() const override;

  caf::error create_tables(es::sql_transaction& tx) override;

  std::shared_ptr<es::transactional_projection>
  with_db(es::read_model_db_ptr db) const override;

  /// Every row, read in a transaction of its own.
  caf::expected<std::map<es::uuid, summary_row>> rows();

private:
  std::shared_ptr<const es::event_registry> registry_;
};

/// Per-customer figures.
struct customer_row {
  int64_t orders = 0;
  int64_t paid_orders = 0;
  int64_t cancelled_orders = 0;
  /// Payments of orders that are not cancelled.
  int64_t revenue_cents = 0;
  friend bool operator==(const customer_row&, const customer_row&) = default;
};

/// Folds order events into customer figures in memory; what the view must
/// hold once it has seen the same events.
class customer_totals {
public:
  explicit customer_totals(std::shared_ptr<const es::event_registry> registry);

  caf::error apply(const es::recorded_event& ev);

  const std::map<std::string, customer_row>& rows() const {
    return rows_;
  }

private:
  std::shared_ptr<const es::event_registry> registry_;
  std::map<es::uuid, std::pair<std::string, int64_t>> orders_;
  std::map<std::string, customer_row> rows_;
};

/// Customer figures kept by a declarative projection whose checkpoint is
/// saved after its writes (at-least-once): each handler writes in its own
/// transaction and records the event id there, so a redelivered event (after
/// a crash, or a dead-letter replay of an event that did get applied)
/// changes nothing. With `fail_on_cancellations` it refuses every
/// OrderCancelled event, as a buggy handler would, so those events end in
/// the dead-letter queue.
class customer_stats_view : public es::declarative_projection {
public:
  static constexpr const char* projection_name = "customer_stats";

  /// The text of the injected failure (the classifier's pattern rule for it
  /// says permanent, so it goes to the DLQ without retries).
  static constexpr const char* injected_failure = "injected failure";

  customer_stats_view(es::read_model_db_ptr db,
                      std::shared_ptr<const es::event_registry> registry,
                      bool fail_on_cancellations);

  bool blocking() const override;

  /// Every row, read in a transaction of its own.
  caf::expected<std::map<std::string, customer_row>> rows();

protected:
  caf::error clear() override;

private:
  /// Runs `fn` in a transaction unless the event was handled before.
  caf::error once(const es::recorded_event& ev,
                  const std::function<caf::error(es::sql_transaction&)>& fn);

  es::read_model_db_ptr db_;
  bool fail_on_cancellations_;
};

/// The read-model database and both projections.
struct views {
  es::read_model_db_ptr db;
  std::shared_ptr<order_summary_view> summary;
  std::shared_ptr<customer_stats_view> customers;
};

/// Opens the views in `db`, creating their tables.
caf::expected<views>
open_views(es::read_model_db_ptr db,
           std::shared_ptr<const es::event_registry> registry,
           bool fail_on_cancellations);

/// Opens (creating and migrating) the views database at `path`.
caf::expected<views>
open_views(const std::string& path,
           std::shared_ptr<const es::event_registry> registry,
           bool fail_on_cancellations);

} // namespace orders
