// Fuzzes event_registry decoding: upcaster chains, JSON upcasters and
// unknown types.
//
// The registry knows:
// - Widget v1 -> v2 -> v3 with typed upcasters (v2 -> v3 fails for a
//   negative size);
// - LegacyWidget v1, a version without struct whose JSON upcaster rewrites
//   {"label": ...} into Widget v1's text;
// - Note v1, without upcasters.
// The first input byte picks the type name (those above, unknown ones, an
// empty one), the second the version, the rest is the payload. Invariants:
// - no exception escapes; errors are unknown_event_type, malformed_payload
//   or upcast_failed, as event_registry::decode documents;
// - decode, validate and decode_as agree;
// - a decoded Widget equals the result of decoding its stored version with
//   the codec and applying the upcasters by hand.
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/json.hpp"

#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace es;
using es::fuzz::check;

namespace {

struct widget_v1 {
  static constexpr std::string_view event_type = "Widget";
  static constexpr int32_t event_version = 1;
  std::string name;
};

template <class F>
bool fields(F& f, widget_v1& x) {
  return f("name", x.name);
}

struct widget_v2 {
  static constexpr std::string_view event_type = "Widget";
  static constexpr int32_t event_version = 2;
  std::string name;
  int32_t size = 0;
};

template <class F>
bool fields(F& f, widget_v2& x) {
  return f("name", x.name) && f("size", x.size);
}

struct widget {
  static constexpr std::string_view event_type = "Widget";
  static constexpr int32_t event_version = 3;
  std::string title;
  int64_t size = 0;
  std::vector<std::string> tags;

  friend bool operator==(const widget&, const widget&) = default;
};

template <class F>
bool fields(F& f, widget& x) {
  return f("title", x.title) && f("size", x.size) && f("tags", x.tags);
}

struct note {
  static constexpr std::string_view event_type = "Note";
  static constexpr int32_t event_version = 1;
  std::string text;
  std::optional<uuid> about;

  friend bool operator==(const note&, const note&) = default;
};

template <class F>
bool fields(F& f, note& x) {
  return f("text", x.text) && f("about", x.about);
}

widget_v2 upcast_v1(const widget_v1& x) {
  return {x.name, 1};
}

caf::expected<widget> upcast_v2(const widget_v2& x) {
  if (x.size < 0)
    return make_store_error(store_errc::invalid_argument, "negative size");
  return widget{x.name, x.size, {}};
}

/// LegacyWidget v1 {"label": "..."} becomes Widget v1 {"name": "..."}.
caf::expected<std::string> upcast_legacy(std::string_view payload) {
  auto doc = json::document::parse(payload);
  if (!doc)
    return std::move(doc.error());
  auto label = doc->root().find("label");
  if (!label || !label->as_string())
    return make_store_error(store_errc::malformed_payload, "no label");
  json::writer out;
  out.begin_object();
  out.key("name");
  out.string(*label->as_string());
  out.end_object();
  return out.str();
}

std::shared_ptr<event_registry> make_registry() {
  auto reg = std::make_shared<event_registry>();
  auto ok
    = !reg->add<widget_v1>() && !reg->add<widget_v2>() && !reg->add<widget>()
      && !reg->add<note>()
      && !reg->add_upcaster<widget_v1, widget_v2>(upcast_v1)
      && !reg->add_upcaster<widget_v2, widget>(upcast_v2)
      && !reg->add_json_upcaster("LegacyWidget", 1, "Widget", 1, upcast_legacy);
  check(ok, "registry set-up failed");
  return reg;
}

const event_registry& registry() {
  static auto reg = make_registry();
  return *reg;
}

/// What decoding `ev` must give, computed without the registry.
struct expectation {
  /// Set when decoding must succeed with this Widget or Note.
  std::optional<widget> w;
  std::optional<note> n;
  /// Otherwise the error code.
  store_errc code = store_errc::internal;
};

/// Decodes a Widget payload of `version` with the codec and upcasts it.
expectation expect_widget(int32_t version, std::string_view payload) {
  expectation result;
  result.code = store_errc::malformed_payload;
  auto v2 = [&]() -> std::optional<widget_v2> {
    if (version == 1) {
      auto x = from_json<widget_v1>(payload);
      if (!x)
        return std::nullopt;
      return upcast_v1(*x);
    }
    if (version == 2) {
      auto x = from_json<widget_v2>(payload);
      if (!x)
        return std::nullopt;
      return *x;
    }
    return std::nullopt;
  };
  if (version == 3) {
    if (auto x = from_json<widget>(payload))
      result.w = *x;
    return result;
  }
  auto x = v2();
  if (!x)
    return result;
  auto w = upcast_v2(*x);
  if (!w)
    result.code = store_errc::upcast_failed;
  else
    result.w = *w;
  return result;
}

expectation expect(const event_data& ev) {
  expectation result;
  if (ev.event_type == "Widget" && ev.event_version >= 1
      && ev.event_version <= 3)
    return expect_widget(ev.event_version, ev.payload);
  if (ev.event_type == "Note" && ev.event_version == 1) {
    result.code = store_errc::malformed_payload;
    if (auto x = from_json<note>(ev.payload))
      result.n = *x;
    return result;
  }
  if (ev.event_type == "LegacyWidget" && ev.event_version == 1) {
    auto text = upcast_legacy(ev.payload);
    if (!text) {
      result.code = store_errc::upcast_failed;
      return result;
    }
    return expect_widget(1, *text);
  }
  result.code = store_errc::unknown_event_type;
  return result;
}

constexpr std::string_view type_names[] = {
  "Widget", "Note", "LegacyWidget", "", "widget", "Widget ", "Unknown", "Note",
};

constexpr int32_t versions[] = {
  1,
  2,
  3,
  0,
  4,
  -1,
  std::numeric_limits<int32_t>::max(),
  std::numeric_limits<int32_t>::min(),
};

void run(const uint8_t* data, size_t size) {
  if (size < 2)
    return;
  event_data ev;
  ev.event_type = type_names[data[0] % std::size(type_names)];
  ev.event_version = versions[data[1] % std::size(versions)];
  ev.payload.assign(reinterpret_cast<const char*>(data + 2), size - 2);
  const auto& reg = registry();
  auto want = expect(ev);
  auto decoded = reg.decode(ev);
  auto checked = reg.validate(ev);
  auto as_widget = reg.decode_as<widget>(ev);
  auto as_note = reg.decode_as<note>(ev);
  if (!decoded) {
    const auto& err = decoded.error();
    fuzz::check_code(err,
                     {store_errc::unknown_event_type,
                      store_errc::malformed_payload, store_errc::upcast_failed},
                     "decode");
    check(!want.w && !want.n,
          "decode refuses a decodable event: " + describe(err));
    check(has_code(err, want.code), "decode fails with " + describe(err)
                                      + ", expected " + to_string(want.code));
    check(checked == err, "validate and decode disagree");
    check(!as_widget && as_widget.error() == err, "decode_as<widget> differs");
    check(!as_note && as_note.error() == err, "decode_as<note> differs");
    check(has_code(err, store_errc::unknown_event_type)
            != reg.contains(ev.event_type, ev.event_version),
          "unknown_event_type disagrees with contains()");
    return;
  }
  check(!checked, "validate refuses a decodable event: " + describe(checked));
  if (const auto* w = decoded->as<widget>()) {
    check(decoded->event_type == "Widget" && decoded->event_version == 3,
          "a widget decodes into the wrong version");
    check(want.w && *want.w == *w, "decoded widget differs from the codec's");
    check(as_widget && *as_widget == *w, "decode_as<widget> differs");
    check(!as_note && has_code(as_note.error(), store_errc::upcast_failed),
          "decode_as<note> accepts a widget");
  } else if (const auto* n = decoded->as<note>()) {
    check(decoded->event_type == "Note" && decoded->event_version == 1,
          "a note decodes into the wrong version");
    check(want.n && *want.n == *n, "decoded note differs from the codec's");
    check(as_note && *as_note == *n, "decode_as<note> differs");
    check(!as_widget && has_code(as_widget.error(), store_errc::upcast_failed),
          "decode_as<widget> accepts a note");
  } else {
    fuzz::fail("decode returned an unexpected type");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    run(data, size);
  } catch (const std::exception& e) {
    fuzz::fail(std::string{"exception escaped: "} + e.what());
  }
  return 0;
}
