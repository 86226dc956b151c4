// Random operation sequences against SQLite, compared with the in-memory
// oracle: every result and every error code must agree.
//
// The seed is printed; rerun one with ES_PROPERTY_SEED=<seed>.
#include "es/store/errors.hpp"

#include "store_fixtures.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

// The adapter compared with the oracle; other binaries substitute theirs.
#ifdef ES_PROPERTY_FIXTURE_HEADER
#  include ES_PROPERTY_FIXTURE_HEADER
#endif
#ifndef ES_PROPERTY_SUBJECT
#  define ES_PROPERTY_SUBJECT sqlite_fixture
#endif
#include "test_events.hpp"

using namespace es;
using namespace es::test;

namespace {

uint64_t pick_seed() {
  if (const char* env = std::getenv("ES_PROPERTY_SEED"))
    return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

template <class T>
std::string outcome(const caf::expected<T>& x) {
  if (x)
    return "ok";
  return describe(x.error());
}

uint8_t code_of(const caf::error& err) {
  return err ? err.code() : 0;
}

class model_checker {
public:
  model_checker(uint64_t seed, event_store& oracle, event_store& subject)
    : rng_(seed), oracle_(oracle), subject_(subject) {
    for (int i = 0; i < 6; ++i)
      streams_.push_back(new_stream(i % 3 == 0 ? "Customer" : "Order"));
    tenants_ = {uuid::random(), uuid::random()};
  }

  void step(int n) {
    INFO("step " << n);
    auto op = pick(0, 99);
    if (op < 45)
      append();
    else if (op < 55)
      append_many();
    else if (op < 70)
      read_stream();
    else if (op < 85)
      read_all();
    else if (op < 92)
      versions();
    else
      find();
  }

  /// Waits until the subject's feed ends where the oracle's does. A feed
  /// whose end trails acknowledged appends for a moment (PostgreSQL's
  /// overlapping feed while another appender of the server's is running)
  /// gets ten seconds; every other store ends there at once.
  void settle_feed() {
    auto want = oracle_.head_position();
    REQUIRE(want);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      auto got = subject_.head_position();
      REQUIRE(got);
      if (*got >= *want || std::chrono::steady_clock::now() > deadline)
        return;
      std::this_thread::yield();
    }
  }

  void compare_everything() {
    settle_feed();
    read_all_options opts;
    opts.max_count = 1000;
    std::vector<recorded_event> a;
    std::vector<recorded_event> b;
    REQUIRE(for_each_in_feed(oracle_, opts, [&](recorded_event& ev) {
      a.push_back(ev);
      return caf::error{};
    }));
    REQUIRE(for_each_in_feed(subject_, opts, [&](recorded_event& ev) {
      b.push_back(ev);
      return caf::error{};
    }));
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      REQUIRE(a[i] == b[i]);
  }

private:
  int pick(int lo, int hi) {
    return std::uniform_int_distribution<int>{lo, hi}(rng_);
  }

  const stream_id& any_stream() {
    return streams_[static_cast<size_t>(pick(0, 5))];
  }

  expected_version any_expected(const stream_id& s) {
    auto current = oracle_.stream_version(s);
    REQUIRE(current);
    switch (pick(0, 5)) {
      case 0: return expected_version::any();
      case 1: return expected_version::no_stream();
      case 2: return expected_version::stream_exists();
      case 3: return expected_version::exact(*current + pick(-1, 1));
      default: return expected_version::exact(*current);
    }
  }

  event_batch any_batch(const stream_id& s) {
    // Sometimes re-send an earlier batch (idempotent replay), sometimes a
    // part of one (conflict).
    if (!sent_.empty() && pick(0, 9) == 0) {
      auto batch = sent_[static_cast<size_t>(
        pick(0, static_cast<int>(sent_.size()) - 1))];
      if (batch.size() > 1 && pick(0, 1) == 0)
        batch.pop_back();
      return batch;
    }
    auto batch = make_batch(s, pick(1, 4), pick(0, 1000));
    auto tenant = pick(0, 2);
    for (auto& ev : batch) {
      if (tenant < 2 && s.aggregate_type == "Customer")
        ev.tenant_id = tenants_[static_cast<size_t>(tenant)];
      if (pick(0, 3) == 0)
        ev.event_type = "NoteWritten";
      if (pick(0, 4) == 0)
        ev.metadata = R"({"k":)" + std::to_string(pick(0, 9)) + "}";
    }
    if (pick(0, 14) == 0)
      batch.back().payload = "{broken";
    if (pick(0, 9) == 0)
      batch.front().aggregate_version = pick(1, 8);
    return batch;
  }

  void check_same(const caf::expected<append_result>& a,
                  const caf::expected<append_result>& b) {
    INFO("oracle: " << outcome(a) << " / subject: " << outcome(b));
    REQUIRE(static_cast<bool>(a) == static_cast<bool>(b));
    if (a)
      REQUIRE(*a == *b);
    else
      REQUIRE(code_of(a.error()) == code_of(b.error()));
  }

  void append() {
    const auto& s = any_stream();
    auto expected = any_expected(s);
    auto batch = any_batch(s);
    auto a = oracle_.append(s, expected, batch);
    auto b = subject_.append(s, expected, batch);
    check_same(a, b);
    if (a && !a->deduplicated)
      sent_.push_back(batch);
  }

  void append_many() {
    std::vector<append_request> reqs;
    auto n = pick(1, 5);
    for (int i = 0; i < n; ++i) {
      const auto& s = any_stream();
      reqs.push_back({s, pick(0, 1) ? expected_version::any() : any_expected(s),
                      any_batch(s)});
    }
    auto copy = reqs;
    auto a = oracle_.append_many(std::move(reqs));
    auto b = subject_.append_many(std::move(copy));
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      check_same(a[i], b[i]);
  }

  void read_stream() {
    read_stream_options opts;
    opts.direction
      = pick(0, 1) ? read_direction::forwards : read_direction::backwards;
    opts.from_version = pick(0, 12);
    opts.to_version = pick(0, 3) == 0 ? pick(0, 12) : 0;
    opts.max_count = static_cast<size_t>(pick(1, 6));
    const auto& s = any_stream();
    auto a = oracle_.read_stream(s, opts);
    auto b = subject_.read_stream(s, opts);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(a->events == b->events);
    REQUIRE(a->end_of_stream == b->end_of_stream);
    REQUIRE(a->stream_version == b->stream_version);
    if (!a->end_of_stream)
      REQUIRE(a->next_version == b->next_version);
  }

  void read_all() {
    settle_feed();
    read_all_options opts;
    auto head = oracle_.head_position();
    REQUIRE(head);
    opts.after_position = pick(0, static_cast<int>(*head) + 2);
    opts.max_count = static_cast<size_t>(pick(1, 10));
    if (pick(0, 2) == 0)
      opts.filter.event_types = {pick(0, 1) ? "ItemAdded" : "NoteWritten"};
    if (pick(0, 3) == 0)
      opts.filter.aggregate_types = {"Customer"};
    if (pick(0, 3) == 0)
      opts.filter.tenant_id = tenants_[static_cast<size_t>(pick(0, 1))];
    // Read to the end in pages; the pages may be cut differently (SQLite
    // bounds its scan), but the concatenation must be the same.
    std::vector<recorded_event> a;
    std::vector<recorded_event> b;
    auto end_a = for_each_in_feed(oracle_, opts, [&](recorded_event& ev) {
      a.push_back(ev);
      return caf::error{};
    });
    auto end_b = for_each_in_feed(subject_, opts, [&](recorded_event& ev) {
      b.push_back(ev);
      return caf::error{};
    });
    REQUIRE(end_a);
    REQUIRE(end_b);
    REQUIRE(a == b);
    REQUIRE(*end_a == *end_b);
  }

  void versions() {
    for (const auto& s : streams_)
      REQUIRE(*oracle_.stream_version(s) == *subject_.stream_version(s));
    REQUIRE(*oracle_.head_position() == *subject_.head_position());
  }

  void find() {
    uuid id = uuid::random();
    if (!sent_.empty() && pick(0, 2) > 0)
      id = sent_[static_cast<size_t>(
                   pick(0, static_cast<int>(sent_.size()) - 1))]
             .front()
             .event_id;
    auto a = oracle_.find_event(id);
    auto b = subject_.find_event(id);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(*a == *b);
  }

  std::mt19937_64 rng_;
  event_store& oracle_;
  event_store& subject_;
  std::vector<stream_id> streams_;
  std::vector<uuid> tenants_;
  std::vector<event_batch> sent_;
};

} // namespace

TEST_CASE("the adapter agrees with the in-memory oracle on random sequences",
          "[property]") {
  auto seed = pick_seed();
  std::cout << "property seed: " << seed
            << " (rerun with ES_PROPERTY_SEED=" << seed << ")" << std::endl;
  INFO("seed " << seed);
  for (int run = 0; run < 20; ++run) {
    INFO("run " << run);
    memory_fixture mem;
    ES_PROPERTY_SUBJECT lite;
    store_limits limits;
    limits.max_page_size = 7;
    auto oracle = mem.open(nullptr, limits);
    auto subject = lite.open(nullptr, limits);
    model_checker checker{seed + static_cast<uint64_t>(run), *oracle, *subject};
    for (int i = 0; i < 500; ++i)
      checker.step(i);
    checker.compare_everything();
  }
}
