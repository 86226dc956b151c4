// The internals of aggregate actors (es/actors/aggregate_actor.hpp):
// loading from snapshots and events, running a command, appending and
// retrying. Included by that header; not meant to be included directly.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"
#include "es/store/codec.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_cast.hpp>
#include <caf/behavior.hpp>
#include <caf/duration.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>

// Uses the options and state types that es/actors/aggregate_actor.hpp
// declares before including this file.

namespace es {

namespace detail {

/// The state schema version of `A`: `A::snapshot_schema_version` or 1.
template <class A>
constexpr int32_t state_schema_version() {
  if constexpr (requires { A::snapshot_schema_version; })
    return A::snapshot_schema_version;
  else
    return 1;
}

/// A snapshot of the aggregate's committed state, if its state type has a
/// JSON codec (`fields`).
template <class A>
std::optional<snapshot> take_snapshot(const A& agg) {
  using state_type = typename A::state_type;
  if constexpr (has_fields<state_type>) {
    auto text = to_json(agg.state());
    if (!text)
      return std::nullopt;
    return snapshot{agg.stream(), agg.version(), state_schema_version<A>(),
                    std::move(*text), now_utc()};
  } else {
    return std::nullopt;
  }
}

/// Restores `snap` into `agg` if its schema version is current and it
/// decodes. Returns whether it did.
template <class A>
bool restore_snapshot(A& agg, const snapshot& snap) {
  using state_type = typename A::state_type;
  if constexpr (has_fields<state_type>) {
    if (snap.schema_version != state_schema_version<A>() || snap.version < 1)
      return false;
    auto state = from_json<state_type>(snap.state);
    if (!state)
      return false;
    agg.restore(std::move(*state), snap.version);
    return true;
  } else {
    return false;
  }
}

/// Sends a snapshot of the aggregate to the store actor without waiting.
template <class A>
void save_snapshot(caf::event_based_actor* self, const aggregate_options& opts,
                   const A& agg) {
  auto snap = take_snapshot(agg);
  if (!snap)
    return;
  auto metrics = opts.metrics;
  self->request(opts.store, caf::infinite, snapshot_save_atom_v, *snap)
    .then(
      [metrics](bool stored) {
        if (stored)
          ++metrics->snapshots_written;
      },
      [](caf::error& err) {
        log(log_level::warning, "snapshot not saved: " + describe(err),
            es::log_context{"aggregates"});
      });
}

using done_fn = std::function<void()>;
using fail_fn = std::function<void(caf::error)>;

/// Loads the aggregate's events from `from_version` on, page by page; the
/// actor handles no other message meanwhile (`await`).
template <class A>
void recover(aggregate_actor_type<A>* self,
             std::shared_ptr<const aggregate_options> opts,
             int64_t from_version, done_fn done, fail_fn fail) {
  auto& agg = *self->state.agg;
  read_stream_options ro;
  ro.from_version = from_version;
  ro.max_count = opts->page_size;
  self
    ->request(opts->store, opts->store_timeout, read_stream_atom_v,
              agg.stream(), ro)
    .await(
      [self, opts, done, fail](stream_slice& page) {
        auto& agg = *self->state.agg;
        opts->metrics->events_replayed += page.events.size();
        if (auto err = agg.load_from_history(page.events)) {
          fail(std::move(err));
          return;
        }
        if (page.end_of_stream || page.events.empty()) {
          self->state.recovered = true;
          done();
          return;
        }
        recover<A>(self, opts, page.next_version, done, fail);
      },
      [fail](caf::error& err) {
        fail(std::move(err));
      });
}

/// First recovery: the latest snapshot if usable, then the events after it.
template <class A>
void recover_initial(aggregate_actor_type<A>* self,
                     std::shared_ptr<const aggregate_options> opts,
                     done_fn done, fail_fn fail) {
  ++opts->metrics->recoveries;
  if (!opts->snapshots.load) {
    recover<A>(self, opts, 1, done, fail);
    return;
  }
  auto& agg = *self->state.agg;
  self
    ->request(opts->store, opts->store_timeout, snapshot_load_atom_v,
              agg.stream())
    .await(
      [self, opts, done, fail](std::vector<snapshot>& found) {
        auto& agg = *self->state.agg;
        if (!found.empty()) {
          if (restore_snapshot(agg, found.front()))
            ++opts->metrics->snapshots_loaded;
          else
            ++opts->metrics->snapshot_misses;
        }
        recover<A>(self, opts, agg.version() + 1, done, fail);
      },
      [self, opts, done, fail](caf::error& err) {
        // Without a snapshot the events alone still rebuild the state.
        log(log_level::warning, "snapshot not loaded: " + describe(err),
            es::log_context{"aggregates"});
        ++opts->metrics->snapshot_misses;
        recover<A>(self, opts, 1, done, fail);
      });
}

using command_clock = std::chrono::steady_clock;

/// Counts an answered command and how long it took since `start`.
inline void count_command(aggregate_metrics& m, command_clock::time_point start,
                          bool ok) {
  ++m.commands;
  if (!ok)
    ++m.commands_failed;
  m.command_seconds.observe(
    std::chrono::duration<double>(command_clock::now() - start).count());
}

/// A part of a joint command: offers the events to the coordinator (the
/// command's sender) and waits for its verdict, handling nothing else
/// meanwhile. The coordinator commits the parts of every aggregate in one
/// atomic append and answers each with its result, or with why nothing
/// was written.
template <class A>
void offer_joint_part(aggregate_actor_type<A>* self,
                      std::shared_ptr<const aggregate_options> opts,
                      append_request req,
                      caf::typed_response_promise<command_result> rp,
                      uint32_t count, uint32_t attempt,
                      command_clock::time_point start) {
  auto coordinator = self->state.joint_coordinator;
  self
    ->request(coordinator, opts->joint_timeout, prepared_atom_v, std::move(req))
    .await(
      [self, opts, rp, count, attempt, start](append_result& res) mutable {
        auto& agg = *self->state.agg;
        agg.mark_committed();
        count_command(*opts->metrics, start, true);
        rp.deliver(command_result{agg.id(), res.last_version, count,
                                  res.last_position, attempt});
      },
      [self, opts, rp, start](caf::error& err) mutable {
        auto& agg = *self->state.agg;
        agg.rollback();
        count_command(*opts->metrics, start, false);
        if (has_code(err, store_errc::wrong_expected_version)) {
          // Another writer moved a stream: catch up, so the coordinator's
          // next attempt decides on the current state.
          recover<A>(
            self, opts, agg.version() + 1,
            [rp, err]() mutable {
              rp.deliver(err);
            },
            [self, rp](caf::error e) mutable {
              rp.deliver(e);
              self->quit(e);
            });
          return;
        }
        rp.deliver(err);
        // No verdict (the coordinator timed out or ended), or one that
        // cannot tell whether the events are stored: this state may be
        // behind the log, so the next command loads afresh.
        if (err.category() == caf::atom("system")
            || has_code(err, store_errc::commit_outcome_unknown))
          self->quit(err);
      });
}

/// Runs `cmd` against the aggregate, appends what it emitted with the
/// version the aggregate had, and answers `rp`. On a version conflict it
/// catches up with the stream and runs the command again.
template <class A, class Cmd>
void run_command(aggregate_actor_type<A>* self,
                 std::shared_ptr<const aggregate_options> opts,
                 command_envelope env, Cmd cmd,
                 caf::typed_response_promise<command_result> rp,
                 uint32_t attempt, command_clock::time_point start) {
  auto& agg = *self->state.agg;
  // The command's span (while tracing is on); its context travels in the
  // metadata of the events the command writes.
  std::shared_ptr<tracing::span> trace;
  if (tracing::enabled()) {
    trace = std::make_shared<tracing::span>(
      "eventsource.aggregate.handle_command", tracing::span_kind::server);
    trace->set_attribute("eventsource.aggregate.type",
                         agg.stream().aggregate_type);
    trace->set_attribute("eventsource.aggregate.id", agg.id().to_string());
    trace->set_attribute("eventsource.command.id", env.command_id.to_string());
    trace->set_attribute("eventsource.command.attempt",
                         static_cast<int64_t>(attempt));
  }
  agg.set_context(
    command_context{env.command_id, env.correlation_id, env.actor_id});
  agg.begin_change();
  caf::error err;
  try {
    err = agg.handle(cmd);
  } catch (const std::exception& ex) {
    err = caf::make_error(actors_errc::handler_failed,
                          std::string{"command handler threw: "} + ex.what());
  } catch (...) {
    err = caf::make_error(actors_errc::handler_failed,
                          std::string{"command handler threw"});
  }
  if (err) {
    agg.rollback();
    if (trace)
      trace->set_error(describe(err));
    count_command(*opts->metrics, start, false);
    rp.deliver(err);
    // After a throw the aggregate may be half-changed: start afresh.
    if (has_code(err, actors_errc::handler_failed))
      self->quit(err);
    return;
  }
  if (!agg.has_uncommitted()) {
    count_command(*opts->metrics, start, true);
    rp.deliver(command_result{agg.id(), agg.version(), 0, 0, attempt});
    return;
  }
  auto expected = expected_version::exact(agg.committed_version());
  auto count = static_cast<uint32_t>(agg.uncommitted_events().size());
  append_request req{agg.stream(), expected, agg.take_uncommitted()};
  if (trace)
    for (auto& ev : req.events)
      ev.metadata = tracing::inject(ev.metadata, trace->context());
  if (env.joint) {
    offer_joint_part<A>(self, opts, std::move(req), rp, count, attempt, start);
    return;
  }
  self->request(opts->store, opts->store_timeout, append_atom_v, std::move(req))
    .await(
      [self, opts, rp, count, attempt, trace,
       start](append_result& res) mutable {
        auto& agg = *self->state.agg;
        auto before = agg.committed_version();
        agg.mark_committed();
        count_command(*opts->metrics, start, true);
        rp.deliver(command_result{agg.id(), res.last_version, count,
                                  res.last_position, attempt});
        auto every = static_cast<int64_t>(opts->snapshots.every_events);
        if (every > 0 && agg.version() / every > before / every)
          save_snapshot(self, *opts, agg);
      },
      [self, opts, env, cmd, rp, attempt, trace,
       start](caf::error& err) mutable {
        auto& agg = *self->state.agg;
        agg.rollback();
        if (trace)
          trace->set_error(describe(err));
        if (has_code(err, store_errc::wrong_expected_version)
            && attempt <= opts->max_conflict_retries) {
          ++opts->metrics->conflict_retries;
          recover<A>(
            self, opts, agg.version() + 1,
            [self, opts, env, cmd, rp, attempt, start]() mutable {
              run_command<A, Cmd>(self, opts, env, cmd, rp, attempt + 1, start);
            },
            [self, opts, rp, start](caf::error e) mutable {
              count_command(*opts->metrics, start, false);
              rp.deliver(e);
              self->quit(e);
            });
          return;
        }
        count_command(*opts->metrics, start, false);
        rp.deliver(err);
        // The store actor retried with the same event ids and still cannot
        // tell whether they are stored: this state may be behind the log.
        // End, so the next command loads the aggregate afresh instead of
        // running its handler again on top of events that may exist.
        if (has_code(err, store_errc::commit_outcome_unknown))
          self->quit(err);
      });
}

template <class A, class Cmd>
auto command_handler(aggregate_actor_type<A>* self,
                     std::shared_ptr<const aggregate_options> opts) {
  return [self, opts](const command_envelope& env,
                      const Cmd& cmd) -> caf::result<command_result> {
    // Before the response promise, which takes the sender over.
    if (env.joint)
      self->state.joint_coordinator
        = caf::actor_cast<caf::actor>(self->current_sender());
    auto rp = self->template make_response_promise<command_result>();
    auto start = command_clock::now();
    if (self->state.recovered) {
      run_command<A, Cmd>(self, opts, env, cmd, rp, 1, start);
    } else {
      recover_initial<A>(
        self, opts,
        [self, opts, env, cmd, rp, start]() mutable {
          run_command<A, Cmd>(self, opts, env, cmd, rp, 1, start);
        },
        [self, opts, rp, start](caf::error err) mutable {
          count_command(*opts->metrics, start, false);
          auto wrapped
            = has_code(err, store_errc::tenant_mismatch)
                ? err
                : caf::make_error(actors_errc::recovery_failed,
                                  "cannot load aggregate: " + describe(err));
          rp.deliver(wrapped);
          self->quit(wrapped);
        });
    }
    return rp;
  };
}

template <class A, class... Cmds>
caf::behavior aggregate_behavior(aggregate_actor_type<A>* self,
                                 std::shared_ptr<const aggregate_options> opts,
                                 command_list<Cmds...>) {
  return {
    command_handler<A, Cmds>(self, opts)...,
    [self, opts](passivate_atom) {
      const auto& agg = *self->state.agg;
      if (opts->snapshots.on_passivation && self->state.recovered
          && agg.version() > 0) {
        // Sent, not requested: the answer would reach a finished actor.
        if (auto snap = take_snapshot(agg)) {
          self->send(opts->store, snapshot_save_atom_v, std::move(*snap));
          ++opts->metrics->snapshots_written;
        }
      }
      self->quit();
    },
    [self](version_atom) -> int64_t {
      return self->state.agg->version();
    },
    [self, opts](snapshot_atom) -> caf::result<bool> {
      auto rp = self->template make_response_promise<bool>();
      const auto& agg = *self->state.agg;
      auto snap = take_snapshot(agg);
      if (!self->state.recovered || !snap) {
        rp.deliver(false);
        return rp;
      }
      auto metrics = opts->metrics;
      self
        ->request(opts->store, opts->store_timeout, snapshot_save_atom_v, *snap)
        .then(
          [rp, metrics](bool stored) mutable {
            if (stored)
              ++metrics->snapshots_written;
            rp.deliver(stored);
          },
          [rp](caf::error& err) mutable {
            rp.deliver(std::move(err));
          });
      return rp;
    },
  };
}

} // namespace detail

} // namespace es
