#include "es/projections/projection.hpp"

#include "es/projections/errors.hpp"
#include "es/projections/subscription.hpp"
#include "es/store/errors.hpp"
#include "es/supervision/errors.hpp"

#include "detail.hpp"

#include <algorithm>
#include <random>
#include <thread>

namespace es {

const char* to_string(projection_state x) {
  switch (x) {
    case projection_state::starting: return "starting";
    case projection_state::catching_up: return "catching_up";
    case projection_state::live: return "live";
    case projection_state::paused: return "paused";
    case projection_state::stopped: return "stopped";
    case projection_state::error: return "error";
    case projection_state::standby: return "standby";
  }
  return "?";
}

// -- level 1 ------------------------------------------------------------------

projection::~projection() {
  // nop
}

std::vector<std::string> projection::subscribed_to() const {
  return {};
}

caf::error projection::handle_view(const event_view& ev) {
  if (const auto* owned = ev.owned())
    return handle(*owned);
  return handle(ev.to_event());
}

caf::error projection::reset() {
  return caf::none;
}

bool projection::blocking() const {
  return false;
}

const event_registry* projection::type_registry() const {
  return nullptr;
}

namespace detail {

caf::error call_handler(const std::function<caf::error()>& fn) {
  try {
    return fn();
  } catch (const std::exception& ex) {
    return caf::make_error(projections_errc::handler_failed,
                           std::string{"handler threw: "} + ex.what());
  } catch (...) {
    return caf::make_error(projections_errc::handler_failed,
                           std::string{"handler threw"});
  }
}

dead_letter make_dead_letter(const std::string& projection,
                             const recorded_event& ev, const caf::error& err,
                             const error_classification& c, uint32_t attempts) {
  dead_letter d;
  d.projection = projection;
  d.event_id = ev.event_id;
  d.global_position = ev.global_position;
  d.event_type = ev.event_type;
  d.event_data = encode_recorded_event(ev);
  d.error_message = describe(err);
  d.error_context = std::string{"category="} + to_string(c.category)
                    + " severity=" + to_string(c.severity)
                    + " retryable=" + (c.retryable ? "true" : "false")
                    + " attempts=" + std::to_string(attempts);
  d.retry_count = static_cast<int32_t>(attempts > 0 ? attempts - 1 : 0);
  d.first_failed_at = now_utc();
  d.last_failed_at = d.first_failed_at;
  return d;
}

bool wants(const std::vector<std::string>& types, std::string_view type) {
  // Stream control events only when named: a projection of "everything"
  // means the application's events.
  if (types.empty())
    return !is_stream_control_type(type);
  return std::find(types.begin(), types.end(), type) != types.end();
}

} // namespace detail

// -- level 2 ------------------------------------------------------------------

checkpoint_tracking_projection::checkpoint_tracking_projection(
  checkpoint_store_ptr checkpoints, dead_letter_store_ptr dead_letters,
  error_policy policy)
  : checkpoints_(checkpoints ? std::move(checkpoints)
                             : make_memory_checkpoint_store()),
    dead_letters_(dead_letters ? std::move(dead_letters)
                               : make_memory_dead_letter_store()),
    tracker_(std::move(policy), nullptr) {
  // nop
}

caf::expected<int64_t> checkpoint_tracking_projection::checkpoint_position() {
  auto cp = checkpoints_->load(name());
  if (!cp)
    return std::move(cp.error());
  return *cp ? (*cp)->position : int64_t{0};
}

caf::error checkpoint_tracking_projection::process(const recorded_event& ev) {
  auto position = checkpoint_position();
  if (!position)
    return std::move(position.error());
  if (ev.global_position <= *position)
    return caf::none;
  auto save = [&]() -> caf::error {
    checkpoint cp{name(),        ev.global_position, ev.event_id,
                  ev.event_type, processed_,         now_utc()};
    auto res = checkpoints_->save(cp);
    return res ? caf::error{} : std::move(res.error());
  };
  if (!detail::wants(subscribed_to(), ev.event_type))
    return save();
  const auto& policy = tracker_.policy();
  std::mt19937_64 rng{std::random_device{}()};
  for (uint32_t attempt = 1;; ++attempt) {
    auto err = detail::call_handler([&] {
      return handle(ev);
    });
    if (!err) {
      ++processed_;
      return save();
    }
    auto c = tracker_.classify(err);
    bool retrying = policy.strategy == error_strategy::retry_then_continue
                    || policy.strategy == error_strategy::retry_then_dlq;
    if (retrying && attempt <= policy.retry.max_retries
        && (c.retryable || !policy.retry_only_retryable)) {
      std::this_thread::sleep_for(
        backoff_delay(policy.retry, attempt - 1, rng));
      continue;
    }
    error_info info{
      ev.event_id, ev.event_type, ev.global_position, describe(err), c,
      attempt,     false,         now_utc()};
    if (policy.strategy == error_strategy::retry_then_dlq
        || policy.strategy == error_strategy::dlq_only) {
      auto added = dead_letters_->add(
        detail::make_dead_letter(name(), ev, err, c, attempt));
      if (!added)
        return std::move(added.error());
      info.sent_to_dlq = true;
    }
    tracker_.record(info);
    if (policy.strategy == error_strategy::stop || !tracker_.should_continue())
      return caf::make_error(projections_errc::projection_stopped,
                             name() + " stopped at event "
                               + std::to_string(ev.global_position) + ": "
                               + describe(err));
    return save();
  }
}

caf::expected<int64_t>
checkpoint_tracking_projection::catch_up(event_store& store, size_t page_size) {
  auto position = checkpoint_position();
  if (!position)
    return std::move(position.error());
  read_all_options opts;
  opts.after_position = *position;
  opts.max_count = page_size;
  opts.filter.event_types = subscribed_to();
  for (;;) {
    auto page = store.read_all(opts);
    if (!page)
      return std::move(page.error());
    for (const auto& ev : page->events)
      if (auto err = process(ev))
        return err;
    if (page->next_position > opts.after_position) {
      // Filtered pages can end past the last event they returned.
      auto cp = checkpoints_->load(name());
      if (!cp)
        return std::move(cp.error());
      if (!*cp || (*cp)->position < page->next_position) {
        checkpoint mark{name(), page->next_position, {},
                        {},     processed_,          now_utc()};
        if (*cp) {
          mark.event_id = (*cp)->event_id;
          mark.event_type = (*cp)->event_type;
        }
        if (auto res = checkpoints_->save(mark); !res)
          return std::move(res.error());
      }
    }
    opts.after_position = page->next_position;
    if (page->end_of_feed)
      return opts.after_position;
  }
}

caf::error checkpoint_tracking_projection::reset() {
  if (auto err = clear())
    return err;
  processed_ = 0;
  auto res = checkpoints_->reset(name());
  return res ? caf::error{} : std::move(res.error());
}

caf::error checkpoint_tracking_projection::clear() {
  return caf::none;
}

error_stats checkpoint_tracking_projection::errors() const {
  return tracker_.stats(now_utc());
}

// -- level 3 ------------------------------------------------------------------

declarative_projection::declarative_projection(
  std::string name, std::shared_ptr<const event_registry> registry,
  checkpoint_store_ptr checkpoints, dead_letter_store_ptr dead_letters,
  error_policy policy)
  : checkpoint_tracking_projection(std::move(checkpoints),
                                   std::move(dead_letters), std::move(policy)),
    name_(std::move(name)), registry_(std::move(registry)) {
  // nop
}

std::string declarative_projection::name() const {
  return name_;
}

std::vector<std::string> declarative_projection::subscribed_to() const {
  std::vector<std::string> result;
  for (const auto& h : handlers_)
    result.push_back(h.event_type);
  return result;
}

const event_registry* declarative_projection::type_registry() const {
  return registry_.get();
}

caf::error declarative_projection::handle(const recorded_event& ev) {
  for (const auto& h : handlers_)
    if (h.event_type == ev.event_type)
      return h.fn(*registry_, ev);
  // The registry may upcast a stored type into a handled one.
  auto decoded = registry_->decode(ev);
  if (decoded)
    for (const auto& h : handlers_)
      if (h.event_type == decoded->event_type)
        return h.fn(*registry_, ev);
  return caf::none;
}

// -- transactional ------------------------------------------------------------

transactional_projection::transactional_projection(read_model_db_ptr db)
  : db_(std::move(db)) {
  // nop
}

caf::error transactional_projection::reset(sql_transaction&) {
  return caf::none;
}

caf::error transactional_projection::handle(const recorded_event& ev) {
  return db_->transact([&](sql_transaction& tx) {
    return handle(tx, ev);
  });
}

caf::error transactional_projection::reset() {
  // The read model and its checkpoint go together.
  return db_->transact([&](sql_transaction& tx) -> caf::error {
    if (auto err = reset(tx))
      return err;
    auto sql = db_->dialect() == "sqlite" ? "DELETE FROM projection_checkpoints"
                                            " WHERE projection_name = ?1"
                                          : "DELETE FROM projection_checkpoints"
                                            " WHERE projection_name = $1";
    return tx.exec(sql, {sql_value{name()}});
  });
}

std::vector<std::string> transactional_projection::tables() const {
  return {};
}

caf::error transactional_projection::create_tables(sql_transaction&) {
  return caf::none;
}

std::shared_ptr<transactional_projection>
transactional_projection::with_db(read_model_db_ptr) const {
  return nullptr;
}

bool transactional_projection::blocking() const {
  return true;
}

} // namespace es
