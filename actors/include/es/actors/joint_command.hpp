// Joint commands: commands to several aggregates whose events are written
// all or nothing.
#pragma once

#include "es/actors/command.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/message.hpp>

#include <chrono>
#include <cstdint>
#include <vector>

namespace es {

/// One command of a joint command: the region of its aggregate and the
/// `(command_envelope, Cmd)` message a region takes.
struct joint_part {
  caf::actor region;
  caf::message command;
};

/// Builds a part: `joint(region, command_envelope::to(id), debit{30})`.
template <class Cmd>
joint_part joint(caf::actor region, command_envelope env, Cmd cmd) {
  return {std::move(region), caf::make_message(std::move(env), std::move(cmd))};
}

/// Options of `run_joint_command`.
struct joint_options {
  /// How often the whole command runs again after a version conflict
  /// (another writer moved one of the streams first).
  uint32_t max_conflict_retries = 3;
  /// How long to wait for each aggregate and for the store.
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

/// Runs a command on each of several aggregates through their regions and
/// writes the events they emit with one `append_atomic` call: all of them
/// or none. Each aggregate decides its part on its own state, as for a
/// plain command, then offers its events and handles nothing else until
/// the verdict; the parts are asked one after the other in aggregate id
/// order, so two joint commands over the same aggregates never wait for
/// each other in a cycle. A refusal of any part writes nothing and is the
/// answer; a version conflict runs the whole command again (the
/// aggregates catch up first). Returns one result per part, in order.
///
/// Blocking: call it from a thread of its own or a detached actor, never
/// from an actor on the cooperative scheduler. Errors: the first part's
/// refusal, the store's error (`wrong_expected_version` naming every
/// conflicting stream once the retries are spent), `invalid_argument` for
/// no parts or two parts for one aggregate, CAF's timeouts.
caf::expected<std::vector<command_result>>
run_joint_command(caf::actor_system& sys, const store_actor& store,
                  std::vector<joint_part> parts, joint_options opts = {});

} // namespace es
