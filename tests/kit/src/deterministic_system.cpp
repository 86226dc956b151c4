#include "es/testing/deterministic_system.hpp"

#include "es/projections/type_ids.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

namespace es::testing {

struct deterministic_system::impl {
  explicit impl(const configure_fn& configure) {
    add_projections_module(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    if (configure)
      configure(cfg);
  }

  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::vector<caf::actor> owned;
};

deterministic_system::deterministic_system(const configure_fn& configure)
  : impl_(std::make_unique<impl>(configure)) {
  impl_->sys = std::make_unique<caf::actor_system>(impl_->cfg);
  impl_->sched
    = &dynamic_cast<caf::scheduler::test_coordinator&>(impl_->sys->scheduler());
}

deterministic_system::~deterministic_system() {
  for (auto& handle : impl_->owned)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
  impl_->owned.clear();
  run();
}

caf::actor_system& deterministic_system::system() noexcept {
  return *impl_->sys;
}

caf::scheduler::test_coordinator& deterministic_system::scheduler() noexcept {
  return *impl_->sched;
}

size_t deterministic_system::run() {
  return impl_->sched->run();
}

void deterministic_system::advance_time(caf::timespan total,
                                        caf::timespan step) {
  if (step <= caf::timespan{0})
    step = total;
  for (caf::timespan t{0}; t < total; t += step) {
    impl_->sched->advance_time(step);
    run();
  }
}

void deterministic_system::stop_at_end(const caf::actor& handle) {
  if (handle)
    impl_->owned.push_back(handle);
}

} // namespace es::testing
