#include "workload.hpp"

#include "es/actors/errors.hpp"
#include "es/actors/type_ids.hpp"
#include "es/supervision/classifier.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <chrono>
#include <random>

namespace orders {

namespace {

class planner {
public:
  explicit planner(uint64_t seed) : rng_(seed) {
    // nop
  }

  bool chance(int percent) {
    return std::uniform_int_distribution<int>{0, 99}(rng_) < percent;
  }

  int pick(int lo, int hi) {
    return std::uniform_int_distribution<int>{lo, hi}(rng_);
  }

  order_plan new_order() {
    order_plan p;
    p.id = es::uuid::time_ordered();
    p.commands.emplace_back(
      create_order{"customer-" + std::to_string(pick(1, 5000)), "EUR"});
    if (chance(5))
      p.commands.emplace_back(ship_order{"TRK-early"}); // not_paid
    std::map<std::string, order_line> lines;
    auto items = pick(1, 4);
    for (int i = 0; i < items; ++i) {
      add_item cmd{"SKU-" + std::to_string(pick(100, 999)), pick(1, 5),
                   pick(199, 9999)};
      auto& line = lines[cmd.sku];
      line.quantity += cmd.quantity;
      line.unit_price_cents = cmd.unit_price_cents;
      p.commands.emplace_back(cmd);
    }
    if (lines.size() > 1 && chance(20)) {
      auto sku = lines.begin()->first;
      lines.erase(lines.begin());
      p.commands.emplace_back(remove_item{sku});
    }
    if (chance(3))
      p.commands.emplace_back(remove_item{"SKU-none"}); // no_such_item
    finish(p, lines);
    return p;
  }

  order_plan continuation(const es::uuid& id, const summary_row& row) {
    order_plan p;
    p.id = id;
    if (row.status == order_status::draft) {
      if (row.items == 0)
        p.commands.emplace_back(add_item{"SKU-late", 1, 999});
      auto total = row.total_cents + (row.items == 0 ? 999 : 0);
      if (chance(85)) {
        p.commands.emplace_back(pay_order{total, "PAY-" + id.to_string()});
        if (chance(80))
          p.commands.emplace_back(ship_order{"TRK-" + id.to_string()});
      } else {
        p.commands.emplace_back(cancel_order{"customer changed their mind"});
      }
    } else if (row.status == order_status::paid) {
      p.commands.emplace_back(ship_order{"TRK-" + id.to_string()});
    }
    return p;
  }

private:
  void finish(order_plan& p, const std::map<std::string, order_line>& lines) {
    int64_t total = 0;
    for (const auto& [sku, line] : lines)
      total += line.quantity * line.unit_price_cents;
    if (chance(10)) {
      p.commands.emplace_back(cancel_order{"out of stock"});
      if (chance(30))
        p.commands.emplace_back(pay_order{total, "PAY-late"}); // cancelled
      return;
    }
    if (chance(5))
      p.commands.emplace_back(pay_order{total + 1, "PAY-wrong"}); // wrong
    if (chance(15))
      return; // stays a draft; a later run continues it
    p.commands.emplace_back(pay_order{total, "PAY-" + p.id.to_string()});
    if (chance(3))
      p.commands.emplace_back(add_item{"SKU-after", 1, 100}); // paid
    if (chance(80)) {
      p.commands.emplace_back(ship_order{"TRK-" + p.id.to_string()});
      if (chance(3))
        p.commands.emplace_back(cancel_order{"too late"}); // shipped
    }
  }

  std::mt19937_64 rng_;
};

struct client_state {
  static inline const char* name = "orders.client";
  size_t plan = 0;
  size_t step = 0;
  bool has_plan = false;
};

using client_actor = caf::stateful_actor<client_state>;

void next(client_actor* self, caf::actor region, std::shared_ptr<workload> w,
          size_t index, caf::actor done) {
  auto& st = self->state;
  if (w->stopped.load()) {
    if (st.has_plan && st.step < w->plans[st.plan].commands.size())
      w->commands_abandoned += w->plans[st.plan].commands.size() - st.step;
    self->send(done, caf::ok_atom::value, static_cast<uint64_t>(index));
    self->quit();
    return;
  }
  if (!st.has_plan || st.step >= w->plans[st.plan].commands.size()) {
    st.plan = w->next_plan.fetch_add(1);
    st.step = 0;
    st.has_plan = st.plan < w->plans.size();
    if (!st.has_plan) {
      self->send(done, caf::ok_atom::value, static_cast<uint64_t>(index));
      self->quit();
      return;
    }
  }
  const auto& plan = w->plans[st.plan];
  const auto& cmd = plan.commands[st.step++];
  auto env = es::command_envelope::to(plan.id);
  env.actor_id = "client-" + std::to_string(index);
  auto start = std::chrono::steady_clock::now();
  auto record = [self, region, w, index, done, start](caf::error* err) {
    auto us = std::chrono::duration<double, std::micro>(
                std::chrono::steady_clock::now() - start)
                .count();
    auto& report = w->reports[index];
    report.latencies_us.push_back(us);
    if (err == nullptr) {
      ++report.accepted;
    } else if (auto reason = es::rejection_reason(*err); !reason.empty()) {
      ++report.rejected[reason];
    } else {
      if (report.failed++ == 0)
        report.first_failure = es::describe(*err);
      // The plan's later commands assumed this one took effect.
      auto& st = self->state;
      auto left = w->plans[st.plan].commands.size() - st.step;
      w->commands_abandoned += left;
      st.step += left;
      if (es::error_classifier{}.classify(*err).category
          == es::error_category::infrastructure) {
        std::lock_guard guard{w->stop_mtx};
        if (!w->stopped.exchange(true))
          w->stop_reason = es::describe(*err);
      }
    }
    w->commands_done.fetch_add(1, std::memory_order_relaxed);
    next(self, region, w, index, done);
  };
  std::visit(
    [&](const auto& c) {
      self->request(region, std::chrono::seconds(60), env, c)
        .then(
          [record](es::command_result&) {
            record(nullptr);
          },
          [record](caf::error& err) {
            record(&err);
          });
    },
    cmd);
}

caf::behavior client_impl(client_actor* self, caf::actor region,
                          std::shared_ptr<workload> w, size_t index,
                          caf::actor done) {
  next(self, region, w, index, done);
  return {
    [](caf::ok_atom) {
      // nop: clients are driven by responses
    },
  };
}

} // namespace

std::vector<order_plan>
make_plans(size_t new_orders, const std::map<es::uuid, summary_row>& existing,
           uint64_t seed) {
  planner p{seed};
  std::vector<order_plan> result;
  for (const auto& [id, row] : existing) {
    auto plan = p.continuation(id, row);
    if (!plan.commands.empty())
      result.push_back(std::move(plan));
  }
  for (size_t i = 0; i < new_orders; ++i)
    result.push_back(p.new_order());
  // Interleave continuations with new orders.
  std::shuffle(result.begin(), result.end(), std::mt19937_64{seed + 1});
  return result;
}

caf::actor spawn_client(caf::actor_system& sys, caf::actor region,
                        std::shared_ptr<workload> w, size_t index,
                        caf::actor done) {
  return sys.spawn(client_impl, std::move(region), std::move(w), index,
                   std::move(done));
}

} // namespace orders
