// Blocking facades for threads that are not actors.
#pragma once

#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/actors/store_actor.hpp"
#include "es/store/event_store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>

namespace es {

/// Returns the event store port implemented by messages to `store`: every
/// call sends a request and waits at most `timeout` for the answer
/// (`store_errc::timeout` otherwise). For threads that are not actors, like
/// eventsource-py's SyncEventStoreAdapter. `append_many` sends its requests
/// as separate appends (the writer still commits them together), so the
/// store's size limit applies to each request, not to the call.
event_store_ptr make_actor_event_store(caf::actor_system& sys,
                                       store_actor store,
                                       std::chrono::milliseconds timeout
                                       = std::chrono::seconds(30));

/// Sends `(env, cmd)` to `region` (or an aggregate actor) and waits for the
/// result. Errors: the command's own, `actors_errc::timeout`.
template <class Cmd>
caf::expected<command_result>
send_command(caf::actor_system& sys, const caf::actor& region,
             const command_envelope& env, Cmd cmd,
             std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  caf::scoped_actor self{sys};
  caf::expected<command_result> result{caf::error{}};
  self->request(region, caf::timespan{timeout}, env, std::move(cmd))
    .receive(
      [&](command_result& res) {
        result = std::move(res);
      },
      [&](caf::error& err) {
        if (err == caf::sec::request_timeout)
          result = caf::make_error(actors_errc::timeout,
                                   std::string{"no answer from "
                                               "the region in time"});
        else
          result = std::move(err);
      });
  return result;
}

} // namespace es
