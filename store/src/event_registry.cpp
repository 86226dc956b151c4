#include "es/store/event_registry.hpp"

#include <map>
#include <mutex>
#include <shared_mutex>

namespace es {

namespace {

using key_type = std::pair<std::string, int32_t>;

std::string key_text(std::string_view type, int32_t version) {
  std::string result{type};
  result += " v";
  result += std::to_string(version);
  return result;
}

} // namespace

struct event_registry::impl {
  struct entry {
    /// Set for versions that have a struct.
    std::optional<entry_codec> codec;
    /// Set for versions that upcast to a newer one.
    std::optional<key_type> next;
    upcast_fn typed_upcast;
    json_upcaster json_upcast;
  };

  /// Orders keys by (type, version), and compares them with a type given
  /// as a view, so that a lookup copies no name.
  struct key_less {
    using is_transparent = void;
    using view = std::pair<std::string_view, int32_t>;
    static view as_view(const key_type& k) noexcept {
      return {k.first, k.second};
    }
    static view as_view(const view& k) noexcept {
      return k;
    }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return as_view(a) < as_view(b);
    }
  };

  mutable std::shared_mutex mtx;
  std::map<key_type, entry, key_less> entries;
  json::parse_limits limits;

  const entry* find(std::string_view type, int32_t version) const {
    auto i = entries.find(key_less::view{type, version});
    return i == entries.end() ? nullptr : &i->second;
  }
};

event_registry::event_registry() : impl_(std::make_unique<impl>()) {
  // nop
}

event_registry::~event_registry() {
  // nop
}

caf::error event_registry::add_codec(std::string type, int32_t version,
                                     entry_codec codec) {
  if (type.empty() || version < 1)
    return make_store_error(store_errc::invalid_argument,
                            "event types need a name and a version >= 1");
  std::unique_lock guard{impl_->mtx};
  auto& e = impl_->entries[key_type{type, version}];
  if (e.codec || e.json_upcast)
    return make_store_error(store_errc::duplicate_registration,
                            key_text(type, version) + " is already registered");
  e.codec = std::move(codec);
  return caf::none;
}

caf::error
event_registry::add_typed_upcaster(std::string from_type, int32_t from_version,
                                   std::string to_type, int32_t to_version,
                                   upcast_fn fn) {
  if (from_type == to_type && to_version <= from_version)
    return make_store_error(store_errc::invalid_argument,
                            "an upcaster must lead to a newer version");
  std::unique_lock guard{impl_->mtx};
  auto from = impl_->entries.find(key_type{from_type, from_version});
  auto to = impl_->entries.find(key_type{to_type, to_version});
  if (from == impl_->entries.end() || !from->second.codec
      || to == impl_->entries.end() || !to->second.codec)
    return make_store_error(store_errc::invalid_argument,
                            "register both structs before the upcaster "
                              + key_text(from_type, from_version) + " -> "
                              + key_text(to_type, to_version));
  if (from->second.next)
    return make_store_error(store_errc::duplicate_registration,
                            key_text(from_type, from_version)
                              + " already has an upcaster");
  from->second.next = key_type{std::move(to_type), to_version};
  from->second.typed_upcast = std::move(fn);
  return caf::none;
}

caf::error
event_registry::add_json_upcaster(std::string type, int32_t from_version,
                                  std::string to_type, int32_t to_version,
                                  json_upcaster fn) {
  if (type.empty() || to_type.empty() || from_version < 1 || !fn)
    return make_store_error(store_errc::invalid_argument,
                            "a JSON upcaster needs types, versions >= 1 and "
                            "a function");
  if (type == to_type && to_version <= from_version)
    return make_store_error(store_errc::invalid_argument,
                            "an upcaster must lead to a newer version");
  std::unique_lock guard{impl_->mtx};
  auto& e = impl_->entries[key_type{type, from_version}];
  if (e.codec || e.json_upcast)
    return make_store_error(store_errc::duplicate_registration,
                            key_text(type, from_version)
                              + " is already registered");
  e.next = key_type{std::move(to_type), to_version};
  e.json_upcast = std::move(fn);
  return caf::none;
}

bool event_registry::contains(std::string_view type, int32_t version) const {
  std::shared_lock guard{impl_->mtx};
  return impl_->find(type, version) != nullptr;
}

std::optional<int32_t>
event_registry::current_version(std::string_view type) const {
  std::shared_lock guard{impl_->mtx};
  const impl::entry* newest = nullptr;
  key_type key;
  for (const auto& [k, e] : impl_->entries)
    if (k.first == type) {
      newest = &e;
      key = k;
    }
  // Follow upcasters from the newest version of `type` (bounded to avoid
  // looping on a malformed chain).
  for (int hops = 0; newest && newest->next && hops < 1000; ++hops) {
    key = *newest->next;
    newest = impl_->find(key.first, key.second);
  }
  if (newest == nullptr)
    return std::nullopt;
  return key.second;
}

std::vector<std::pair<std::string, int32_t>>
event_registry::registered() const {
  std::shared_lock guard{impl_->mtx};
  std::vector<std::pair<std::string, int32_t>> result;
  for (const auto& kv : impl_->entries)
    result.push_back(kv.first);
  return result;
}

void event_registry::set_parse_limits(json::parse_limits limits) {
  std::unique_lock guard{impl_->mtx};
  impl_->limits = limits;
}

caf::expected<std::any> event_registry::decode_into(const event_data& ev,
                                                    std::type_index wanted,
                                                    decoded_event* info) const {
  std::shared_lock guard{impl_->mtx};
  const auto* e = impl_->find(ev.event_type, ev.event_version);
  if (e == nullptr)
    return make_store_error(store_errc::unknown_event_type,
                            "no codec for "
                              + key_text(ev.event_type, ev.event_version));
  key_type key{ev.event_type, ev.event_version};
  // JSON upcasters first: they rewrite the text of versions without struct.
  std::string text;
  std::string_view payload = ev.payload;
  int hops = 0;
  while (e->json_upcast) {
    if (++hops > 1000)
      return make_store_error(store_errc::upcast_failed, "upcaster cycle");
    auto next = e->json_upcast(payload);
    if (!next)
      return make_store_error(store_errc::upcast_failed,
                              key_text(key.first, key.second)
                                + ": JSON upcaster failed: "
                                + describe(next.error()));
    text = std::move(*next);
    payload = text;
    key = *e->next;
    e = impl_->find(key.first, key.second);
    if (e == nullptr)
      return make_store_error(store_errc::upcast_failed,
                              "upcaster leads to unregistered "
                                + key_text(key.first, key.second));
  }
  if (!e->codec)
    return make_store_error(store_errc::upcast_failed,
                            key_text(key.first, key.second) + " has no struct");
  auto value = e->codec->decode(payload, impl_->limits);
  if (!value)
    return make_store_error(store_errc::malformed_payload,
                            key_text(key.first, key.second) + ": "
                              + error_description(value.error()));
  while (e->next) {
    if (++hops > 1000)
      return make_store_error(store_errc::upcast_failed, "upcaster cycle");
    auto next = e->typed_upcast(*value);
    if (!next)
      return make_store_error(store_errc::upcast_failed,
                              key_text(key.first, key.second)
                                + ": upcaster failed: "
                                + describe(next.error()));
    value = std::move(next);
    key = *e->next;
    e = impl_->find(key.first, key.second);
    if (e == nullptr || !e->codec)
      return make_store_error(store_errc::upcast_failed,
                              "upcaster leads to unregistered "
                                + key_text(key.first, key.second));
  }
  if (wanted != std::type_index(typeid(void)) && e->codec->type != wanted)
    return make_store_error(
      store_errc::upcast_failed,
      key_text(ev.event_type, ev.event_version) + " decodes into "
        + key_text(key.first, key.second) + ", not the requested type");
  if (info != nullptr) {
    info->event_type = key.first;
    info->event_version = key.second;
  }
  return value;
}

bool event_registry::decode_direct(std::string_view type, int32_t version,
                                   std::string_view payload,
                                   std::type_index wanted, void* out,
                                   caf::error& err) const {
  std::shared_lock guard{impl_->mtx};
  const auto* e = impl_->find(type, version);
  if (e == nullptr || !e->codec || e->codec->type != wanted || e->next
      || e->json_upcast)
    return false;
  err = e->codec->decode_to(payload, impl_->limits, out);
  if (err)
    err = make_store_error(store_errc::malformed_payload,
                           key_text(type, version) + ": "
                             + error_description(err));
  return true;
}

caf::expected<decoded_event>
event_registry::decode(const event_data& ev) const {
  decoded_event result;
  auto value = decode_into(ev, std::type_index(typeid(void)), &result);
  if (!value)
    return std::move(value.error());
  result.value = std::move(*value);
  return result;
}

caf::error event_registry::validate(const event_data& ev) const {
  auto res = decode_into(ev, std::type_index(typeid(void)), nullptr);
  if (!res)
    return std::move(res.error());
  return caf::none;
}

} // namespace es
