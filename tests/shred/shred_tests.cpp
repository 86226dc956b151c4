// Crypto-shredding on the in-memory stores: encryption, reads, forgetting,
// rebuilt read models, snapshots, and bad input.
#include "es/store/json.hpp"

#include "shred_fixture.hpp"

#include <map>

using namespace es;
using namespace es::test;

namespace {

struct memory_setup {
  std::shared_ptr<event_registry> registry = make_shred_registry();
  event_store_ptr inner
    = make_memory_event_store(memory_store_config{{}, registry});
  key_store_ptr keys = make_memory_key_store();
  event_store_ptr store = open();

  event_store_ptr open() {
    auto res = make_shredding_store(inner, keys, make_test_policy());
    REQUIRE(res);
    return *res;
  }
};

stream_id customer_stream() {
  return {"Customer", uuid::random()};
}

customer_registered registration(const stream_id& s) {
  return {s.aggregate_id.to_string(), random_email(), random_name(), 1815,
          "gold"};
}

/// A read model of customers: id to (email, name), as a projection keeps.
struct customer_directory {
  std::map<std::string, std::pair<std::string, std::string>> rows;

  caf::error apply(const event_registry& reg, const recorded_event& ev) {
    if (ev.event_type != customer_registered::event_type)
      return caf::none;
    auto c = reg.decode_as<customer_registered>(ev);
    if (!c)
      return std::move(c.error());
    rows[c->customer_id] = {c->email, c->name};
    return caf::none;
  }

  void rebuild(event_store& store, const event_registry& reg) {
    rows.clear();
    auto pos = for_each_in_feed(store, {}, [&](recorded_event& ev) {
      return apply(reg, ev);
    });
    REQUIRE(pos);
  }
};

struct scored {
  static constexpr std::string_view event_type = "Scored";
  static constexpr int32_t event_version = 1;
  std::string who;
  int32_t score = 0;
};

template <class F>
bool fields(F& f, scored& x) {
  return f("who", x.who) && f("score", x.score);
}

/// Replaces one character in the middle of the sealed `field` of a stored
/// payload by another base64 character.
std::string damage(const std::string& payload, const std::string& field) {
  auto at = payload.find("\"" + field + "\":\"", payload.find("\"$pii\""));
  REQUIRE(at != std::string::npos);
  auto pos = at + field.size() + 4 + 20;
  auto result = payload;
  result[pos] = result[pos] == 'A' ? 'B' : 'A';
  return result;
}

} // namespace

TEST_CASE("personal fields are stored encrypted and read back as written",
          "[unit]") {
  memory_setup m;
  auto s = customer_stream();
  auto c = registration(s);
  REQUIRE(m.store->append(s, expected_version::no_stream(), {make(c, s)}));
  SECTION("the inner store holds no plaintext") {
    auto raw = read_all_of(*m.inner, s);
    REQUIRE(raw.size() == 1);
    CHECK(!contains(raw[0].payload, c.email));
    CHECK(!contains(raw[0].payload, c.name));
    CHECK(!contains(raw[0].payload, "1815"));
    CHECK(contains(raw[0].payload, "\"$pii\""));
    CHECK(contains(raw[0].payload, "\"plan\":\"gold\""));
    CHECK(contains(raw[0].payload, c.customer_id));
    // The stored form still decodes into the struct (placeholders).
    auto stored = m.registry->decode_as<customer_registered>(raw[0]);
    REQUIRE(stored);
    CHECK(stored->email == encrypted_placeholder);
    CHECK(!stored->birth_year);
  }
  SECTION("every read decrypts") {
    auto read = read_all_of(*m.store, s);
    REQUIRE(read.size() == 1);
    CHECK(m.registry->decode_as<customer_registered>(read[0]) == c);
    CHECK(erased_fields(read[0]).empty());
    CHECK(!contains(read[0].payload, "$pii"));
    auto found = m.store->find_event(read[0].event_id);
    REQUIRE(found);
    REQUIRE(*found);
    CHECK((*found)->payload == read[0].payload);
    auto all = m.store->read_all({});
    REQUIRE(all);
    REQUIRE(all->events.size() == 1);
    CHECK(all->events[0].payload == read[0].payload);
  }
  SECTION("each value gets its own nonce") {
    auto s2 = customer_stream();
    auto c2 = c;
    c2.customer_id = s2.aggregate_id.to_string();
    REQUIRE(m.store->append(s2, expected_version::no_stream(), {make(c2, s2)}));
    auto a = read_all_of(*m.inner, s)[0].payload;
    auto b = read_all_of(*m.inner, s2)[0].payload;
    auto sealed_email = [](const std::string& p) {
      auto at = p.find("\"email\":\"", p.find("\"$pii\""));
      return p.substr(at, 60);
    };
    CHECK(sealed_email(a) != sealed_email(b));
  }
}

TEST_CASE("forgetting a subject erases its fields on replay", "[unit]") {
  memory_setup m;
  auto ada = customer_stream();
  auto bob = customer_stream();
  auto c_ada = registration(ada);
  auto c_bob = registration(bob);
  REQUIRE(
    m.store->append(ada, expected_version::no_stream(), {make(c_ada, ada)}));
  REQUIRE(
    m.store->append(bob, expected_version::no_stream(), {make(c_bob, bob)}));
  REQUIRE(
    m.store->append(ada, expected_version::exact(1),
                    {make(address_changed{"12 Analytical Row", "London"}, ada),
                     make(plan_changed{c_ada.customer_id, "silver"}, ada)}));
  auto forgotten = forget_subject(*m.keys, c_ada.customer_id);
  REQUIRE(forgotten);
  CHECK(forgotten->key_deleted);
  CHECK(forgotten->streams == std::vector<stream_id>{ada});
  auto events = read_all_of(*m.store, ada);
  REQUIRE(events.size() == 3);
  // [erased]
  auto reg = m.registry->decode_as<customer_registered>(events[0]);
  REQUIRE(reg);
  CHECK(reg->email == erased_marker); // strings read as the marker
  CHECK(reg->name == erased_marker);
  CHECK(!reg->birth_year);    // anything else reads as null
  CHECK(reg->plan == "gold"); // not personal: kept
  CHECK(erased_fields(events[0])
        == std::vector<std::string>{"email", "name", "birth_year"});
  // [/erased]
  // The address event names its subject by the aggregate id: the same
  // customer, so the same key.
  auto moved = m.registry->decode_as<address_changed>(events[1]);
  REQUIRE(moved);
  CHECK(moved->street == erased_marker);
  CHECK(moved->city == "London");
  CHECK(erased_fields(events[1]) == std::vector<std::string>{"street"});
  CHECK(erased_fields(events[2]).empty());
  // Another customer is untouched.
  auto other = read_all_of(*m.store, bob);
  REQUIRE(other.size() == 1);
  CHECK(m.registry->decode_as<customer_registered>(other[0]) == c_bob);
  // Forgetting again is harmless.
  auto again = forget_subject(*m.keys, c_ada.customer_id);
  REQUIRE(again);
  CHECK(!again->key_deleted);
}

TEST_CASE("a read model rebuilt after forgetting holds no personal data",
          "[unit]") {
  memory_setup m;
  auto ada = customer_stream();
  auto bob = customer_stream();
  auto c_ada = registration(ada);
  auto c_bob = registration(bob);
  REQUIRE(
    m.store->append(ada, expected_version::no_stream(), {make(c_ada, ada)}));
  REQUIRE(
    m.store->append(bob, expected_version::no_stream(), {make(c_bob, bob)}));
  customer_directory directory;
  directory.rebuild(*m.store, *m.registry);
  CHECK(directory.rows[c_ada.customer_id].first == c_ada.email);
  REQUIRE(forget_subject(*m.keys, c_ada.customer_id));
  directory.rebuild(*m.store, *m.registry);
  REQUIRE(directory.rows.size() == 2);
  for (const auto& [id, row] : directory.rows) {
    CHECK(row.first != c_ada.email);
    CHECK(row.second != c_ada.name);
  }
  CHECK(directory.rows[c_ada.customer_id].first == erased_marker);
  CHECK(directory.rows[c_bob.customer_id].first == c_bob.email);
}

TEST_CASE("forgetting deletes the snapshots of the subject's streams",
          "[unit]") {
  memory_setup m;
  auto snapshots = make_memory_snapshot_store();
  auto ada = customer_stream();
  auto bob = customer_stream();
  auto c_ada = registration(ada);
  REQUIRE(
    m.store->append(ada, expected_version::no_stream(), {make(c_ada, ada)}));
  REQUIRE(m.store->append(bob, expected_version::no_stream(),
                          {make(registration(bob), bob)}));
  for (const auto& s : {ada, bob})
    REQUIRE(snapshots->save(snapshot{s, 1, 1, "{}", now_utc()}));
  // [forget]
  auto forgotten = forget_subject(*m.keys, c_ada.customer_id, snapshots.get());
  if (!forgotten) // nothing forgotten: call again later
    FAIL(describe(forgotten.error()));
  CHECK(forgotten->snapshots_deleted == std::vector<stream_id>{ada});
  // [/forget]
  auto gone = snapshots->load(ada);
  REQUIRE(gone);
  CHECK(!*gone);
  auto kept = snapshots->load(bob);
  REQUIRE(kept);
  CHECK(*kept);
}

TEST_CASE("a subject written again after forgetting gets a new key", "[unit]") {
  memory_setup m;
  auto s = customer_stream();
  auto first = registration(s);
  REQUIRE(m.store->append(s, expected_version::no_stream(), {make(first, s)}));
  REQUIRE(forget_subject(*m.keys, first.customer_id));
  auto second = first;
  second.email = random_email();
  REQUIRE(m.store->append(s, expected_version::exact(1), {make(second, s)}));
  auto events = read_all_of(*m.store, s);
  REQUIRE(events.size() == 2);
  CHECK(erased_fields(events[0]).size() == 3);
  CHECK(m.registry->decode_as<customer_registered>(events[1]) == second);
  auto streams = m.keys->streams(first.customer_id);
  REQUIRE(streams);
  CHECK(*streams == std::vector<stream_id>{s});
}

TEST_CASE("re-sending a batch is a replay, whatever the nonces", "[unit]") {
  memory_setup m;
  auto s = customer_stream();
  auto ev = make(registration(s), s);
  auto first = m.store->append(s, expected_version::no_stream(), {ev});
  REQUIRE(first);
  auto again = m.store->append(s, expected_version::no_stream(), {ev});
  REQUIRE(again);
  CHECK(again->deduplicated);
  CHECK(again->last_position == first->last_position);
  auto many = m.store->append_many({{s, expected_version::any(), {ev}}});
  REQUIRE(many.size() == 1);
  REQUIRE(many[0]);
  CHECK(many[0]->deduplicated);
  SECTION("other plaintext under the same id is a conflict") {
    auto changed = ev;
    auto c = m.registry->decode_as<customer_registered>(ev);
    REQUIRE(c);
    c->email = random_email();
    changed.payload = *to_json(*c);
    auto res = m.store->append(s, expected_version::no_stream(), {changed});
    REQUIRE(!res);
    CHECK(has_code(res.error(), store_errc::idempotency_conflict));
  }
}

TEST_CASE("append_many encrypts each request on its own", "[unit]") {
  memory_setup m;
  auto a = customer_stream();
  auto b = customer_stream();
  auto bad = registration(b);
  bad.customer_id.clear();
  auto results = m.store->append_many(
    {{a, expected_version::no_stream(), {make(registration(a), a)}},
     {b, expected_version::no_stream(), {make(bad, b)}}});
  REQUIRE(results.size() == 2);
  REQUIRE(results[0]);
  REQUIRE(!results[1]);
  CHECK(has_code(results[1].error(), shred_errc::missing_subject));
  CHECK(read_all_of(*m.store, a).size() == 1);
  CHECK(read_all_of(*m.store, b).empty());
}

TEST_CASE("atomic appends and causal chains go through the decorator",
          "[unit]") {
  memory_setup m;
  auto a = customer_stream();
  auto b = customer_stream();
  auto chain = uuid::random();
  auto ra = registration(a);
  auto rb = registration(b);
  auto ea = make(ra, a);
  auto eb = make(rb, b);
  ea.correlation_id = chain;
  eb.correlation_id = chain;
  std::vector<append_request> call{{a, expected_version::no_stream(), {ea}},
                                   {b, expected_version::no_stream(), {eb}}};
  auto done = m.store->append_atomic(call);
  REQUIRE(done);
  REQUIRE(done->size() == 2);
  // Stored sealed, read back in the clear, also as a chain.
  auto raw = m.inner->read_correlated(chain, {});
  REQUIRE(raw);
  REQUIRE(raw->events.size() == 2);
  CHECK(raw->events[0].payload.find(ra.email) == std::string::npos);
  auto clear = m.store->read_correlated(chain, {});
  REQUIRE(clear);
  REQUIRE(clear->events.size() == 2);
  CHECK(m.registry->decode_as<customer_registered>(clear->events[1])->email
        == rb.email);
  // Sent again (fresh nonces): a replay, nothing written.
  auto again = m.store->append_atomic(call);
  REQUIRE(again);
  CHECK((*again)[0].deduplicated);
  CHECK((*again)[1].deduplicated);
  CHECK(*m.inner->head_position() == 2);
}

TEST_CASE("bad input gets a clear error and loses nothing", "[unit]") {
  memory_setup m;
  auto s = customer_stream();
  SECTION("a personal field without its subject") {
    auto c = registration(s);
    c.customer_id.clear();
    auto res = m.store->append(s, expected_version::no_stream(), {make(c, s)});
    REQUIRE(!res);
    CHECK(has_code(res.error(), shred_errc::missing_subject));
    CHECK(contains(describe(res.error()), "customer_id"));
    auto version = m.store->stream_version(s);
    REQUIRE(version);
    CHECK(*version == 0);
  }
  SECTION("no personal field set needs no subject") {
    // (Without a registry: the struct requires the e-mail.)
    auto store = make_shredding_store(make_memory_event_store(), m.keys,
                                      make_test_policy());
    REQUIRE(store);
    auto ev = make(registration(s), s);
    ev.payload = R"({"customer_id":"","email":null,"plan":"free"})";
    CHECK((*store)->append(s, expected_version::no_stream(), {ev}));
  }
  SECTION("a payload with a reserved member") {
    auto ev = make(plan_changed{"c-1", "gold"}, s);
    ev.payload = R"({"customer_id":"c-1","plan":"gold","$erased":[]})";
    auto res = m.store->append(s, expected_version::no_stream(), {ev});
    REQUIRE(!res);
    CHECK(has_code(res.error(), store_errc::invalid_argument));
    // Also when the dollar is written as an escape.
    ev.payload = R"({"customer_id":"c-1","plan":"gold","\u0024pii":{}})";
    res = m.store->append(s, expected_version::no_stream(), {ev});
    REQUIRE(!res);
    CHECK(has_code(res.error(), store_errc::invalid_argument));
  }
  SECTION("a personal field given twice, or a subject with a NUL") {
    // (Without a registry, which would refuse the payloads itself.)
    auto store = make_shredding_store(make_memory_event_store(), m.keys,
                                      make_test_policy());
    REQUIRE(store);
    auto ev = make(registration(s), s);
    ev.payload = R"({"customer_id":"c-2","email":"a@x","email":"b@x"})";
    auto twice = (*store)->append(s, expected_version::no_stream(), {ev});
    REQUIRE(!twice);
    CHECK(has_code(twice.error(), store_errc::malformed_payload));
    ev.payload = R"({"customer_id":"c-2\u0000x","email":"a@x"})";
    auto nul = (*store)->append(s, expected_version::no_stream(), {ev});
    REQUIRE(!nul);
    CHECK(has_code(nul.error(), store_errc::invalid_argument));
    CHECK(*(*store)->head_position() == 0);
  }
  REQUIRE(
    m.store->append(s, expected_version::any(),
                    {make(registration(s), s), make(registration(s), s)}));
  auto raw = read_all_of(*m.inner, s);
  REQUIRE(raw.size() >= 2);
  auto& first = raw[raw.size() - 2];
  auto& second = raw[raw.size() - 1];
  SECTION("a damaged ciphertext") {
    auto ev = first;
    ev.payload = damage(ev.payload, "email");
    auto err = decrypt_events(*m.keys, {&ev});
    CHECK(has_code(err, shred_errc::decryption_failed));
  }
  SECTION("a ciphertext moved to another event") {
    // Same subject, same key, another event id: the associated data
    // differs, so it does not open.
    auto ev = second;
    ev.event_id = first.event_id;
    auto err = decrypt_events(*m.keys, {&ev});
    CHECK(has_code(err, shred_errc::decryption_failed));
  }
  SECTION("an envelope that is not ours") {
    auto ev = first;
    ev.payload = R"({"email":"[encrypted]","$pii":{"v":1,"subject":"x"}})";
    auto err = decrypt_events(*m.keys, {&ev});
    CHECK(has_code(err, shred_errc::malformed_ciphertext));
  }
  // Nothing was lost: the events still read.
  CHECK(read_all_of(*m.store, s).size() == raw.size());
}

TEST_CASE("policies are checked against the event types", "[unit]") {
  shredding_policy p;
  CHECK(has_code(p.add<customer_registered>({"phone"}, "customer_id"),
                 shred_errc::invalid_policy));
  CHECK(has_code(p.add<customer_registered>({"email"}, "customer_no"),
                 shred_errc::invalid_policy));
  CHECK(has_code(
    p.add<customer_registered>({"email", "customer_id"}, "customer_id"),
    shred_errc::invalid_policy));
  CHECK(has_code(p.add<customer_registered>({}, "customer_id"),
                 shred_errc::invalid_policy));
  CHECK(!p.add<customer_registered>({"email"}, "customer_id"));
  CHECK(has_code(p.add<customer_registered>({"name"}, "customer_id"),
                 shred_errc::invalid_policy));
  // A personal int that is not optional could not read as null.
  CHECK(has_code(p.add<scored>({"score"}, "who"), shred_errc::invalid_policy));
  CHECK(has_code(p.add("Scored", {"score"}, subject_function{}),
                 shred_errc::invalid_policy));
  REQUIRE(p.find("CustomerRegistered") != nullptr);
  CHECK(p.find("Scored") == nullptr);
}
