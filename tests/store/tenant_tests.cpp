// Tenant-scoped handles (es/store/tenant_scope.hpp): four tenants write and
// read at random through scoped handles over one store, and no call ever
// shows a row of another tenant while each tenant sees all of its own; the
// scoped state stores keep snapshots, checkpoints and dead letters apart.
//
// The seed is printed; rerun one with ES_TENANT_SEED=<seed>.
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/tenant_scope.hpp"

#include "state_fixtures.hpp"
#include "store_fixtures.hpp"
#include <catch2/catch.hpp>

// The adapters under test; other binaries substitute theirs.
#ifdef ES_TENANT_FIXTURES_HEADER
#  include ES_TENANT_FIXTURES_HEADER
#endif
#ifndef ES_TENANT_FIXTURES
#  define ES_TENANT_FIXTURES memory_fixture, sqlite_fixture
#endif
#ifndef ES_TENANT_RUNS
#  define ES_TENANT_RUNS 12
#endif
#ifndef ES_TENANT_STEPS
#  define ES_TENANT_STEPS 300
#endif
#include "test_events.hpp"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <set>

using namespace es;
using namespace es::test;

namespace {

uint64_t pick_seed() {
  if (const char* env = std::getenv("ES_TENANT_SEED"))
    return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

template <class T>
std::string outcome(const caf::expected<T>& x) {
  return x ? std::string{"ok"} : describe(x.error());
}

/// Requires `x` to be a `tenant_mismatch` that names no version.
template <class T>
void require_mismatch(const caf::expected<T>& x) {
  INFO("outcome: " << outcome(x));
  REQUIRE_FALSE(x);
  REQUIRE(has_code(x.error(), store_errc::tenant_mismatch));
  REQUIRE(describe(x.error()).find("version") == std::string::npos);
}

constexpr int no_owner = -1;
constexpr int no_tenant = -2;

/// Makes the scoped handle of a tenant.
using scope_fn = std::function<event_store_ptr(const uuid&)>;

/// Drives random calls of four tenants through scoped handles over `raw`
/// (or made by `scope`) and checks each answer against what `raw` holds.
/// With `hidden_streams`, the handles' database hides other tenants'
/// streams (row-level security), so an append to one is refused by the
/// database with another code than `tenant_mismatch`.
class tenant_checker {
public:
  tenant_checker(uint64_t seed, event_store_ptr raw, scope_fn scope = {},
                 bool hidden_streams = false)
    : rng_(seed), raw_(std::move(raw)), hidden_streams_(hidden_streams) {
    for (int t = 0; t < 4; ++t) {
      tenants_.push_back(uuid::random());
      scoped_.push_back(scope ? scope(tenants_.back())
                              : for_tenant(raw_, tenants_.back()));
    }
    for (int i = 0; i < 10; ++i)
      streams_.push_back(new_stream(i % 3 == 0 ? "Customer" : "Order"));
    for (int i = 0; i < 3; ++i)
      correlations_.push_back(uuid::random());
    // Streams of no tenant, written without a scope: nobody's.
    for (int i = 0; i < 2; ++i) {
      auto s = new_stream("Order");
      auto batch = make_batch(s, 2);
      batch[0].correlation_id = correlations_[0];
      REQUIRE(raw_->append(s, expected_version::no_stream(), batch));
      streams_.push_back(s);
      owner_[s] = no_tenant;
      for (const auto& ev : batch)
        event_owner_[ev.event_id] = no_tenant;
    }
  }

  void step(int n) {
    INFO("step " << n);
    auto t = pick(0, 3);
    INFO("tenant " << t);
    auto op = pick(0, 99);
    if (op < 28)
      append(t);
    else if (op < 36)
      append_many(t);
    else if (op < 43)
      append_atomic(t);
    else if (op < 49)
      replay(t);
    else if (op < 58)
      read_stream(t);
    else if (op < 70)
      read_all(t);
    else if (op < 78)
      read_correlated(t);
    else if (op < 90)
      find(t);
    else
      versions(t);
  }

  /// Each tenant's feed and streams, read through its handle, are exactly
  /// its rows of the store.
  void check_completeness() {
    for (int t = 0; t < 4; ++t) {
      INFO("tenant " << t);
      read_all_options opts;
      opts.max_count = 1000;
      auto mine = feed(*scoped_[t], opts);
      opts.filter.tenant_id = tenants_[t];
      auto truth = feed(*raw_, opts);
      REQUIRE(mine == truth);
      std::set<uuid> ids;
      for (const auto& ev : mine)
        ids.insert(ev.event_id);
      std::set<uuid> expected;
      for (const auto& [id, owner] : event_owner_)
        if (owner == t)
          expected.insert(id);
      REQUIRE(ids == expected);
      for (const auto& s : streams_) {
        auto a = stream_events(*scoped_[t], s);
        if (owner_of(s) == t)
          REQUIRE(a == stream_events(*raw_, s));
        else
          REQUIRE(a.empty());
      }
    }
  }

private:
  int pick(int lo, int hi) {
    return std::uniform_int_distribution<int>{lo, hi}(rng_);
  }

  int owner_of(const stream_id& s) const {
    auto i = owner_.find(s);
    return i == owner_.end() ? no_owner : i->second;
  }

  bool foreign(const stream_id& s, int t) const {
    auto o = owner_of(s);
    return o != no_owner && o != t;
  }

  const stream_id& any_stream() {
    return streams_[static_cast<size_t>(
      pick(0, static_cast<int>(streams_.size()) - 1))];
  }

  int64_t raw_version(const stream_id& s) {
    auto v = raw_->stream_version(s);
    REQUIRE(v);
    return *v;
  }

  int64_t raw_head() {
    auto h = raw_->head_position();
    REQUIRE(h);
    return *h;
  }

  /// Requires the refusal of a write to another tenant's stream.
  template <class T>
  void require_refused(const caf::expected<T>& x) {
    if (hidden_streams_) {
      INFO("outcome: " << outcome(x));
      REQUIRE_FALSE(x);
    } else {
      require_mismatch(x);
    }
  }

  /// Requires every event to be tenant `t`'s.
  void require_own(int t, const recorded_events& events) {
    for (const auto& ev : events) {
      INFO("event " << ev.event_id.to_string());
      REQUIRE(ev.tenant_id == tenants_[t]);
    }
  }

  expected_version any_expected(const stream_id& s) {
    auto v = raw_version(s);
    switch (pick(0, 5)) {
      case 0: return expected_version::any();
      case 1: return expected_version::no_stream();
      case 2: return expected_version::stream_exists();
      case 3:
        return expected_version::exact(std::max<int64_t>(0, v + pick(-1, 1)));
      default: return expected_version::exact(v);
    }
  }

  /// A batch for `s`; sometimes one event names another tenant (`*bad`
  /// is then set), sometimes the tenant's own id is set explicitly.
  event_batch any_batch(int t, const stream_id& s, bool* bad) {
    auto batch = make_batch(s, pick(1, 3), pick(0, 1000));
    *bad = false;
    for (auto& ev : batch) {
      if (pick(0, 2) == 0)
        ev.correlation_id = correlations_[static_cast<size_t>(pick(0, 2))];
      if (pick(0, 3) == 0)
        ev.event_type = "NoteWritten";
      if (pick(0, 5) == 0)
        ev.tenant_id = tenants_[t];
    }
    if (pick(0, 9) == 0) {
      auto other = (t + pick(1, 3)) % 4;
      batch[static_cast<size_t>(pick(0, static_cast<int>(batch.size()) - 1))]
        .tenant_id
        = tenants_[other];
      *bad = true;
    }
    return batch;
  }

  void record(int t, const stream_id& s, event_batch batch) {
    owner_[s] = t;
    for (auto& ev : batch) {
      ev.tenant_id = tenants_[t];
      event_owner_[ev.event_id] = t;
    }
    sent_.push_back({s, std::move(batch)});
  }

  void append(int t) {
    const auto& s = any_stream();
    auto expected = any_expected(s);
    bool bad = false;
    auto batch = any_batch(t, s, &bad);
    auto before = raw_head();
    auto version = raw_version(s);
    auto res = scoped_[t]->append(s, expected, batch);
    INFO("stream " << to_string(s) << " owner " << owner_of(s) << ", "
                   << outcome(res));
    if (bad) {
      require_mismatch(res);
      REQUIRE(raw_head() == before);
      return;
    }
    if (foreign(s, t)) {
      require_refused(res);
      REQUIRE(raw_head() == before);
      return;
    }
    if (!expected.matches(version)) {
      REQUIRE_FALSE(res);
      REQUIRE(has_code(res.error(), store_errc::wrong_expected_version));
      REQUIRE(raw_head() == before);
      return;
    }
    REQUIRE(res);
    REQUIRE(res->last_version == version + static_cast<int64_t>(batch.size()));
    record(t, s, std::move(batch));
  }

  /// Picks up to `n` distinct streams.
  std::vector<stream_id> some_streams(int n) {
    std::vector<stream_id> result;
    for (int i = 0; i < n; ++i) {
      const auto& s = any_stream();
      if (std::find(result.begin(), result.end(), s) == result.end())
        result.push_back(s);
    }
    return result;
  }

  void append_many(int t) {
    std::vector<append_request> reqs;
    std::vector<bool> refused;
    std::vector<bool> bads;
    for (const auto& s : some_streams(pick(1, 4))) {
      bool bad = false;
      auto batch = any_batch(t, s, &bad);
      bads.push_back(bad);
      refused.push_back(bad || foreign(s, t));
      reqs.push_back({s, expected_version::any(), std::move(batch)});
    }
    auto copy = reqs;
    auto before = raw_head();
    auto res = scoped_[t]->append_many(std::move(copy));
    REQUIRE(res.size() == reqs.size());
    int64_t written = 0;
    for (size_t i = 0; i < res.size(); ++i) {
      INFO("request " << i << ": " << outcome(res[i]));
      if (bads[i]) {
        require_mismatch(res[i]);
        continue;
      }
      if (refused[i]) {
        require_refused(res[i]);
        continue;
      }
      // The database refuses a whole group for a request on a stream it
      // hides (see hidden_streams): the others may fail with it, writing
      // nothing.
      if (hidden_streams_ && !res[i]
          && std::find(refused.begin(), refused.end(), true) != refused.end())
        continue;
      REQUIRE(res[i]);
      written += static_cast<int64_t>(reqs[i].events.size());
      record(t, reqs[i].stream, std::move(reqs[i].events));
    }
    REQUIRE(raw_head() == before + written);
  }

  void append_atomic(int t) {
    std::vector<append_request> reqs;
    bool refused = false;
    bool any_bad = false;
    for (const auto& s : some_streams(pick(1, 3))) {
      bool bad = false;
      auto batch = any_batch(t, s, &bad);
      // Another tenant's stream with any condition at all: never a
      // version in the answer.
      auto expected = foreign(s, t) ? any_expected(s)
                      : pick(0, 1)  ? expected_version::any()
                                    : expected_version::exact(raw_version(s));
      any_bad = any_bad || bad;
      refused = refused || bad || foreign(s, t);
      reqs.push_back({s, expected, std::move(batch)});
    }
    auto copy = reqs;
    auto before = raw_head();
    auto res = scoped_[t]->append_atomic(std::move(copy));
    INFO(outcome(res));
    if (any_bad) {
      require_mismatch(res);
      REQUIRE(raw_head() == before);
      return;
    }
    if (refused) {
      require_refused(res);
      REQUIRE(raw_head() == before);
      return;
    }
    REQUIRE(res);
    for (auto& req : reqs)
      record(t, req.stream, std::move(req.events));
  }

  /// Re-sends a stored batch without its tenant: the tenant's own is a
  /// replay, another tenant's is refused without revealing its result.
  void replay(int t) {
    if (sent_.empty())
      return;
    auto [s, batch]
      = sent_[static_cast<size_t>(pick(0, static_cast<int>(sent_.size()) - 1))];
    bool mine = owner_of(s) == t;
    for (auto& ev : batch) {
      ev.tenant_id.reset();
      ev.aggregate_version = 0;
    }
    auto before = raw_head();
    auto res = scoped_[t]->append(s, any_expected(s), batch);
    INFO("stream " << to_string(s) << ": " << outcome(res));
    if (mine) {
      REQUIRE(res);
      REQUIRE(res->deduplicated);
    } else {
      require_refused(res);
    }
    REQUIRE(raw_head() == before);
  }

  void read_stream(int t) {
    read_stream_options opts;
    opts.direction
      = pick(0, 1) ? read_direction::forwards : read_direction::backwards;
    opts.from_version = pick(0, 12);
    opts.to_version = pick(0, 3) == 0 ? pick(0, 12) : 0;
    opts.max_count = static_cast<size_t>(pick(1, 6));
    const auto& s = any_stream();
    auto mine = scoped_[t]->read_stream(s, opts);
    REQUIRE(mine);
    require_own(t, mine->events);
    if (owner_of(s) != t) {
      REQUIRE(mine->events.empty());
      REQUIRE(mine->stream_version == 0);
      REQUIRE(mine->end_of_stream);
      return;
    }
    auto truth = raw_->read_stream(s, opts);
    REQUIRE(truth);
    REQUIRE(mine->events == truth->events);
    REQUIRE(mine->stream_version == truth->stream_version);
    REQUIRE(mine->end_of_stream == truth->end_of_stream);
  }

  std::vector<recorded_event> feed(event_store& store, read_all_options opts) {
    std::vector<recorded_event> result;
    auto end = for_each_in_feed(store, opts, [&](recorded_event& ev) {
      result.push_back(ev);
      return caf::error{};
    });
    INFO(outcome(end));
    REQUIRE(end);
    return result;
  }

  std::vector<recorded_event> stream_events(event_store& store,
                                            const stream_id& s) {
    std::vector<recorded_event> result;
    read_stream_options opts;
    opts.max_count = 3;
    REQUIRE_FALSE(for_each_in_stream(store, s, opts, [&](recorded_event& ev) {
      result.push_back(ev);
      return caf::error{};
    }));
    return result;
  }

  event_filter any_filter(int t) {
    event_filter f;
    if (pick(0, 2) == 0)
      f.event_types = {pick(0, 1) ? "ItemAdded" : "NoteWritten"};
    if (pick(0, 3) == 0)
      f.aggregate_types = {"Customer"};
    if (pick(0, 3) == 0)
      f.tenant_id = tenants_[t];
    return f;
  }

  void read_all(int t) {
    read_all_options opts;
    opts.after_position = pick(0, static_cast<int>(raw_head()) + 2);
    opts.max_count = static_cast<size_t>(pick(1, 10));
    opts.filter = any_filter(t);
    if (pick(0, 7) == 0) {
      opts.filter.tenant_id = tenants_[(t + pick(1, 3)) % 4];
      require_mismatch(scoped_[t]->read_all(opts));
      return;
    }
    auto one = scoped_[t]->read_all(opts);
    REQUIRE(one);
    require_own(t, one->events);
    auto mine = feed(*scoped_[t], opts);
    require_own(t, mine);
    opts.filter.tenant_id = tenants_[t];
    REQUIRE(mine == feed(*raw_, opts));
  }

  std::vector<recorded_event> chain(event_store& store, const uuid& id,
                                    read_all_options opts) {
    std::vector<recorded_event> result;
    for (int guard = 0; guard < 10'000; ++guard) {
      auto page = store.read_correlated(id, opts);
      INFO(outcome(page));
      REQUIRE(page);
      for (auto& ev : page->events)
        result.push_back(std::move(ev));
      if (page->end_of_feed)
        return result;
      opts.after_position = page->next_position;
    }
    FAIL("read_correlated did not reach the end of the feed");
    return result;
  }

  void read_correlated(int t) {
    // A chain's root may be any event (of any tenant); its members are
    // spread over the tenants.
    uuid id = correlations_[static_cast<size_t>(pick(0, 2))];
    if (!sent_.empty() && pick(0, 3) == 0)
      id = sent_[static_cast<size_t>(
                   pick(0, static_cast<int>(sent_.size()) - 1))]
             .second.front()
             .event_id;
    read_all_options opts;
    opts.max_count = static_cast<size_t>(pick(1, 5));
    opts.filter = any_filter(t);
    if (pick(0, 7) == 0) {
      opts.filter.tenant_id = tenants_[(t + pick(1, 3)) % 4];
      require_mismatch(scoped_[t]->read_correlated(id, opts));
      return;
    }
    auto mine = chain(*scoped_[t], id, opts);
    require_own(t, mine);
    opts.filter.tenant_id = tenants_[t];
    REQUIRE(mine == chain(*raw_, id, opts));
  }

  void find(int t) {
    uuid id = uuid::random();
    if (!event_owner_.empty() && pick(0, 4) > 0) {
      auto i = event_owner_.begin();
      std::advance(i, pick(0, static_cast<int>(event_owner_.size()) - 1));
      id = i->first;
    }
    auto found = scoped_[t]->find_event(id);
    auto exists = scoped_[t]->event_exists(id);
    REQUIRE(found);
    REQUIRE(exists);
    auto i = event_owner_.find(id);
    bool mine = i != event_owner_.end() && i->second == t;
    REQUIRE(found->has_value() == mine);
    REQUIRE(*exists == mine);
    if (mine) {
      auto truth = raw_->find_event(id);
      REQUIRE(truth);
      REQUIRE(*found == *truth);
    }
  }

  void versions(int t) {
    for (const auto& s : streams_) {
      auto v = scoped_[t]->stream_version(s);
      REQUIRE(v);
      REQUIRE(*v == (owner_of(s) == t ? raw_version(s) : 0));
    }
    auto head = scoped_[t]->head_position();
    REQUIRE(head);
    REQUIRE(*head == raw_head());
  }

  std::mt19937_64 rng_;
  event_store_ptr raw_;
  bool hidden_streams_;
  std::vector<uuid> tenants_;
  std::vector<event_store_ptr> scoped_;
  std::vector<stream_id> streams_;
  std::vector<uuid> correlations_;
  std::map<stream_id, int> owner_;
  std::map<uuid, int> event_owner_;
  std::vector<std::pair<stream_id, event_batch>> sent_;
};

} // namespace

TEMPLATE_TEST_CASE("tenants see their own rows and nothing else",
                   "[tenant][property]", ES_TENANT_FIXTURES) {
  auto seed = pick_seed();
  std::cout << "tenant seed: " << seed << " (rerun with ES_TENANT_SEED=" << seed
            << ")" << std::endl;
  INFO("seed " << seed << " (rerun with ES_TENANT_SEED=" << seed << ")");
  for (int run = 0; run < ES_TENANT_RUNS; ++run) {
    INFO("run " << run);
    TestType fx;
    store_limits limits;
    limits.max_page_size = 7;
    auto raw = fx.open(nullptr, limits);
    scope_fn scope;
    bool hidden = false;
    // Fixtures whose scoped handles need their own sessions make them.
    if constexpr (requires { fx.scoped(uuid{}); }) {
      scope = [&fx](const uuid& tenant) {
        return fx.scoped(tenant);
      };
      hidden = true;
    }
    tenant_checker checker{seed + static_cast<uint64_t>(run), raw, scope,
                           hidden};
    for (int i = 0; i < ES_TENANT_STEPS; ++i) {
      checker.step(i);
      if (i % 100 == 99)
        checker.check_completeness();
    }
    checker.check_completeness();
  }
}

TEMPLATE_TEST_CASE("a scoped handle shows no trace of another tenant's stream",
                   "[tenant]", ES_TENANT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  // [scoped-store]
  auto acme = uuid::random();
  auto globex = uuid::random();
  auto acme_store = es::for_tenant(store, acme);
  auto globex_store = es::for_tenant(store, globex);
  stream_id order{"Order", uuid::random()};
  // Events without a tenant get the handle's.
  auto res = acme_store->append(order, expected_version::no_stream(),
                                make_batch(order, 3));
  REQUIRE(res);
  // Another tenant's handle sees no such stream, and cannot write to it.
  CHECK(*globex_store->stream_version(order) == 0);
  CHECK(globex_store->read_stream(order, {})->events.empty());
  auto refused = globex_store->append(order, expected_version::exact(1),
                                      make_batch(order, 1));
  CHECK(has_code(refused.error(), store_errc::tenant_mismatch));
  // Feed reads are confined to the handle's tenant.
  read_all_options opts;
  CHECK(globex_store->read_all(opts)->events.empty());
  CHECK(acme_store->read_all(opts)->events.size() == 3);
  opts.filter.tenant_id = acme;
  CHECK(has_code(globex_store->read_all(opts).error(),
                 store_errc::tenant_mismatch));
  // [/scoped-store]
  auto first = acme_store->read_stream(order, {})->events.front();
  CHECK(first.tenant_id == acme);
  CHECK_FALSE(*globex_store->event_exists(first.event_id));
  CHECK_FALSE(globex_store->find_event(first.event_id)->has_value());
  CHECK(scoped_tenant(*acme_store) == acme);
  CHECK_FALSE(scoped_tenant(*store));
  // The conflict a version would have caused is not reported.
  CHECK(describe(refused.error()).find("actual") == std::string::npos);
  // A page past the end of another tenant's stream still says nothing.
  read_stream_options past;
  past.from_version = 10;
  auto page = globex_store->read_stream(order, past);
  REQUIRE(page);
  CHECK(page->stream_version == 0);
  // An event naming another tenant is refused and nothing is written.
  auto batch = make_batch(order, 1);
  batch[0].tenant_id = globex;
  CHECK(
    has_code(acme_store->append(order, expected_version::any(), batch).error(),
             store_errc::tenant_mismatch));
  CHECK(*store->head_position() == 3);
  // Another tenant's stream cannot be deleted or truncated: it is missing.
  for (auto mode : {deletion_mode::soft, deletion_mode::hard}) {
    auto gone = delete_stream(*globex_store, order, mode);
    INFO(describe(gone.error()));
    CHECK(has_code(gone.error(), store_errc::invalid_argument));
  }
  CHECK(has_code(truncate_stream(*globex_store, order, 2).error(),
                 store_errc::invalid_argument));
  CHECK(*store->head_position() == 3);
  // The tenant's own deletion works through the handle; to another tenant
  // the deleted stream is as missing as before.
  REQUIRE(delete_stream(*acme_store, order, deletion_mode::soft));
  CHECK(has_code(acme_store->read_stream(order, {}).error(),
                 store_errc::stream_deleted));
  CHECK(has_code(acme_store->stream_version(order).error(),
                 store_errc::stream_deleted));
  auto hidden = globex_store->read_stream(order, {});
  REQUIRE(hidden);
  CHECK(hidden->events.empty());
  CHECK(hidden->stream_version == 0);
  CHECK(*globex_store->stream_version(order) == 0);
  // Writing it, deleting it or truncating it tells nothing either: the
  // same answers as for a live stream of another tenant.
  auto foreign = make_batch(order, 1);
  auto write = globex_store->append(order, expected_version::exact(3), foreign);
  REQUIRE_FALSE(write);
  CHECK(has_code(write.error(), store_errc::tenant_mismatch));
  CHECK_FALSE(deleted_stream_tenant(write.error()).has_value());
  for (int64_t before : {2, 1000}) {
    auto cut = truncate_stream(*globex_store, order, before);
    REQUIRE_FALSE(cut);
    CHECK(has_code(cut.error(), store_errc::invalid_argument));
    CHECK(describe(cut.error()).find("does not exist") != std::string::npos);
  }
  // A nil tenant sees nothing and writes nothing.
  auto nobody = for_tenant(store, uuid{});
  CHECK(nobody->read_all({})->events.empty());
  stream_id other{"Order", uuid::random()};
  CHECK_FALSE(
    nobody->append(other, expected_version::any(), make_batch(other, 1)));
  CHECK(*store->head_position() == 4);
}

// The state wrappers are the same code over every adapter: checked on the
// local ones only.
#ifndef ES_TENANT_NO_STATE_TESTS

namespace {

/// A dead letter for `ev` in `projection`.
dead_letter letter_for(const recorded_event& ev, std::string projection) {
  dead_letter d;
  d.projection = std::move(projection);
  d.event_id = ev.event_id;
  d.global_position = ev.global_position;
  d.event_type = ev.event_type;
  d.event_data = encode_recorded_event(ev);
  d.error_message = "handler failed";
  d.first_failed_at = d.last_failed_at = now_utc();
  return d;
}

template <class StateFixture>
void check_scoped_state(event_store_ptr events, StateFixture& state) {
  auto acme = uuid::random();
  auto globex = uuid::random();
  auto acme_events = for_tenant(events, acme);
  stream_id acme_order{"Order", uuid::random()};
  stream_id globex_order{"Order", uuid::random()};
  REQUIRE(acme_events->append(acme_order, expected_version::no_stream(),
                              make_batch(acme_order, 2)));
  REQUIRE(for_tenant(events, globex)
            ->append(globex_order, expected_version::no_stream(),
                     make_batch(globex_order, 2)));
  auto snapshots = state.snapshots();
  auto checkpoints = state.checkpoints();
  auto dead_letters = state.dead_letters();
  // Snapshots: the tenant's streams only.
  // [scoped-state]
  auto acme_snapshots = es::for_tenant(snapshots, acme_events, acme);
  auto acme_checkpoints = es::for_tenant(checkpoints, acme);
  auto acme_dead_letters = es::for_tenant(dead_letters, acme_events, acme);
  // [/scoped-state]
  auto globex_snapshots = for_tenant(snapshots, events, globex);
  auto globex_checkpoints = for_tenant(checkpoints, globex);
  auto globex_dead_letters = for_tenant(dead_letters, events, globex);
  snapshot snap{acme_order, 2, 1, R"({"items":2})", now_utc()};
  REQUIRE(acme_snapshots->save(snap));
  CHECK((*acme_snapshots->load(acme_order))->version == 2);
  CHECK_FALSE(globex_snapshots->load(acme_order)->has_value());
  CHECK_FALSE(*globex_snapshots->remove(acme_order));
  auto stolen = globex_snapshots->save({acme_order, 3, 1, "{}", now_utc()});
  CHECK(has_code(stolen.error(), store_errc::tenant_mismatch));
  // A stream without events cannot get a snapshot.
  stream_id empty{"Order", uuid::random()};
  CHECK(has_code(acme_snapshots->save({empty, 1, 1, "{}", now_utc()}).error(),
                 store_errc::tenant_mismatch));
  CHECK((*snapshots->load(acme_order))->version == 2);
  // Checkpoints: one namespace per tenant.
  checkpoint cp;
  cp.projection = "orders";
  cp.position = 2;
  REQUIRE(acme_checkpoints->save(cp));
  cp.position = 4;
  REQUIRE(globex_checkpoints->save(cp));
  CHECK((*acme_checkpoints->load("orders"))->position == 2);
  CHECK((*acme_checkpoints->load("orders"))->projection == "orders");
  CHECK((*globex_checkpoints->load("orders"))->position == 4);
  auto listed = acme_checkpoints->list();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().projection == "orders");
  CHECK(
    (*checkpoints->load(tenant_checkpoint_prefix(acme) + "orders"))->position
    == 2);
  CHECK(checkpoints->list()->size() == 2);
  auto conflict = acme_checkpoints->save_if(cp, 3);
  CHECK(has_code(conflict.error(), store_errc::checkpoint_conflict));
  {
    auto lease = acme_checkpoints->try_lease("orders");
    REQUIRE(lease);
    CHECK((*lease)->projection() == "orders");
    // The other tenant's projection of the same name is another lease.
    CHECK(globex_checkpoints->try_lease("orders"));
    CHECK(has_code(acme_checkpoints->try_lease("orders").error(),
                   store_errc::lease_held));
  }
  CHECK(*acme_checkpoints->reset("orders"));
  CHECK((*globex_checkpoints->load("orders"))->position == 4);
  // Dead letters: those of the tenant's events only.
  auto acme_events_read = acme_events->read_stream(acme_order, {});
  auto globex_events_read = events->read_stream(globex_order, {});
  REQUIRE(acme_events_read);
  REQUIRE(globex_events_read);
  auto mine
    = acme_dead_letters->add(letter_for(acme_events_read->events[0], "orders"));
  REQUIRE(mine);
  auto theirs = globex_dead_letters->add(
    letter_for(globex_events_read->events[0], "orders"));
  REQUIRE(theirs);
  CHECK(has_code(
    acme_dead_letters->add(letter_for(globex_events_read->events[1], "orders"))
      .error(),
    store_errc::tenant_mismatch));
  // An entry whose event text does not decode is judged by the stored
  // event with its id.
  auto bare = letter_for(acme_events_read->events[1], "audit");
  bare.event_data = "not json";
  REQUIRE(acme_dead_letters->add(bare));
  CHECK_FALSE(acme_dead_letters->get(*theirs)->has_value());
  CHECK(acme_dead_letters->get(*mine)->has_value());
  CHECK_FALSE(*acme_dead_letters->mark_resolved(*theirs, "acme"));
  CHECK_FALSE(*acme_dead_letters->mark_retrying(*theirs));
  CHECK((*dead_letters->get(*theirs))->status == dead_letter_status::failed);
  CHECK(*acme_dead_letters->mark_resolved(*mine, "acme"));
  auto listed_letters = acme_dead_letters->list({});
  REQUIRE(listed_letters);
  CHECK(listed_letters->size() == 2);
  for (const auto& d : *listed_letters)
    CHECK(d.id != *theirs);
  dead_letter_query page;
  page.limit = 1;
  page.offset = 1;
  auto second = acme_dead_letters->list(page);
  REQUIRE(second);
  REQUIRE(second->size() == 1);
  CHECK(second->front().projection == "audit");
  auto stats = acme_dead_letters->stats();
  REQUIRE(stats);
  CHECK(stats->total == 2);
  CHECK(stats->resolved == 1);
  CHECK(stats->by_projection.size() == 1);
  CHECK(stats->by_projection.count("audit") == 1);
  CHECK(dead_letters->stats()->total == 3);
  CHECK(
    has_code(acme_dead_letters->purge_resolved(std::chrono::seconds{0}).error(),
             store_errc::permission_denied));
}

} // namespace

TEST_CASE("scoped state stores keep tenants apart", "[tenant][state]") {
  SECTION("memory") {
    memory_state_fixture state;
    check_scoped_state(make_memory_event_store(), state);
  }
  SECTION("sqlite") {
    sqlite_fixture events;
    sqlite_state_fixture state;
    check_scoped_state(events.open(), state);
  }
}
#endif
