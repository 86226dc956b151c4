// The event registry: codecs, lookups and upcaster chains.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_view.hpp"

#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

using namespace es;
using namespace es::test;

namespace {

// Three generations of one event. v1 had a single "name"; v2 split it into
// first and last names; v3 added an email with a default. v1 has no struct
// any more: a JSON upcaster rewrites its text into v2's.
struct customer_registered_v2 {
  static constexpr std::string_view event_type = "CustomerRegistered";
  static constexpr int32_t event_version = 2;
  std::string first_name;
  std::string last_name;
};

template <class F>
bool fields(F& f, customer_registered_v2& x) {
  return f("first_name", x.first_name) && f("last_name", x.last_name);
}

struct customer_registered {
  static constexpr std::string_view event_type = "CustomerRegistered";
  static constexpr int32_t event_version = 3;
  std::string first_name;
  std::string last_name;
  std::string email;
};

template <class F>
bool fields(F& f, customer_registered& x) {
  return f("first_name", x.first_name) && f("last_name", x.last_name)
         && f("email", x.email);
}

caf::expected<std::string> split_name(std::string_view payload) {
  struct v1 {
    std::string name;
  };
  auto doc = json::document::parse(payload);
  if (!doc)
    return std::move(doc.error());
  auto name = doc->root().find("name");
  if (!name || !name->as_string())
    return make_store_error(store_errc::malformed_payload, "v1 needs a name");
  std::string full{*name->as_string()};
  auto space = full.find(' ');
  json::writer out;
  out.begin_object();
  out.key("first_name");
  out.string(full.substr(0, space));
  out.key("last_name");
  out.string(space == std::string::npos ? "" : full.substr(space + 1));
  out.end_object();
  return out.str();
}

event_data stored(std::string type, int32_t version, std::string payload) {
  event_data ev;
  ev.event_id = uuid::random();
  ev.event_type = std::move(type);
  ev.event_version = version;
  ev.payload = std::move(payload);
  return ev;
}

std::shared_ptr<event_registry> make_customer_registry() {
  auto reg = std::make_shared<event_registry>();
  REQUIRE_FALSE(reg->add<customer_registered_v2>());
  REQUIRE_FALSE(reg->add<customer_registered>());
  REQUIRE_FALSE(reg->add_json_upcaster("CustomerRegistered", 1,
                                       "CustomerRegistered", 2, split_name));
  REQUIRE_FALSE((reg->add_upcaster<customer_registered_v2, customer_registered>(
    [](const customer_registered_v2& old) {
      return customer_registered{old.first_name, old.last_name, "unknown"};
    })));
  return reg;
}

} // namespace

TEST_CASE("registered types encode and decode", "[registry]") {
  auto reg = test::make_test_registry();
  test::item_added x{"SKU-1", 3, 250};
  auto ev = make_event(x);
  REQUIRE(ev);
  CHECK(ev->event_type == "ItemAdded");
  CHECK(ev->event_version == 1);
  CHECK(ev->event_id.version() == 7);
  auto back = reg->decode_as<test::item_added>(*ev);
  REQUIRE(back);
  CHECK(*back == x);
  auto any = reg->decode(*ev);
  REQUIRE(any);
  CHECK(any->event_type == "ItemAdded");
  CHECK(std::any_cast<test::item_added>(any->value) == x);
  CHECK(reg->contains("ItemAdded", 1));
  CHECK_FALSE(reg->contains("ItemAdded", 2));
  CHECK(reg->current_version("ItemAdded") == 1);
  CHECK_FALSE(reg->current_version("Nope"));
}

TEST_CASE("registering twice is an error", "[registry]") {
  event_registry reg;
  REQUIRE_FALSE(reg.add<test::item_added>());
  auto err = reg.add<test::item_added>();
  CHECK(has_code(err, store_errc::duplicate_registration));
  auto err2 = reg.add_json_upcaster("ItemAdded", 1, "ItemAdded", 2, split_name);
  CHECK(has_code(err2, store_errc::duplicate_registration));
}

TEST_CASE("unknown types and bad payloads are errors", "[registry]") {
  auto reg = test::make_test_registry();
  auto unknown = reg->decode(stored("Nope", 1, "{}"));
  REQUIRE_FALSE(unknown);
  CHECK(has_code(unknown.error(), store_errc::unknown_event_type));
  auto newer = reg->decode(stored("ItemAdded", 9, "{}"));
  CHECK(has_code(newer.error(), store_errc::unknown_event_type));
  auto wrong = reg->decode_as<test::item_added>(
    stored("ItemAdded", 1, R"({"sku":1,"quantity":1,"price_cents":1})"));
  REQUIRE_FALSE(wrong);
  CHECK(has_code(wrong.error(), store_errc::malformed_payload));
  CHECK(error_description(wrong.error()).find("sku") != std::string::npos);
  auto truncated = reg->decode(stored("ItemAdded", 1, R"({"sku":"x",)"));
  CHECK(has_code(truncated.error(), store_errc::malformed_payload));
  auto other = reg->decode_as<test::note_written>(
    stored("ItemAdded", 1, R"({"sku":"x","quantity":1,"price_cents":1})"));
  CHECK(has_code(other.error(), store_errc::upcast_failed));
}

TEST_CASE("upcasters turn old payloads into the current version",
          "[registry]") {
  auto reg = make_customer_registry();
  CHECK(reg->current_version("CustomerRegistered") == 3);
  SECTION("v1 text goes through the JSON and the typed upcaster") {
    auto res = reg->decode_as<customer_registered>(
      stored("CustomerRegistered", 1, R"({"name":"Ada Lovelace"})"));
    REQUIRE(res);
    CHECK(res->first_name == "Ada");
    CHECK(res->last_name == "Lovelace");
    CHECK(res->email == "unknown");
    auto any = reg->decode(
      stored("CustomerRegistered", 1, R"({"name":"Grace Hopper"})"));
    REQUIRE(any);
    CHECK(any->event_version == 3);
  }
  SECTION("v2 goes through the typed upcaster") {
    auto res = reg->decode_as<customer_registered>(
      stored("CustomerRegistered", 2, R"({"first_name":"A","last_name":"B"})"));
    REQUIRE(res);
    CHECK(res->email == "unknown");
  }
  SECTION("v3 decodes directly") {
    auto res = reg->decode_as<customer_registered>(
      stored("CustomerRegistered", 3,
             R"({"first_name":"A","last_name":"B","email":"a@b"})"));
    REQUIRE(res);
    CHECK(res->email == "a@b");
  }
  SECTION("asking for an old struct is an error") {
    auto res = reg->decode_as<customer_registered_v2>(
      stored("CustomerRegistered", 2, R"({"first_name":"A","last_name":"B"})"));
    CHECK(has_code(res.error(), store_errc::upcast_failed));
  }
  SECTION("a failing upcaster reports upcast_failed") {
    auto res = reg->decode_as<customer_registered>(
      stored("CustomerRegistered", 1, R"({"nom":"x"})"));
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::upcast_failed));
    CHECK(error_description(res.error()).find("v1 needs a name")
          != std::string::npos);
  }
}

TEST_CASE("views decode as their events do", "[registry]") {
  // Stored in SQLite and visited in place, each payload reaches
  // decode_as as a view of the row (owning nothing), and as an owning
  // event through read_all: both must decode alike.
  auto reg = make_customer_registry();
  std::vector<std::pair<int32_t, std::string>> cases{
    {3, R"({"first_name":"A","last_name":"B","email":"a@b"})"},
    {3, R"({"first_name":"A","last_name":"B"})"},
    {2, R"({"first_name":"A","last_name":"B"})"},
    {1, R"({"name":"Ada Lovelace"})"},
    {1, R"({"nom":"x"})"},
    {7, R"({})"},
  };
  temp_dir dir;
  sqlite_config cfg;
  cfg.path = dir.file("events.db");
  auto store = make_sqlite_event_store(cfg);
  REQUIRE(store);
  auto s = new_stream();
  std::vector<event_data> batch;
  for (const auto& [version, payload] : cases)
    batch.push_back(stored("CustomerRegistered", version, payload));
  REQUIRE((*store)->append(s, expected_version::no_stream(), batch));
  auto owned = (*store)->read_all({});
  REQUIRE(owned);
  REQUIRE(owned->events.size() == cases.size());
  size_t i = 0;
  auto visited = (*store)->visit_all({}, [&](const event_view& ev) {
    INFO(ev.event_version() << " " << ev.payload());
    CHECK(ev.owned() == nullptr);
    auto from_view = reg->decode_as<customer_registered>(ev);
    auto from_event = reg->decode_as<customer_registered>(owned->events[i++]);
    REQUIRE(static_cast<bool>(from_view) == static_cast<bool>(from_event));
    if (from_event) {
      CHECK(from_view->first_name == from_event->first_name);
      CHECK(from_view->last_name == from_event->last_name);
      CHECK(from_view->email == from_event->email);
    } else {
      CHECK(from_view.error().code() == from_event.error().code());
      CHECK(error_description(from_view.error())
            == error_description(from_event.error()));
    }
    // A view of an owning event decodes alike.
    auto from_owned = reg->decode_as<customer_registered>(
      recorded_event_view{owned->events[i - 1]});
    CHECK(static_cast<bool>(from_owned) == static_cast<bool>(from_event));
    return true;
  });
  REQUIRE(visited);
  CHECK(i == cases.size());
  // A bad payload that never reached a store, viewed.
  recorded_event bad;
  static_cast<event_data&>(bad)
    = stored("CustomerRegistered", 3, R"({"first_name":"A",)");
  auto truncated
    = reg->decode_as<customer_registered>(recorded_event_view{bad});
  REQUIRE_FALSE(truncated);
  CHECK(has_code(truncated.error(), store_errc::malformed_payload));
  CHECK(error_description(truncated.error())
        == error_description(reg->decode_as<customer_registered>(bad).error()));
  // A payload asked for as a struct it does not decode into.
  auto old = reg->decode_as<customer_registered_v2>(
    recorded_event_view{owned->events[2]});
  REQUIRE_FALSE(old);
  CHECK(has_code(old.error(), store_errc::upcast_failed));
}

TEST_CASE("upcasters need registered ends and a newer target", "[registry]") {
  event_registry reg;
  auto err = reg.add_upcaster<customer_registered_v2, customer_registered>(
    [](const customer_registered_v2&) {
      return customer_registered{};
    });
  CHECK(has_code(err, store_errc::invalid_argument));
  REQUIRE_FALSE(reg.add<customer_registered_v2>());
  REQUIRE_FALSE(reg.add<customer_registered>());
  auto backwards
    = reg.add_upcaster<customer_registered, customer_registered_v2>(
      [](const customer_registered&) {
        return customer_registered_v2{};
      });
  CHECK(has_code(backwards, store_errc::invalid_argument));
  auto json_backwards = reg.add_json_upcaster("X", 3, "X", 2, split_name);
  CHECK(has_code(json_backwards, store_errc::invalid_argument));
}
