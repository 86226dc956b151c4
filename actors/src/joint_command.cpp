#include "es/actors/joint_command.hpp"

#include "es/actors/errors.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/after.hpp>
#include <caf/response_promise.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <numeric>
#include <optional>
#include <utility>

namespace es {

namespace {

/// One part's offer: what it would append, and where its verdict goes.
struct offer {
  size_t part;
  append_request request;
  caf::response_promise verdict;
};

caf::error no_answer(const char* from) {
  return caf::make_error(caf::sec::request_timeout,
                         std::string{"joint command: no answer from "} + from);
}

} // namespace

caf::expected<std::vector<command_result>>
run_joint_command(caf::actor_system& sys, const store_actor& store,
                  std::vector<joint_part> parts, joint_options opts) {
  if (parts.empty())
    return make_store_error(store_errc::invalid_argument,
                            "a joint command needs at least one part");
  for (const auto& p : parts)
    if (!p.region || p.command.size() < 2
        || !p.command.match_element<command_envelope>(0))
      return make_store_error(store_errc::invalid_argument,
                              "a joint part is a region and a "
                              "(command_envelope, command) message");
  auto id_of = [&](size_t k) -> const uuid& {
    return parts[k].command.get_as<command_envelope>(0).aggregate_id;
  };
  // Asked in aggregate id order: joint commands sharing aggregates take
  // them in the same order, so none waits for another in a cycle.
  std::vector<size_t> order(parts.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return id_of(x) < id_of(y) || (id_of(x) == id_of(y) && x < y);
  });
  for (size_t i = 1; i < order.size(); ++i)
    if (id_of(order[i]) == id_of(order[i - 1])
        && parts[order[i]].region == parts[order[i - 1]].region)
      return make_store_error(store_errc::invalid_argument,
                              "a joint command names aggregate "
                                + id_of(order[i]).to_string() + " twice");
  auto timeout = caf::duration{opts.timeout};
  for (uint32_t attempt = 1;; ++attempt) {
    // A fresh coordinator per attempt: a late answer meant for an earlier
    // attempt goes to an actor that no longer exists, never into this
    // attempt's answers.
    caf::scoped_actor self{sys};
    std::vector<std::optional<command_result>> results(parts.size());
    std::vector<offer> offers;
    caf::error refused;
    // Each part answers with an offer (its events), with its result (it
    // had nothing to write), or with its refusal.
    for (auto k : order) {
      auto msg = parts[k].command;
      msg.get_mutable_as<command_envelope>(0).joint = true;
      self->send(parts[k].region, std::move(msg));
      self->receive(
        [&](prepared_atom, append_request& req) {
          offers.push_back({k, std::move(req), self->make_response_promise()});
        },
        [&](command_result& res) {
          results[k] = res;
        },
        [&](caf::error& err) {
          refused = std::move(err);
        },
        caf::after(timeout) >>
          [&] {
            refused = no_answer("an aggregate");
          });
      if (refused)
        break;
    }
    caf::error failed = refused;
    std::vector<append_result> written;
    if (!failed && !offers.empty()) {
      std::vector<append_request> requests;
      for (const auto& o : offers)
        requests.push_back(o.request);
      self->request(store, timeout, append_atomic_atom_v, std::move(requests))
        .receive(
          [&](std::vector<append_result>& res) {
            written = res;
          },
          [&](caf::error& err) {
            failed = std::move(err);
          });
    }
    // The verdicts; then each offering part answers with its result.
    for (size_t i = 0; i < offers.size(); ++i) {
      if (failed)
        offers[i].verdict.deliver(failed);
      else
        offers[i].verdict.deliver(written[i]);
    }
    for (size_t n = 0; n < offers.size(); ++n)
      self->receive(
        [&](command_result& res) {
          for (const auto& o : offers)
            if (o.request.stream.aggregate_id == res.aggregate_id)
              results[o.part] = res;
        },
        [&](caf::error& err) {
          if (!failed && written.empty())
            failed = std::move(err);
        },
        caf::after(timeout) >>
          [&] {
            if (!failed && written.empty())
              failed = no_answer("an aggregate after the verdict");
          });
    if (!failed) {
      // Committed: the store's results stand for a part that did not
      // answer in time (it ends and reloads from the log).
      for (size_t i = 0; i < offers.size(); ++i) {
        auto& r = results[offers[i].part];
        if (!r)
          r = command_result{
            offers[i].request.stream.aggregate_id, written[i].last_version,
            static_cast<uint32_t>(offers[i].request.events.size()),
            written[i].last_position, attempt};
      }
      std::vector<command_result> out;
      for (auto& r : results) {
        if (!r)
          return caf::make_error(actors_errc::handler_failed,
                                 std::string{"joint command: a part gave "
                                             "no result"});
        out.push_back(std::move(*r));
      }
      return out;
    }
    if (!has_code(failed, store_errc::wrong_expected_version)
        || attempt > opts.max_conflict_retries)
      return failed;
  }
}

} // namespace es
