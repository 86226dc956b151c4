#include "es/projections/projection_actor.hpp"

#include "es/projections/type_ids.hpp"
#include "es/store/errors.hpp"
#include "es/store/log.hpp"
#include "es/store/tracing.hpp"
#include "es/supervision/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "detail.hpp"

#include <chrono>
#include <deque>
#include <random>
#include <set>

namespace es {

namespace {

using ack_promise = caf::typed_response_promise<uint64_t, uint64_t>;

struct pending_ack {
  int64_t last_position;
  uint64_t count;
  ack_promise rp;
};

struct projection_actor_state {
  static inline const char* name = "es.projection";

  projection_ptr proj;
  transactional_projection* tx_proj = nullptr;
  /// The projection's registry, if any (see `projection::type_registry`).
  const event_registry* registry = nullptr;
  /// Aggregate types whose streams it follows, learned from the events it
  /// handles (unless the filter names them).
  std::set<std::string, std::less<>> followed;
  subscription_config cfg;
  std::string checkpoint_name;
  std::vector<std::string> types;
  std::unique_ptr<error_tracker> tracker;
  std::mt19937_64 rng{std::random_device{}()};

  projection_state state = projection_state::starting;
  bool paused = false;
  /// Reading from the store until it reports the end of the feed.
  bool catching_up = true;
  int64_t position = 0;
  /// Where the last page read from the store ended.
  int64_t page_end = 0;
  int64_t saved_position = -1;
  int64_t head = 0;
  uint64_t processed = 0;
  int64_t processed_since_save = 0;
  timestamp last_processed_at{};
  std::optional<timestamp> last_event_time;
  uuid last_event_id;
  std::string last_event_type;
  /// The position of the last handled event, and the one whose id and time
  /// `last_event_id` and `last_event_time` hold: a page handled in place
  /// reads those two near its end only, and looks them up when its last
  /// handled event came earlier; `read_page` settles both before it
  /// returns, so they agree between messages.
  int64_t last_event_position = 0;
  int64_t last_details_position = 0;
  /// Rows in the last page read in place that did not end the feed (0
  /// after the feed's end or a stop): the expected size of the next page.
  size_t expected_page_rows = 0;

  std::deque<recorded_event> queue;
  std::vector<pending_ack> acks;
  /// A retry timer runs: nothing else is handled meanwhile.
  bool retry_pending = false;
  uint32_t attempt = 0;
  bool pump_scheduled = false;
  bool tick_scheduled = false;
  /// Our subscription at the bus (0 before the bus answered).
  uint64_t subscription = 0;
  /// The last page read every position (no filter at the store): missing
  /// positions in it are holes.
  bool reads_every_position = false;
  /// A hole waited for: its first and last missing position, and when it
  /// was first seen.
  int64_t hole_from = 0;
  int64_t hole_to = 0;
  /// Re-reads made for it so far: `hole_timeout` is counted in re-read
  /// intervals, so deterministic tests run on the scheduler's clock.
  int64_t hole_waits = 0;
  uint64_t holes_skipped = 0;
  uint64_t unknown_events = 0;
  /// Why the projection stopped or waits.
  std::string detail;
  /// Set when the last page ended in missing positions up to this one.
  int64_t trailing_hole_to = 0;
  /// The projection's lease while this instance runs it.
  projection_lease_ptr lease;
  /// The stored checkpoint's position as this instance last read or wrote
  /// it: what every checkpoint write expects to find.
  int64_t stored_position = 0;

  ~projection_actor_state() {
    if (cfg.bus && subscription != 0)
      caf::anon_send(cfg.bus, caf::unsubscribe_atom_v, subscription);
  }
};

/// The projection actor as implemented: its protocol and the timers and
/// pumps it sends itself.
using projection_impl_actor = projection_actor_handle::extend<
  caf::reacts_to<lease_atom>, caf::reacts_to<pump_atom>,
  caf::reacts_to<caf::tick_atom>, caf::reacts_to<retry_atom>>;

using projection_actor
  = projection_impl_actor::stateful_base<projection_actor_state>;

void pump(projection_actor* self);

/// What the projection does with an event of the feed.
enum class disposition {
  /// Its handler runs.
  handle,
  /// Not its business (type, filter or partition).
  skip,
  /// In a stream it follows, of a type its registry does not know: fails
  /// under the error policy instead of being skipped silently.
  unknown,
};

disposition classify(projection_actor_state& st, const event_view& ev) {
  // Each field is read once and only when needed: on a view into a store's
  // row buffer every read is a call into the database library.
  if (!st.cfg.filter.empty() && !st.cfg.filter.matches(ev))
    return disposition::skip;
  if (st.cfg.partition.count > 1 && !st.cfg.partition.owns(ev.aggregate_id()))
    return disposition::skip;
  auto type = ev.event_type();
  // Stream control events (deletions, truncations) reach only projections
  // that name them.
  if (is_stream_control_type(type))
    return detail::wants(st.types, type) ? disposition::handle
                                         : disposition::skip;
  if (detail::wants(st.types, type)) {
    if (st.registry != nullptr && st.cfg.filter.aggregate_types.empty()) {
      auto agg = ev.aggregate_type();
      if (st.followed.find(agg) == st.followed.end())
        st.followed.emplace(agg);
    }
    return disposition::handle;
  }
  if (st.registry != nullptr
      && (!st.cfg.filter.aggregate_types.empty()
          || st.followed.find(ev.aggregate_type()) != st.followed.end())
      && !st.registry->contains(type, ev.event_version()))
    return disposition::unknown;
  return disposition::skip;
}

disposition classify(projection_actor_state& st, const recorded_event& ev) {
  return classify(st, recorded_event_view{ev});
}

bool matches(projection_actor_state& st, const recorded_event& ev) {
  return classify(st, ev) != disposition::skip;
}

/// `err` naming the event (`in_event_context`), copying a view only then.
caf::error in_context(const caf::error& err, const event_view& ev) {
  if (!err)
    return err;
  if (const auto* owned = ev.owned())
    return in_event_context(err, *owned);
  return in_event_context(err, ev.to_event());
}

/// The error an event of an unknown type fails with.
caf::error unknown_type_error(const event_view& ev) {
  return in_context(
    make_store_error(store_errc::unknown_event_type,
                     "the registry knows no type "
                       + std::string{ev.event_type()} + " v"
                       + std::to_string(ev.event_version())
                       + " in a stream this projection follows"),
    ev);
}

/// Runs the projection's handler for `ev`, or fails it as unknown (`d`, its
/// disposition); errors name the event.
caf::error apply(projection_actor_state& st, const event_view& ev,
                 disposition d, const std::function<caf::error()>& handler) {
  // A span per handled event, the child of the command that wrote it when
  // its metadata carries the trace.
  tracing::span sp;
  if (tracing::enabled()) {
    sp = tracing::span{"eventsource.projection.handle",
                       tracing::span_kind::consumer,
                       tracing::extract(ev.metadata())};
    sp.set_attribute("eventsource.projection", st.checkpoint_name);
    sp.set_attribute("eventsource.event.type", std::string{ev.event_type()});
    sp.set_attribute("eventsource.event.id", ev.event_id().to_string());
    sp.set_attribute("eventsource.event.position", ev.global_position());
  }
  if (d == disposition::unknown) {
    auto err = unknown_type_error(ev);
    sp.set_error(describe(err));
    return err;
  }
  auto err = in_context(detail::call_handler(handler), ev);
  if (err)
    sp.set_error(describe(err));
  return err;
}

caf::error apply(projection_actor_state& st, const recorded_event& ev,
                 const std::function<caf::error()>& handler) {
  recorded_event_view view{ev};
  return apply(st, view, classify(st, view), handler);
}

/// The context of the projection's log records.
log_context context_of(const projection_actor_state& st,
                       const recorded_event* ev = nullptr) {
  log_context ctx;
  ctx.module = "projections";
  ctx.projection = st.checkpoint_name;
  ctx.position = st.position;
  ctx.lag = std::max<int64_t>(st.head - st.position, 0);
  if (ev != nullptr) {
    ctx.event_id = ev->event_id.to_string();
    ctx.aggregate_id = ev->aggregate_id.to_string();
  }
  return ctx;
}

/// Ends the actor with `err`: a supervisor restarts it from the checkpoint.
void fail(projection_actor* self, caf::error err) {
  log(log_level::error,
      "projection " + self->state.checkpoint_name + " stops: " + describe(err),
      context_of(self->state));
  self->state.detail = describe(err);
  self->state.state = projection_state::error;
  for (auto& a : self->state.acks)
    a.rp.deliver(a.count, uint64_t{0});
  self->state.acks.clear();
  self->quit(std::move(err));
}

/// Stops applying events because another instance took over (the lease
/// was lost, or the checkpoint moved under this one): drops what is queued
/// and waits as a standby, or stops for good with `ownership::exclusive`.
void lose_ownership(projection_actor* self, const caf::error& err) {
  auto& st = self->state;
  if (st.cfg.owner == ownership::exclusive) {
    fail(self, err);
    return;
  }
  log(log_level::warning,
      "projection " + st.checkpoint_name
        + " stops applying and waits: " + describe(err),
      context_of(st));
  st.lease.reset();
  st.queue.clear();
  for (auto& a : st.acks)
    a.rp.deliver(a.count, uint64_t{0});
  st.acks.clear();
  st.catching_up = true;
  st.attempt = 0;
  st.state = projection_state::standby;
  st.detail = "standby: " + describe(err);
  // Without leases no timer runs yet: come back after the interval and
  // start again from the stored checkpoint.
  if (st.cfg.owner == ownership::none)
    self->delayed_send(self, st.cfg.lease_retry_interval, lease_atom_v);
}

caf::error save_checkpoint(projection_actor* self) {
  auto& st = self->state;
  if (st.position <= st.saved_position || st.tx_proj != nullptr
      || st.state == projection_state::standby)
    return caf::none;
  checkpoint cp{st.checkpoint_name,
                st.position,
                st.last_event_id,
                st.last_event_type,
                static_cast<int64_t>(st.processed),
                now_utc()};
  auto res = st.cfg.checkpoints->save_if(cp, st.stored_position);
  if (!res) {
    if (has_code(res.error(), store_errc::checkpoint_conflict)) {
      lose_ownership(self, res.error());
      return caf::none;
    }
    return std::move(res.error());
  }
  st.saved_position = res->position;
  st.stored_position = res->position;
  st.processed_since_save = 0;
  return caf::none;
}

/// Answers the bus for deliveries whose events are all accounted for (all of
/// them once the projection stopped on an error: it will not handle them).
void release_acks(projection_actor* self) {
  auto& st = self->state;
  if (st.state == projection_state::error) {
    for (auto& a : st.acks)
      a.rp.deliver(a.count, uint64_t{0});
    st.acks.clear();
    return;
  }
  auto i = st.acks.begin();
  while (i != st.acks.end() && i->last_position <= st.position) {
    i->rp.deliver(i->count, uint64_t{0});
    ++i;
  }
  st.acks.erase(st.acks.begin(), i);
}

/// Moves the projection past `ev`. With `stamp`, a handled event also sets
/// the time of the last processing; pages handled in place set it once,
/// after the page (`read_page`), sparing a clock read per event. Without
/// `details`, the handled event's id and time are not read (each read is
/// a call into the database library on a store's row): `read_page` then
/// reads them later if the event stays the last one handled.
void advance(projection_actor* self, const event_view& ev, bool handled,
             bool stamp = true, bool details = true) {
  auto& st = self->state;
  st.position = ev.global_position();
  if (handled) {
    ++st.processed;
    ++st.processed_since_save;
    if (stamp)
      st.last_processed_at = now_utc();
    st.last_event_position = st.position;
    if (details) {
      st.last_event_time = ev.occurred_at();
      st.last_event_id = ev.event_id();
      st.last_details_position = st.position;
    }
    // Consecutive events mostly share a type: compare before copying.
    auto type = ev.event_type();
    if (type != st.last_event_type)
      st.last_event_type.assign(type.data(), type.size());
  }
  st.head = std::max(st.head, st.position);
}

void advance(projection_actor* self, const recorded_event& ev, bool handled) {
  advance(self, recorded_event_view{ev}, handled);
}

/// Whether a failure lies with the platform (a full disk, a database that
/// cannot be reached or is damaged) rather than with the event: such
/// events are never dead-lettered or skipped. (Transient errors, a busy
/// database or a timeout, go through the policy's retries as before.)
bool is_environment_failure(const error_classification& c) {
  return c.category == error_category::infrastructure;
}

/// What the policy says after a final failure: record it (dead-letter if
/// the strategy says so) and whether to go on.
bool finish_failure(projection_actor* self, const recorded_event& ev,
                    const caf::error& err, const error_classification& c,
                    uint32_t attempts, sql_transaction* tx) {
  auto& st = self->state;
  auto strategy = st.tracker->policy().strategy;
  error_info info{
    ev.event_id, ev.event_type, ev.global_position, describe(err), c,
    attempts,    false,         now_utc()};
  if (is_environment_failure(c)) {
    // Not the event's fault: it stays unapplied (no dead letter, no
    // skip), and the projection stops until the cause is fixed.
    info.stopped = true;
    st.tracker->record(info);
    st.state = projection_state::error;
    st.detail = "stopped on an infrastructure error, nothing skipped or "
                "dead-lettered: "
                + describe(err);
    log(log_level::error, "projection " + st.checkpoint_name + " " + st.detail,
        context_of(st, &ev));
    return false;
  }
  if (strategy == error_strategy::retry_then_dlq
      || strategy == error_strategy::dlq_only) {
    auto dl
      = detail::make_dead_letter(st.checkpoint_name, ev, err, c, attempts);
    auto added = tx != nullptr ? st.tx_proj->db().add_dead_letter(*tx, dl)
                               : st.cfg.dead_letters->add(dl);
    if (!added) {
      fail(self, std::move(added.error()));
      return false;
    }
    info.sent_to_dlq = true;
  }
  info.stopped = strategy == error_strategy::stop;
  st.tracker->record(info);
  if (strategy == error_strategy::stop || !st.tracker->should_continue()) {
    st.state = projection_state::error;
    st.detail = describe(err);
    log(log_level::error,
        "projection " + st.checkpoint_name + " stopped: " + describe(err),
        context_of(st, &ev));
    return false;
  }
  return true;
}

/// Whether to retry after `err` on attempt `attempt` (from 1).
bool should_retry(const projection_actor_state& st,
                  const error_classification& c, uint32_t attempt) {
  const auto& policy = st.tracker->policy();
  bool retrying = policy.strategy == error_strategy::retry_then_continue
                  || policy.strategy == error_strategy::retry_then_dlq;
  return retrying && attempt <= policy.retry.max_retries
         && (c.retryable || !policy.retry_only_retryable);
}

void schedule_retry(projection_actor* self) {
  auto& st = self->state;
  st.retry_pending = true;
  auto delay
    = backoff_delay(st.tracker->policy().retry, st.attempt - 1, st.rng);
  self->delayed_send(self, delay, retry_atom_v);
}

/// Applies the policy to `err`, the failure of the handler for `ev` (the
/// front of the queue): schedules a retry (returns false; `ev` stays at the
/// front), or records the failure for good and moves past `ev` (returns
/// whether to go on).
bool settle_failure(projection_actor* self, const recorded_event& ev,
                    const caf::error& err) {
  auto& st = self->state;
  auto c = st.tracker->classify(err);
  if (should_retry(st, c, st.attempt)) {
    schedule_retry(self);
    return false;
  }
  auto attempts = st.attempt;
  st.attempt = 0;
  if (has_code(err, store_errc::unknown_event_type)
      && classify(st, ev) == disposition::unknown)
    ++st.unknown_events;
  if (!finish_failure(self, ev, err, c, attempts, nullptr))
    return false;
  advance(self, ev, false);
  return true;
}

/// Handles the front event; returns false to stop pumping.
bool handle_front(projection_actor* self) {
  auto& st = self->state;
  const auto& ev = st.queue.front();
  recorded_event_view view{ev};
  ++st.attempt;
  auto err = apply(st, view, classify(st, view), [&] {
    return st.proj->handle_view(view);
  });
  if (!err) {
    advance(self, view, true);
    st.attempt = 0;
    return true;
  }
  return settle_failure(self, ev, err);
}

/// The longest run of consecutive queued events, in position order, that
/// one transaction handles (the queue does not change until it ended).
std::vector<const recorded_event*> next_run(const projection_actor_state& st) {
  std::vector<const recorded_event*> run;
  auto limit = st.cfg.batch_size > 0 ? st.cfg.batch_size : st.cfg.page_size;
  int64_t expected = st.position + 1;
  for (const auto& ev : st.queue) {
    if (ev.global_position != expected || run.size() >= limit)
      break;
    run.push_back(&ev);
    ++expected;
  }
  return run;
}

/// What one transaction over a run of events did (`apply_batch`).
struct batch_outcome {
  /// The transaction failed: nothing of the batch took effect.
  caf::error err;
  /// A handler failed in a run without savepoints; the transaction was
  /// rolled back, and the run must go again with savepoints.
  bool needs_savepoints = false;
  /// Events of the run the transaction covered, from the front, and how
  /// many of them the projection handled.
  size_t consumed = 0;
  uint64_t handled = 0;
  /// Events of the covered ones whose handler failed for good (with the
  /// policy's verdict applied: dead-lettered or skipped), and how many of
  /// those had a type the projection does not know.
  std::vector<error_info> failures;
  uint64_t unknown_types = 0;
  /// The policy stops the projection after the last failure.
  bool stop = false;
  /// A handler failed with an error worth retrying: the transaction covers
  /// the events before it, and that event goes again after a backoff.
  caf::error retry;
};

/// The body of `apply_batch`'s transaction: handles `run` in `tx`, then
/// writes the checkpoint after the last event covered. Returns the error
/// that rolls the transaction back.
caf::error handle_run(projection_actor_state& st,
                      const std::vector<const recorded_event*>& run,
                      bool savepoints, sql_transaction& tx,
                      batch_outcome& out) {
  // The database may run the body more than once (a busy retry).
  out = batch_outcome{};
  auto& db = st.tx_proj->db();
  for (const auto* evp : run) {
    const auto& ev = *evp;
    if (!matches(st, ev)) {
      ++out.consumed;
      continue;
    }
    if (savepoints)
      if (auto e = tx.exec("SAVEPOINT es_event"))
        return e;
    auto herr = apply(st, ev, [&] {
      return st.tx_proj->handle(tx, ev);
    });
    if (herr && !savepoints) {
      out.needs_savepoints = true;
      return herr;
    }
    if (herr) {
      if (auto e = tx.exec("ROLLBACK TO SAVEPOINT es_event"))
        return e;
      auto c = st.tracker->classify(herr);
      // The environment failed, not the event: the whole batch waits
      // (retried, then the actor stops), nothing is dead-lettered.
      if (is_environment_failure(c))
        return herr;
      if (should_retry(st, c, st.attempt + 1)) {
        // Commit what came before; retry this event later.
        out.retry = herr;
        break;
      }
      auto strategy = st.tracker->policy().strategy;
      error_info info{
        ev.event_id,    ev.event_type, ev.global_position, describe(herr), c,
        st.attempt + 1, false,         now_utc()};
      if (strategy == error_strategy::retry_then_dlq
          || strategy == error_strategy::dlq_only) {
        auto added = db.add_dead_letter(
          tx, detail::make_dead_letter(st.checkpoint_name, ev, herr, c,
                                       st.attempt + 1));
        if (!added)
          return std::move(added.error());
        info.sent_to_dlq = true;
      }
      if (has_code(herr, store_errc::unknown_event_type))
        ++out.unknown_types;
      out.failures.push_back(std::move(info));
      if (strategy == error_strategy::stop) {
        out.stop = true;
        break;
      }
    } else {
      ++out.handled;
    }
    if (savepoints)
      if (auto e = tx.exec("RELEASE SAVEPOINT es_event"))
        return e;
    ++out.consumed;
  }
  if (out.consumed == 0)
    return caf::none;
  const auto& last = *run[out.consumed - 1];
  checkpoint cp{st.checkpoint_name,
                last.global_position,
                last.event_id,
                last.event_type,
                static_cast<int64_t>(st.processed + out.handled),
                now_utc()};
  auto saved = db.save_checkpoint(tx, cp, st.stored_position);
  return saved ? caf::error{} : std::move(saved.error());
}

/// Handles `run` in one transaction of the projection's database together
/// with the checkpoint and any dead letters. Changes nothing in `st`.
batch_outcome apply_batch(projection_actor_state& st,
                          const std::vector<const recorded_event*>& run,
                          bool savepoints) {
  batch_outcome out;
  auto err = st.tx_proj->db().transact([&](sql_transaction& tx) {
    return handle_run(st, run, savepoints, tx, out);
  });
  out.err = std::move(err);
  return out;
}

/// Moves the actor past what a committed (or failed) batch covered and
/// applies the policy's verdicts. Returns false to stop pumping.
bool settle_batch(projection_actor* self, batch_outcome& out) {
  auto& st = self->state;
  if (out.err && has_code(out.err, store_errc::checkpoint_conflict)) {
    // Another instance applied these positions: nothing of the batch took
    // effect, and this instance must not go on.
    lose_ownership(self, out.err);
    return false;
  }
  if (out.err) {
    // Nothing of the batch took effect.
    auto c = st.tracker->classify(out.err);
    ++st.attempt;
    if (should_retry(st, c, st.attempt)) {
      schedule_retry(self);
      return false;
    }
    fail(self, std::move(out.err));
    return false;
  }
  st.unknown_events += out.unknown_types;
  for (const auto& info : out.failures)
    st.tracker->record(info);
  for (size_t i = 0; i < out.consumed; ++i) {
    const auto& ev = st.queue.front();
    bool failed_here = false;
    for (const auto& info : out.failures)
      failed_here |= info.global_position == ev.global_position;
    advance(self, ev, matches(st, ev) && !failed_here);
    st.queue.pop_front();
  }
  if (out.consumed > 0) {
    st.saved_position = st.position;
    st.stored_position = st.position;
  }
  if (out.stop || !st.tracker->should_continue()) {
    st.state = projection_state::error;
    if (!out.failures.empty())
      st.detail = out.failures.back().message;
    return false;
  }
  if (out.retry) {
    ++st.attempt;
    schedule_retry(self);
    return false;
  }
  st.attempt = 0;
  return true;
}

/// Handles the matching events at the front of the queue in one
/// transaction with the checkpoint. The run first goes without savepoints
/// (one statement less per event on each side of the handler); when a
/// handler fails, that transaction is rolled back and the run goes again
/// with a savepoint around each event, so the failing event's writes alone
/// are undone. Returns false to stop pumping.
bool handle_front_transactional(projection_actor* self) {
  auto& st = self->state;
  auto run = next_run(st);
  // The caller handles holes first; an empty run would make no progress.
  if (run.empty())
    return false;
  auto out = apply_batch(st, run, false);
  if (out.needs_savepoints)
    out = apply_batch(st, run, true);
  return settle_batch(self, out);
}

/// Whether catch-up pages are handled as the store reads them, without
/// owning copies (`event_store::visit_all`): not for transactional
/// projections (their runs span events) nor with a checkpoint per event.
/// (Pages are only read once the queue is empty.)
bool handles_in_place(const projection_actor_state& st) {
  return st.tx_proj == nullptr
         && st.cfg.checkpointing != checkpoint_mode::every_event;
}

/// A view of a row that reads its position once, and its type at most
/// once: the actor and the handler ask for them several times, and on a
/// store's row each read is a call into the database library.
class memo_view final : public event_view {
public:
  explicit memo_view(const event_view& ev)
    : ev_(ev), position_(ev.global_position()) {
    // nop
  }

  int64_t global_position() const override {
    return position_;
  }
  uuid event_id() const override {
    return ev_.event_id();
  }
  std::string_view event_type() const override {
    if (!type_)
      type_ = ev_.event_type();
    return *type_;
  }
  int32_t event_version() const override {
    return ev_.event_version();
  }
  std::string_view aggregate_type() const override {
    return ev_.aggregate_type();
  }
  uuid aggregate_id() const override {
    return ev_.aggregate_id();
  }
  int64_t aggregate_version() const override {
    return ev_.aggregate_version();
  }
  std::optional<uuid> tenant_id() const override {
    return ev_.tenant_id();
  }
  timestamp occurred_at() const override {
    return ev_.occurred_at();
  }
  std::optional<uuid> correlation_id() const override {
    return ev_.correlation_id();
  }
  std::optional<uuid> causation_id() const override {
    return ev_.causation_id();
  }
  std::string_view actor_id() const override {
    return ev_.actor_id();
  }
  std::string_view metadata() const override {
    return ev_.metadata();
  }
  std::string_view payload() const override {
    return ev_.payload();
  }
  const recorded_event* owned() const noexcept override {
    return ev_.owned();
  }

private:
  const event_view& ev_;
  int64_t position_;
  mutable std::optional<std::string_view> type_;
};

/// Handles `ev` while the store reads it, as the pump would from the queue.
/// Returns false when the queue's rules must decide instead: a missing
/// position when `reads_every_position` (a hole, unless the store's gaps
/// are final), or a handler that failed (retry, dead letter, stop). Such an
/// event is copied to the queue, as the page's last, and a failed handler
/// counts as its first attempt. `details`: whether a handled event's id
/// and time are read now (see `advance`).
bool handle_in_place(projection_actor* self, const event_view& ev,
                     bool reads_every_position, bool details) {
  auto& st = self->state;
  auto pos = ev.global_position();
  if (pos <= st.position)
    return true;
  if (pos > st.position + 1 && reads_every_position) {
    st.queue.push_back(ev.to_event());
    return false;
  }
  if (st.hole_from != 0) {
    st.hole_from = 0;
    st.detail.clear();
  }
  auto d = classify(st, ev);
  if (d == disposition::skip) {
    advance(self, ev, false);
    return true;
  }
  ++st.attempt;
  auto err = apply(st, ev, d, [&] {
    return st.proj->handle_view(ev);
  });
  if (!err) {
    advance(self, ev, true, false, details);
    st.attempt = 0;
    return true;
  }
  st.queue.push_back(ev.to_event());
  if (settle_failure(self, st.queue.front(), err))
    st.queue.pop_front();
  return false;
}

/// Rows at the end of a page handled in place whose handled events have
/// their id and time read as they pass (see `read_page`).
constexpr size_t details_tail = 16;

/// Reads the id and time of the last handled event when its page skipped
/// them (see `advance`): one event, read by its position. If the event is
/// gone (erased meanwhile) or the store fails, both are left empty rather
/// than naming another event; a failing store fails the next read.
void settle_details(projection_actor* self) {
  auto& st = self->state;
  auto pos = st.last_event_position;
  if (pos == st.last_details_position)
    return;
  st.last_details_position = pos;
  read_all_options opts;
  opts.after_position = pos - 1;
  opts.max_count = 1;
  auto page = st.cfg.store->read_all(opts);
  if (page && !page->events.empty()
      && page->events.front().global_position == pos) {
    st.last_event_id = page->events.front().event_id;
    st.last_event_time = page->events.front().occurred_at;
    return;
  }
  st.last_event_id = uuid{};
  st.last_event_time.reset();
}

/// Reads the next page from the store: into the queue, or handled as it is
/// read (`handles_in_place`). Returns false when the feed is exhausted (or
/// on failure, after ending the actor).
bool read_page(projection_actor* self) {
  auto& st = self->state;
  read_all_options opts;
  opts.after_position = st.position;
  opts.max_count = st.cfg.page_size;
  // A transactional projection needs every position in order (its runs
  // are consecutive); others can let the store filter.
  // With a registry, events of unknown types must arrive too: the store
  // filters by aggregate type and tenant only.
  if (st.tx_proj == nullptr) {
    opts.filter = st.cfg.filter;
    if (!st.types.empty() && opts.filter.event_types.empty()
        && st.registry == nullptr)
      opts.filter.event_types = st.types;
  }
  int64_t last = st.position;
  size_t seen = 0;
  bool stopped = false;
  bool in_place = handles_in_place(st);
  // Only the last handled event's id and time are kept, and reading them
  // costs two calls into the database per row. In a page expected to be as
  // long as the last one, only its last rows read them; if the page ends
  // sooner, or its last handled event came before those rows, they are
  // looked up once after the page (`settle_details`).
  auto expected = st.expected_page_rows;
  auto visit = [&](const event_view& ev) {
    memo_view row{ev};
    ++seen;
    last = row.global_position();
    bool details = expected <= details_tail || seen + details_tail > expected;
    stopped = !handle_in_place(self, row, opts.filter.empty(), details);
    return !stopped;
  };
  auto processed_before = st.processed;
  auto page = in_place ? st.cfg.store->visit_all(opts, visit)
                       : st.cfg.store->read_all(opts);
  if (st.processed != processed_before)
    st.last_processed_at = now_utc();
  if (!page) {
    fail(self, std::move(page.error()));
    return false;
  }
  if (in_place) {
    st.expected_page_rows = stopped || page->end_of_feed ? 0 : seen;
    settle_details(self);
  } else {
    for (auto& ev : page->events) {
      last = ev.global_position;
      st.queue.push_back(std::move(ev));
    }
    seen = page->events.size();
  }
  // Positions missing from a feed whose gaps are final were never written:
  // nothing to wait for.
  st.reads_every_position = opts.filter.empty() && !page->gaps_final;
  st.page_end = page->next_position;
  if (st.reads_every_position && !stopped && page->next_position > last
      && seen < opts.max_count) {
    // The page examined positions up to `next_position` and found none
    // after `last`: those positions are missing (a hole at the head).
    st.page_end = last;
    st.trailing_hole_to = page->next_position;
  } else {
    st.trailing_hole_to = 0;
  }
  if (seen == 0 && st.page_end > st.position) {
    // Filtered past events that do not concern this projection.
    st.position = st.page_end;
    st.head = std::max(st.head, st.position);
  }
  if (page->end_of_feed) {
    st.head = std::max(st.head, page->next_position);
    if (seen == 0 && st.trailing_hole_to == 0) {
      st.catching_up = false;
      return false;
    }
  }
  return true;
}

/// Deals with positions `from` to `to` missing from the feed: waits for
/// them (reading the store again every `hole_retry_interval`) until
/// `hole_timeout`, then stops or skips them as `on_hole` says. Returns
/// whether the projection may go on now (the hole was skipped).
bool on_hole(projection_actor* self, int64_t from, int64_t to) {
  auto& st = self->state;
  auto range = std::to_string(from)
               + (to > from ? " to " + std::to_string(to) : std::string{});
  if (st.hole_from != from) {
    st.hole_from = from;
    st.hole_to = to;
    st.hole_waits = 0;
    log(log_level::warning,
        "projection " + st.checkpoint_name + ": position " + range
          + " missing from the feed; waiting for " + "it before deciding",
        context_of(st));
  }
  auto interval = std::max(st.cfg.hole_retry_interval, caf::timespan{1});
  if (st.hole_waits * interval.count() < st.cfg.hole_timeout.count()) {
    ++st.hole_waits;
    st.detail = "waiting for position " + range + ", missing from the feed";
    // Read the store again later (nothing else happens meanwhile).
    st.queue.clear();
    st.page_end = st.position;
    st.catching_up = true;
    st.retry_pending = true;
    self->delayed_send(self, st.cfg.hole_retry_interval, retry_atom_v);
    return false;
  }
  st.hole_from = 0;
  if (st.cfg.on_hole == hole_policy::skip) {
    ++st.holes_skipped;
    st.detail = "skipped position " + range + ", missing from the feed";
    log(log_level::warning,
        "projection " + st.checkpoint_name + ": " + st.detail, context_of(st));
    st.position = to;
    st.head = std::max(st.head, to);
    return true;
  }
  st.state = projection_state::error;
  st.detail = "stopped: position " + range
              + " is missing from the feed (damaged or partly restored "
                "log?); repair the log, or skip it with hole_policy::skip";
  log(log_level::error, "projection " + st.checkpoint_name + " " + st.detail,
      context_of(st));
  return false;
}

void schedule_tick(projection_actor* self) {
  auto& st = self->state;
  if (st.tick_scheduled)
    return;
  caf::timespan delay
    = st.cfg.bus
        ? std::min(st.cfg.store_check_interval, st.cfg.checkpoint_interval)
        : std::min(st.cfg.poll_interval, st.cfg.checkpoint_interval);
  st.tick_scheduled = true;
  self->delayed_send(self, delay, caf::tick_atom_v);
}

void request_pump(projection_actor* self);

void pump(projection_actor* self) {
  auto& st = self->state;
  // One page per message: between pages the actor answers status, pause
  // and stop requests, and shares its thread with other actors.
  bool page_read = false;
  bool yielded = false;
  if (st.state == projection_state::standby)
    return;
  while (!st.paused && !st.retry_pending && st.state != projection_state::error
         && st.state != projection_state::stopped
         && st.state != projection_state::standby) {
    if (st.queue.empty()) {
      if (st.trailing_hole_to > st.position) {
        auto to = st.trailing_hole_to;
        st.trailing_hole_to = 0;
        if (!on_hole(self, st.position + 1, to))
          break;
        continue;
      }
      // A filtered page may end past its last event: everything up to its
      // end is accounted for once its events are.
      if (st.catching_up && st.page_end > st.position)
        st.position = st.page_end;
      if (!st.catching_up)
        break;
      st.state = projection_state::catching_up;
      if (page_read) {
        yielded = true;
        break;
      }
      if (!read_page(self))
        break;
      page_read = true;
      continue;
    }
    const auto& ev = st.queue.front();
    if (ev.global_position <= st.position) {
      st.queue.pop_front();
      continue;
    }
    if (ev.global_position > st.position + 1 && !st.catching_up) {
      // A gap in the live stream: read it from the store first.
      st.queue.clear();
      st.catching_up = true;
      continue;
    }
    if (ev.global_position > st.position + 1 && st.reads_every_position) {
      // The store itself lacks these positions.
      if (!on_hole(self, st.position + 1, ev.global_position - 1))
        break;
      continue;
    }
    if (st.hole_from != 0) {
      st.hole_from = 0;
      st.detail.clear();
    }
    if (ev.global_position > st.position + 1) {
      // Positions the store says were never written (or filtered away):
      // nothing of them to apply, and a run starts at the event.
      st.position = ev.global_position - 1;
    }
    if (st.tx_proj != nullptr) {
      if (!handle_front_transactional(self))
        break;
    } else {
      if (classify(st, ev) == disposition::skip) {
        advance(self, ev, false);
        st.queue.pop_front();
      } else {
        if (!handle_front(self))
          break;
        st.queue.pop_front();
      }
      if (st.cfg.checkpointing == checkpoint_mode::every_event)
        if (auto err = save_checkpoint(self)) {
          fail(self, std::move(err));
          return;
        }
    }
    if (st.queue.empty()
        && st.cfg.checkpointing == checkpoint_mode::every_batch)
      if (auto err = save_checkpoint(self)) {
        fail(self, std::move(err));
        return;
      }
  }
  if (st.state == projection_state::error
      || st.state == projection_state::standby) {
    release_acks(self);
    return;
  }
  if (!st.paused && !st.retry_pending && st.queue.empty() && !st.catching_up)
    st.state = projection_state::live;
  if (st.cfg.checkpointing == checkpoint_mode::every_batch && !st.retry_pending)
    if (auto err = save_checkpoint(self)) {
      fail(self, std::move(err));
      return;
    }
  release_acks(self);
  if (yielded) {
    request_pump(self);
    return;
  }
  schedule_tick(self);
}

/// Queues a pump after the messages already waiting, so a burst of
/// deliveries is handled together.
void request_pump(projection_actor* self) {
  if (self->state.pump_scheduled)
    return;
  self->state.pump_scheduled = true;
  self->send(self, pump_atom_v);
}

projection_status make_status(projection_actor* self) {
  auto& st = self->state;
  projection_status s;
  s.name = st.checkpoint_name;
  s.state = st.paused ? projection_state::paused : st.state;
  s.position = st.position;
  // A standby reports how far the instance holding the lease got.
  if (st.state == projection_state::standby)
    if (auto cp = st.cfg.checkpoints->load(st.checkpoint_name); cp && *cp)
      s.position = (*cp)->position;
  if (auto head = st.cfg.store->head_position())
    st.head = std::max(st.head, *head);
  s.head = st.head;
  // From the position reported (a standby's is the holder's).
  s.lag_events = std::max<int64_t>(0, st.head - s.position);
  if (s.lag_events > 0 && st.last_event_time)
    s.lag_seconds
      = std::chrono::duration<double>(now_utc() - *st.last_event_time).count();
  s.events_processed = st.processed;
  if (st.processed > 0)
    s.last_processed_at_us = st.last_processed_at.time_since_epoch().count();
  auto now = now_utc();
  s.errors = st.tracker->stats(now);
  s.health = st.tracker->health(now);
  if (st.state == projection_state::error)
    s.health.level = health_level::errors;
  s.holes_skipped = st.holes_skipped;
  s.unknown_events = st.unknown_events;
  s.detail = st.detail;
  return s;
}

caf::error start(projection_actor* self) {
  auto& st = self->state;
  // Read after taking the lease: the previous holder may have moved it.
  auto stored = st.cfg.checkpoints->load(st.checkpoint_name);
  if (!stored)
    return std::move(stored.error());
  st.stored_position = *stored ? (*stored)->position : 0;
  st.saved_position = -1;
  st.queue.clear();
  st.catching_up = true;
  st.page_end = 0;
  switch (st.cfg.start) {
    case start_from::checkpoint: {
      const auto& cp = *stored;
      st.position = 0;
      if (cp) {
        st.position = cp->position;
        st.processed = static_cast<uint64_t>(cp->events_processed);
        st.saved_position = st.position;
      }
      break;
    }
    case start_from::beginning: st.position = 0; break;
    case start_from::end: {
      auto head = st.cfg.store->head_position();
      if (!head)
        return std::move(head.error());
      st.position = *head;
      break;
    }
    case start_from::position: st.position = st.cfg.start_position; break;
  }
  st.head = st.position;
  return caf::none;
}

/// Takes the projection's lease when its ownership mode wants one.
/// Returns whether the projection may run now; otherwise it is a standby
/// (another instance holds the lease) or has ended (`ownership::exclusive`,
/// or a store that cannot lease).
bool acquire(projection_actor* self) {
  auto& st = self->state;
  if (st.cfg.owner == ownership::none || st.lease)
    return true;
  auto lease = st.cfg.checkpoints->try_lease(st.checkpoint_name);
  if (lease) {
    st.lease = std::move(*lease);
    return true;
  }
  if (has_code(lease.error(), store_errc::lease_held)
      && st.cfg.owner == ownership::standby) {
    if (st.state != projection_state::standby)
      log(log_level::info,
          "projection " + st.checkpoint_name
            + " waits as a standby: " + describe(lease.error()),
          context_of(st));
    st.state = projection_state::standby;
    st.detail = "standby: " + error_description(lease.error());
    return false;
  }
  fail(self, std::move(lease.error()));
  return false;
}

/// What an actor that ended while starting returns (it quit already).
projection_impl_actor::behavior_type ended() {
  return projection_impl_actor::behavior_type::make_empty_behavior();
}

projection_impl_actor::behavior_type projection_impl(projection_actor* self,
                                                     projection_ptr proj,
                                                     subscription_config cfg) {
  auto& st = self->state;
  st.proj = std::move(proj);
  st.tx_proj = dynamic_cast<transactional_projection*>(st.proj.get());
  st.registry = st.proj->type_registry();
  st.cfg = std::move(cfg);
  st.types = st.proj->subscribed_to();
  st.tracker
    = std::make_unique<error_tracker>(st.cfg.errors, st.cfg.classifier);
  for (const auto& [severity, fn] : st.cfg.on_severity)
    st.tracker->on_severity(severity, fn);
  for (const auto& [category, fn] : st.cfg.on_category)
    st.tracker->on_category(category, fn);
  if (st.checkpoint_name.empty())
    st.checkpoint_name = st.cfg.checkpoint_name;
  if (acquire(self)) {
    if (auto err = start(self)) {
      self->quit(std::move(err));
      return ended();
    }
    request_pump(self);
  } else if (st.state != projection_state::standby) {
    return ended();
  }
  if (st.cfg.owner != ownership::none)
    self->delayed_send(self, st.cfg.lease_retry_interval, lease_atom_v);
  if (st.cfg.bus)
    self
      ->request(st.cfg.bus, caf::infinite, caf::subscribe_atom_v,
                bus_subscriber_actor{self}, std::vector<std::string>{},
                static_cast<uint64_t>(st.cfg.max_live_queue), std::string{})
      .then(
        [self](uint64_t id) {
          self->state.subscription = id;
        },
        [self](caf::error& err) {
          // Without the bus the store still has every event.
          log(log_level::warning,
              "projection " + self->state.checkpoint_name
                + " not subscribed to the bus: " + describe(err),
              context_of(self->state));
          self->state.cfg.bus = bus_actor{};
          schedule_tick(self);
        });
  return {
    [self](lease_atom) {
      auto& st = self->state;
      if (st.lease) {
        if (auto err = st.lease->check())
          lose_ownership(self, err);
      } else if (st.state == projection_state::standby && acquire(self)) {
        log(log_level::info,
            "projection " + st.checkpoint_name
              + " took over from the previous holder",
            context_of(st));
        st.detail.clear();
        st.state = projection_state::starting;
        if (auto err = start(self)) {
          fail(self, std::move(err));
          return;
        }
        request_pump(self);
      }
      if (st.cfg.owner != ownership::none
          || st.state == projection_state::standby)
        self->delayed_send(self, st.cfg.lease_retry_interval, lease_atom_v);
    },
    [self](pump_atom) {
      self->state.pump_scheduled = false;
      pump(self);
    },
    [self](caf::tick_atom) {
      auto& st = self->state;
      st.tick_scheduled = false;
      if (auto err = save_checkpoint(self)) {
        fail(self, std::move(err));
        return;
      }
      // Following the store: look for new events. With a bus, events
      // written by other processes show only in the store's head.
      if (!st.cfg.bus && st.queue.empty())
        st.catching_up = true;
      if (st.cfg.bus && st.queue.empty() && !st.catching_up
          && st.state == projection_state::live)
        if (auto head = st.cfg.store->head_position();
            head && *head > st.position) {
          st.head = std::max(st.head, *head);
          st.catching_up = true;
        }
      pump(self);
    },
    [self](retry_atom) {
      self->state.retry_pending = false;
      pump(self);
    },
    [self](deliver_atom,
           const recorded_events& events) -> caf::result<uint64_t, uint64_t> {
      auto& st = self->state;
      auto n = static_cast<uint64_t>(events.size());
      if (events.empty())
        return {n, uint64_t{0}};
      st.head = std::max(st.head, events.back().global_position);
      if (st.state == projection_state::error
          || st.state == projection_state::standby)
        return {n, uint64_t{0}};
      if (st.catching_up
          || st.queue.size() + events.size() > st.cfg.max_live_queue) {
        // Behind: the store has these events too. Acknowledge at once so a
        // slow projection never holds back the writers.
        if (!st.catching_up) {
          st.queue.clear();
          st.catching_up = true;
          request_pump(self);
        }
        return {n, uint64_t{0}};
      }
      for (const auto& ev : events)
        st.queue.push_back(ev);
      auto rp = self->make_response_promise<uint64_t, uint64_t>();
      st.acks.push_back({events.back().global_position, n, rp});
      request_pump(self);
      return rp;
    },
    [self](status_atom) {
      return make_status(self);
    },
    [self](pause_atom) {
      self->state.paused = true;
      return true;
    },
    [self](resume_atom) {
      auto& st = self->state;
      if (!st.paused)
        return false;
      st.paused = false;
      request_pump(self);
      return true;
    },
    [self](caf::reset_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (auto err = st.proj->reset())
        return err;
      if (st.tx_proj == nullptr)
        if (auto res = st.cfg.checkpoints->reset(st.checkpoint_name); !res)
          return std::move(res.error());
      st.position = 0;
      st.page_end = 0;
      st.saved_position = -1;
      st.stored_position = 0;
      st.processed = 0;
      st.queue.clear();
      st.catching_up = true;
      st.attempt = 0;
      if (st.state == projection_state::error)
        st.state = projection_state::catching_up;
      request_pump(self);
      return true;
    },
    [self](reload_atom) -> caf::result<bool> {
      // The read model was replaced underneath (a shadow rebuild swapped
      // in): start again from the stored checkpoint, unpaused.
      auto& st = self->state;
      st.paused = false;
      st.attempt = 0;
      if (st.state == projection_state::error)
        st.state = projection_state::starting;
      if (st.state == projection_state::standby)
        return true;
      if (auto err = start(self))
        return err;
      request_pump(self);
      return true;
    },
    [self](replay_atom, const recorded_event& ev) -> caf::result<void> {
      auto err = detail::call_handler([&] {
        return self->state.proj->handle(ev);
      });
      if (err)
        return err;
      return caf::unit;
    },
  };
}

} // namespace

projection_actor_handle spawn_projection_actor(caf::actor_system& sys,
                                               projection_ptr proj,
                                               subscription_config cfg) {
  if (!cfg.store)
    return projection_actor_handle{};
  // Stores of a level-2 or transactional projection are its own.
  if (auto* tp = dynamic_cast<transactional_projection*>(proj.get())) {
    if (!cfg.checkpoints)
      cfg.checkpoints = tp->db().checkpoints();
    if (!cfg.dead_letters)
      cfg.dead_letters = tp->db().dead_letters();
  } else if (auto* cp
             = dynamic_cast<checkpoint_tracking_projection*>(proj.get())) {
    if (!cfg.checkpoints)
      cfg.checkpoints = cp->checkpoints();
    if (!cfg.dead_letters)
      cfg.dead_letters = cp->dead_letters();
  }
  if (!cfg.checkpoints)
    cfg.checkpoints = make_memory_checkpoint_store();
  if (!cfg.dead_letters)
    cfg.dead_letters = make_memory_dead_letter_store();
  if (cfg.checkpoint_name.empty()) {
    cfg.checkpoint_name = proj->name();
    if (cfg.partition.count > 1)
      cfg.checkpoint_name += "#" + std::to_string(cfg.partition.index) + "/"
                             + std::to_string(cfg.partition.count);
  }
  bool detached = cfg.detached.value_or(
    proj->blocking() || cfg.store->blocking() || cfg.checkpoints->blocking()
    || cfg.dead_letters->blocking());
  if (detached)
    return sys.spawn<caf::detached>(projection_impl, std::move(proj),
                                    std::move(cfg));
  return sys.spawn(projection_impl, std::move(proj), std::move(cfg));
}

} // namespace es
