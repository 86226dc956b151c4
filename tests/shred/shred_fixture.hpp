// Event types, a policy and helpers the crypto-shredding tests share.
#pragma once

#include "es/shred/all.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/memory_event_store.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace es::test {

// [event]
struct customer_registered {
  static constexpr std::string_view event_type = "CustomerRegistered";
  static constexpr int32_t event_version = 1;
  std::string customer_id;
  std::string email;
  std::string name;
  std::optional<int32_t> birth_year; // personal and not a string: optional
  std::string plan;
};

template <class F>
bool fields(F& f, customer_registered& x) {
  return f("customer_id", x.customer_id) && f("email", x.email)
         && f("name", x.name) && f("birth_year", x.birth_year)
         && f("plan", x.plan);
}
// [/event]

inline bool operator==(const customer_registered& x,
                       const customer_registered& y) {
  return x.customer_id == y.customer_id && x.email == y.email
         && x.name == y.name && x.birth_year == y.birth_year
         && x.plan == y.plan;
}

/// An event whose subject is its aggregate.
struct address_changed {
  static constexpr std::string_view event_type = "AddressChanged";
  static constexpr int32_t event_version = 1;
  std::string street;
  std::string city;
};

template <class F>
bool fields(F& f, address_changed& x) {
  return f("street", x.street) && f("city", x.city);
}

/// Holds no personal data.
struct plan_changed {
  static constexpr std::string_view event_type = "PlanChanged";
  static constexpr int32_t event_version = 1;
  std::string customer_id;
  std::string plan;
};

template <class F>
bool fields(F& f, plan_changed& x) {
  return f("customer_id", x.customer_id) && f("plan", x.plan);
}

inline shredding_policy make_test_policy() {
  // [policy]
  shredding_policy policy;
  if (auto err = policy.add<customer_registered>(
        {"email", "name", "birth_year"}, "customer_id"))
    FAIL(describe(err));
  if (auto err
      = policy.add<address_changed>({"street"}, subject_from_aggregate_id()))
    FAIL(describe(err));
  // [/policy]
  return policy;
}

inline std::shared_ptr<event_registry> make_shred_registry() {
  auto reg = std::make_shared<event_registry>();
  REQUIRE(!reg->add<customer_registered>());
  REQUIRE(!reg->add<address_changed>());
  REQUIRE(!reg->add<plan_changed>());
  return reg;
}

/// A distinctive e-mail address, so finding it in a file means something.
inline std::string random_email() {
  return "ada." + uuid::random().to_string().substr(0, 12)
         + "@shred-test.example";
}

/// A distinctive name.
inline std::string random_name() {
  return "Ada Lovelace-" + uuid::random().to_string().substr(24, 12);
}

template <class T>
event_data make(const T& payload, const stream_id& stream) {
  auto ev = make_event(payload);
  REQUIRE(ev);
  ev->aggregate_id = stream.aggregate_id;
  ev->aggregate_type = stream.aggregate_type;
  return std::move(*ev);
}

/// The bytes of a file, or an empty string when it does not exist.
inline std::string file_bytes(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return std::string{std::istreambuf_iterator<char>{in},
                     std::istreambuf_iterator<char>{}};
}

inline bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::string key_bytes(const subject_key& key) {
  return std::string{reinterpret_cast<const char*>(key.bytes.data()),
                     key.bytes.size()};
}

/// Reads a whole stream through `store`.
inline recorded_events read_all_of(event_store& store, const stream_id& s) {
  recorded_events result;
  auto err = for_each_in_stream(store, s, {}, [&](recorded_event& ev) {
    result.push_back(ev);
    return caf::error{};
  });
  REQUIRE(!err);
  return result;
}

} // namespace es::test
