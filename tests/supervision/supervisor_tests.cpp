// The supervisor on the test_coordinator: restarts after the backoff on the
// test clock, the restart limit, normal ends and stops.
#include "es/supervision/actors.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

#include "supervision_fixture.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

/// A supervised worker: answers `(caf::get_atom)` with its generation,
/// ends normally on `(stop_atom)` and with an error on `(caf::sub_atom)`.
caf::behavior worker(caf::event_based_actor* self, int generation) {
  return {
    [generation](caf::get_atom) {
      return generation;
    },
    [self](stop_atom) {
      self->quit();
    },
    [self](caf::sub_atom) {
      self->quit(caf::make_error(caf::sec::runtime_error, "worker broke"));
    },
  };
}

/// Counts how often the supervisor called it; spawns a worker per call, or
/// nothing once `fail_from` calls are reached.
struct counting_factory {
  int calls = 0;
  int fail_from = 0; // 0: never fails
  std::vector<caf::actor> spawned;
};

using counting_factory_ptr = std::shared_ptr<counting_factory>;

std::shared_ptr<child_factory> make_factory(counting_factory_ptr f) {
  return std::make_shared<child_factory>([f](caf::actor_system& sys) {
    ++f->calls;
    if (f->fail_from > 0 && f->calls >= f->fail_from)
      return caf::actor{};
    auto a = sys.spawn(worker, f->calls);
    f->spawned.push_back(a);
    return a;
  });
}

/// Two restarts allowed; 100 ms, then 200 ms, without jitter.
restart_policy test_policy() {
  restart_policy p;
  p.max_restarts = 2;
  p.backoff.initial_delay = 100ms;
  p.backoff.max_delay = 10s;
  p.backoff.exponential_base = 2.0;
  p.backoff.jitter = 0.0;
  return p;
}

struct supervisor_fixture : deterministic_fixture {
  supervisor_actor supervisor;

  void start(restart_policy p = test_policy()) {
    supervisor = keep(spawn_supervisor(sys, p));
    sched.run();
  }

  caf::expected<caf::actor> supervise_child(const std::string& name,
                                            counting_factory_ptr f) {
    return ask<caf::actor>(supervisor, supervise_atom_v, name,
                           make_factory(std::move(f)));
  }

  std::vector<child_status> children() {
    auto res = ask<std::vector<child_status>>(supervisor, children_atom_v);
    REQUIRE(res);
    return *res;
  }

  child_status status_of(const std::string& name) {
    for (auto& c : children())
      if (c.name == name)
        return c;
    FAIL("no child named " << name);
    return {};
  }

  caf::actor child(const std::string& name) {
    auto res = ask<caf::actor>(supervisor, child_atom_v, name);
    REQUIRE(res);
    return *res;
  }

  /// Asks a worker for its generation.
  int generation(const caf::actor& w) {
    auto res = ask<int>(w, caf::get_atom_v);
    REQUIRE(res);
    return *res;
  }

  void crash(const caf::actor& w) {
    self->send_exit(w, caf::make_error(caf::sec::runtime_error, "killed"));
    sched.run();
  }

  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }
};

} // namespace

TEST_CASE_METHOD(supervisor_fixture, "supervise starts and reports a child",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("worker", f);
  REQUIRE(a);
  REQUIRE(*a);
  CHECK(f->calls == 1);
  CHECK(generation(*a) == 1);
  CHECK(child("worker") == *a);
  auto all = children();
  REQUIRE(all.size() == 1);
  CHECK(all[0].name == "worker");
  CHECK(all[0].state == child_state::running);
  CHECK(all[0].restarts == 0);
  CHECK(all[0].last_error.empty());
}

TEST_CASE_METHOD(supervisor_fixture,
                 "a crashed child is restarted after the backoff, not before",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto first = supervise_child("worker", f);
  REQUIRE(first);
  crash(*first);
  auto s = status_of("worker");
  CHECK(s.state == child_state::restarting);
  CHECK(s.restarts == 1);
  CHECK(s.last_error.find("runtime_error") != std::string::npos);
  // While restarting, the handle is invalid.
  CHECK_FALSE(child("worker"));
  CHECK(logged.count(log_level::warning, "worker crashed") == 1);
  // Not before the 100 ms backoff.
  advance(99ms);
  CHECK(f->calls == 1);
  CHECK(status_of("worker").state == child_state::restarting);
  advance(1ms);
  CHECK(f->calls == 2);
  s = status_of("worker");
  CHECK(s.state == child_state::running);
  CHECK(s.restarts == 1);
  auto second = child("worker");
  REQUIRE(second);
  CHECK(second != *first);
  CHECK(generation(second) == 2);
  // The second crash waits 200 ms.
  crash(second);
  CHECK(status_of("worker").restarts == 2);
  advance(199ms);
  CHECK(f->calls == 2);
  CHECK(status_of("worker").state == child_state::restarting);
  advance(1ms);
  CHECK(f->calls == 3);
  auto third = child("worker");
  REQUIRE(third);
  CHECK(generation(third) == 3);
  CHECK(status_of("worker").state == child_state::running);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "a child that quits with an error is restarted too",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto first = supervise_child("worker", f);
  REQUIRE(first);
  self->send(*first, caf::sub_atom_v);
  sched.run();
  auto s = status_of("worker");
  CHECK(s.state == child_state::restarting);
  CHECK(s.last_error.find("worker broke") != std::string::npos);
  advance(100ms);
  CHECK(f->calls == 2);
  CHECK(status_of("worker").state == child_state::running);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "after max_restarts restarts the next crash fails the child",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  REQUIRE(supervise_child("worker", f));
  // Two restarts are allowed.
  crash(f->spawned.back());
  advance(100ms);
  crash(f->spawned.back());
  advance(200ms);
  REQUIRE(f->calls == 3);
  CHECK(status_of("worker").restarts == 2);
  // The third crash is one too many.
  crash(f->spawned.back());
  auto s = status_of("worker");
  CHECK(s.state == child_state::failed);
  CHECK(s.restarts == 2);
  CHECK(s.last_error.find("runtime_error") != std::string::npos);
  CHECK(logged.count(log_level::error, "giving up") == 1);
  // No restart, however long we wait.
  advance(1h);
  CHECK(f->calls == 3);
  CHECK(status_of("worker").state == child_state::failed);
  CHECK_FALSE(child("worker"));
}

TEST_CASE_METHOD(supervisor_fixture, "a normal end makes a child stopped",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("calm", f);
  REQUIRE(a);
  self->send(*a, stop_atom_v);
  sched.run();
  auto s = status_of("calm");
  CHECK(s.state == child_state::stopped);
  CHECK(s.restarts == 0);
  CHECK(s.last_error.empty());
  advance(1h);
  CHECK(f->calls == 1);
  CHECK_FALSE(child("calm"));
  // A user_shutdown exit is an orderly end as well.
  auto g = std::make_shared<counting_factory>();
  auto b = supervise_child("other", g);
  REQUIRE(b);
  self->send_exit(*b, caf::exit_reason::user_shutdown);
  sched.run();
  CHECK(status_of("other").state == child_state::stopped);
  advance(1h);
  CHECK(g->calls == 1);
}

TEST_CASE_METHOD(supervisor_fixture, "stop ends a child for good",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("svc", f);
  REQUIRE(a);
  auto stopped = ask<bool>(supervisor, stop_atom_v, std::string{"svc"});
  REQUIRE(stopped);
  CHECK(*stopped);
  CHECK(status_of("svc").state == child_state::stopped);
  CHECK_FALSE(child("svc"));
  advance(1h);
  CHECK(f->calls == 1);
  CHECK(status_of("svc").state == child_state::stopped);
  // The actor itself is gone: a request to it fails.
  auto res = ask<int>(*a, caf::get_atom_v);
  CHECK_FALSE(res);
  // Unknown names.
  auto unknown = ask<bool>(supervisor, stop_atom_v, std::string{"nope"});
  REQUIRE(unknown);
  CHECK_FALSE(*unknown);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "stop during the backoff cancels the restart",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("svc", f);
  REQUIRE(a);
  crash(*a);
  REQUIRE(status_of("svc").state == child_state::restarting);
  auto stopped = ask<bool>(supervisor, stop_atom_v, std::string{"svc"});
  REQUIRE(stopped);
  CHECK(*stopped);
  advance(1h);
  CHECK(f->calls == 1);
  CHECK(status_of("svc").state == child_state::stopped);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "children reports every child; unknown names are not_found",
                 "[supervisor]") {
  start();
  auto fa = std::make_shared<counting_factory>();
  auto fb = std::make_shared<counting_factory>();
  auto fc = std::make_shared<counting_factory>();
  auto a = supervise_child("a", fa);
  auto b = supervise_child("b", fb);
  auto c = supervise_child("c", fc);
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  crash(*a);
  self->send(*b, stop_atom_v);
  sched.run();
  auto all = children();
  REQUIRE(all.size() == 3);
  CHECK(all[0].name == "a");
  CHECK(all[0].state == child_state::restarting);
  CHECK(all[1].name == "b");
  CHECK(all[1].state == child_state::stopped);
  CHECK(all[2].name == "c");
  CHECK(all[2].state == child_state::running);
  auto res = ask<caf::actor>(supervisor, child_atom_v, std::string{"zzz"});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::not_found));
  CHECK(std::string{to_string(child_state::restarting)} == "restarting");
}

TEST_CASE_METHOD(supervisor_fixture,
                 "a factory that returns no actor fails the child",
                 "[supervisor]") {
  start();
  // At once: supervise answers with an error.
  auto broken = std::make_shared<counting_factory>();
  broken->fail_from = 1;
  auto res = supervise_child("broken", broken);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::not_found));
  CHECK(status_of("broken").state == child_state::failed);
  // On a restart: the child fails.
  auto flaky = std::make_shared<counting_factory>();
  flaky->fail_from = 2;
  auto a = supervise_child("flaky", flaky);
  REQUIRE(a);
  crash(*a);
  advance(100ms);
  CHECK(flaky->calls == 2);
  auto s = status_of("flaky");
  CHECK(s.state == child_state::failed);
  CHECK(s.last_error == "the factory returned no actor");
}

TEST_CASE_METHOD(supervisor_fixture,
                 "supervising a name again replaces the old child",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto first = supervise_child("worker", f);
  REQUIRE(first);
  crash(*first);
  REQUIRE(status_of("worker").restarts == 1);
  auto g = std::make_shared<counting_factory>();
  auto second = supervise_child("worker", g);
  REQUIRE(second);
  // A fresh start: the restart count is reset, the new factory is used.
  auto s = status_of("worker");
  CHECK(s.state == child_state::running);
  CHECK(s.restarts == 0);
  CHECK(child("worker") == *second);
  // The pending restart of the old child does nothing.
  advance(1h);
  CHECK(f->calls == 1);
  CHECK(g->calls == 1);
  CHECK(child("worker") == *second);
  // Replacing a running child ends the old actor without counting a crash.
  auto third = supervise_child("worker", std::make_shared<counting_factory>());
  REQUIRE(third);
  auto gone = ask<int>(*second, caf::get_atom_v);
  CHECK_FALSE(gone);
  s = status_of("worker");
  CHECK(s.state == child_state::running);
  CHECK(s.restarts == 0);
  CHECK(child("worker") == *third);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "the default policy restarts with jitter within +-10%",
                 "[supervisor]") {
  restart_policy p; // 100 ms initial, jitter 0.1
  p.max_restarts = 5;
  start(p);
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("worker", f);
  REQUIRE(a);
  crash(*a);
  advance(89ms);
  CHECK(f->calls == 1);
  advance(22ms);
  CHECK(f->calls == 2);
  CHECK(status_of("worker").state == child_state::running);
}

TEST_CASE_METHOD(supervisor_fixture, "children end with the supervisor",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto a = supervise_child("worker", f);
  REQUIRE(a);
  self->send_exit(supervisor, caf::exit_reason::user_shutdown);
  sched.run();
  auto res = ask<int>(*a, caf::get_atom_v);
  CHECK_FALSE(res);
}

// A restart scheduled for an earlier child of the same name must not cut
// the backoff of a newer one: a name supervised again while its old restart
// is pending, whose new child then crashes, waits its own full backoff.
TEST_CASE_METHOD(supervisor_fixture,
                 "a stale restart timer does not cut a new child's backoff",
                 "[supervisor]") {
  start();
  auto f = std::make_shared<counting_factory>();
  auto first = supervise_child("worker", f);
  REQUIRE(first);
  crash(*first); // restart due at t = 100 ms
  advance(10ms);
  auto g = std::make_shared<counting_factory>();
  auto second = supervise_child("worker", g);
  REQUIRE(second);
  advance(10ms);
  crash(*second); // t = 20 ms: restart due at t = 120 ms
  REQUIRE(status_of("worker").state == child_state::restarting);
  advance(80ms); // t = 100 ms
  CHECK(g->calls == 1);
  CHECK(status_of("worker").state == child_state::restarting);
  advance(20ms); // t = 120 ms
  CHECK(g->calls == 2);
  CHECK(f->calls == 1);
}
