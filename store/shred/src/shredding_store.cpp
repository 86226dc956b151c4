// The shredding event store and the payload transformations under it.
#include "es/shred/shredding_store.hpp"

#include "es/shred/errors.hpp"
#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include "crypto.hpp"

#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <utility>

namespace es {

namespace {

// -- helpers ------------------------------------------------------------------

std::string event_label(const event_data& ev) {
  return "event " + ev.event_id.to_string() + " (" + ev.event_type + ")";
}

/// What binds a ciphertext to its place: a value sealed for one event, one
/// subject, one key and one member does not open anywhere else.
std::string associated_data(const event_data& ev, const std::string& subject,
                            const std::string& key_id, std::string_view field) {
  std::string ad = "es.shred.v1";
  ad += '\0';
  ad += ev.event_id.to_string();
  ad += '\0';
  ad += subject;
  ad += '\0';
  ad += key_id;
  ad += '\0';
  ad += field;
  return ad;
}

/// Whether `text` may have a top-level member `name` (a cheap filter before
/// parsing).
bool may_have_member(std::string_view text, std::string_view name) {
  std::string quoted;
  quoted.reserve(name.size() + 2);
  quoted += '"';
  quoted += name;
  quoted += '"';
  return text.find(quoted) != std::string_view::npos;
}

std::string write_value(const json::value& v) {
  json::writer out;
  v.write_to(out);
  return out.str();
}

/// Returns `text` as the JSON writer writes it, so two payloads that differ
/// only in spacing compare equal.
std::optional<std::string> normalized(std::string_view text) {
  auto doc = json::document::parse(text);
  if (!doc)
    return std::nullopt;
  return write_value(doc->root());
}

caf::error reserved_members(const event_data& ev) {
  // The filter looks for the names without their "$": a payload may spell
  // the dollar as an escape ("\u0024pii").
  if (ev.payload.find(pii_member.substr(1)) == std::string::npos
      && ev.payload.find(erased_member.substr(1)) == std::string::npos)
    return caf::none;
  auto doc = json::document::parse(ev.payload);
  if (!doc)
    return caf::none; // the inner store reports it
  auto root = doc->root();
  if (root.find(pii_member) || root.find(erased_member))
    return make_store_error(store_errc::invalid_argument,
                            event_label(ev) + ": the payload members "
                              + std::string{pii_member} + " and "
                              + std::string{erased_member}
                              + " are reserved for crypto-shredding");
  return caf::none;
}

/// The subject id an event's rule names, or an error.
caf::expected<std::string>
subject_of(const shredding_policy::rule& r, const event_data& ev,
           const json::value& root, const stream_id& stream,
           std::string_view first_personal) {
  auto missing = [&](std::string why) {
    return make_shred_error(shred_errc::missing_subject,
                            event_label(ev) + ": personal field "
                              + std::string{first_personal} + " is set but "
                              + why);
  };
  if (!r.subject_field.empty()) {
    auto member = root.find(r.subject_field);
    if (!member || member->type() == json::kind::null)
      return missing("subject field " + r.subject_field + " is missing");
    if (auto s = member->as_string()) {
      if (s->empty())
        return missing("subject field " + r.subject_field + " is empty");
      return std::string{*s};
    }
    if (auto i = member->as_int64())
      return std::to_string(*i);
    if (auto u = member->as_uint64())
      return std::to_string(*u);
    return missing("subject field " + r.subject_field
                   + " is neither a string nor an integer");
  }
  auto copy = ev;
  if (copy.aggregate_id.is_nil())
    copy.aggregate_id = stream.aggregate_id;
  if (copy.aggregate_type.empty())
    copy.aggregate_type = stream.aggregate_type;
  auto id = r.subject(copy);
  if (!id)
    return missing("the subject function failed: " + describe(id.error()));
  if (id->empty())
    return missing("the subject function returned an empty id");
  return id;
}

// -- encryption ---------------------------------------------------------------

/// The subject and key an event was encrypted for.
struct sealed_for {
  std::string subject;
  std::string key_id;
};

/// Encrypts the personal members of `ev` in place. Returns nullopt when the
/// event holds no personal data.
caf::expected<std::optional<sealed_for>>
encrypt_event(const shredding_policy& policy, key_store& keys,
              const stream_id& stream, event_data& ev) {
  if (auto err = reserved_members(ev))
    return err;
  const auto* r = policy.find(ev.event_type);
  if (r == nullptr)
    return std::optional<sealed_for>{};
  auto doc = json::document::parse(ev.payload);
  if (!doc)
    return std::move(doc.error());
  auto root = doc->root();
  if (root.type() != json::kind::object)
    return make_store_error(store_errc::malformed_payload,
                            event_label(ev)
                              + ": the payload is not a JSON "
                                "object");
  std::set<std::string_view> personal(r->fields.begin(), r->fields.end());
  std::string_view first_set;
  for (size_t i = 0; i < root.size(); ++i)
    if (personal.count(root.member_name(i)) > 0
        && root.member_value(i).type() != json::kind::null) {
      first_set = root.member_name(i);
      break;
    }
  if (first_set.empty())
    return std::optional<sealed_for>{};
  auto subject = subject_of(*r, ev, root, stream, first_set);
  if (!subject)
    return std::move(subject.error());
  // A NUL would cut the id short in a key store's text column and seal
  // under another subject's key.
  if (subject->find('\0') != std::string::npos)
    return make_store_error(store_errc::invalid_argument,
                            event_label(ev)
                              + ": the subject id contains a NUL character");
  // A personal member given twice would be sealed twice, and the stored
  // event could not be opened again.
  std::set<std::string_view> seen;
  for (size_t i = 0; i < root.size(); ++i)
    if (personal.count(root.member_name(i)) > 0
        && !seen.insert(root.member_name(i)).second)
      return make_store_error(store_errc::malformed_payload,
                              event_label(ev) + ": personal field "
                                + std::string{root.member_name(i)}
                                + " appears twice");
  auto key = keys.get_or_create_key(*subject);
  if (!key)
    return std::move(key.error());
  json::writer out;
  std::vector<std::pair<std::string_view, std::string>> sealed;
  out.begin_object();
  for (size_t i = 0; i < root.size(); ++i) {
    auto name = root.member_name(i);
    auto value = root.member_value(i);
    out.key(name);
    if (personal.count(name) == 0 || value.type() == json::kind::null) {
      value.write_to(out);
      continue;
    }
    if (value.type() == json::kind::string)
      out.string(encrypted_placeholder);
    else
      out.null();
    auto plain = write_value(value);
    auto box = shred_detail::seal(
      key->bytes, plain, associated_data(ev, *subject, key->key_id, name));
    shred_detail::wipe(plain.data(), plain.size());
    sealed.emplace_back(name, shred_detail::to_base64(box));
  }
  out.key(pii_member);
  out.begin_object();
  out.key("v");
  out.integer(1);
  out.key("subject");
  out.string(*subject);
  out.key("key");
  out.string(key->key_id);
  out.key("fields");
  out.begin_object();
  for (const auto& [name, box] : sealed) {
    out.key(name);
    out.string(box);
  }
  out.end_object();
  out.end_object();
  out.end_object();
  auto text = out.str();
  // The parsed plaintext goes away with `doc`; the old text is overwritten.
  shred_detail::wipe(ev.payload.data(), ev.payload.size());
  ev.payload = std::move(text);
  return std::optional<sealed_for>{
    sealed_for{std::move(*subject), std::move(key->key_id)}};
}

// -- decryption ---------------------------------------------------------------

/// The `$pii` member of one stored payload, parsed.
struct envelope {
  event_data* ev = nullptr;
  json::document doc;
  std::string subject;
  std::string key_id;
  /// Member name to sealed bytes.
  std::map<std::string, std::string, std::less<>> fields;
};

caf::error malformed(const event_data& ev, std::string what) {
  return make_shred_error(shred_errc::malformed_ciphertext,
                          event_label(ev) + ": " + what);
}

/// Parses the envelope of `ev`, or returns nullopt when it has none.
caf::expected<std::optional<envelope>> parse_envelope(event_data& ev) {
  if (!may_have_member(ev.payload, pii_member))
    return std::optional<envelope>{};
  auto doc = json::document::parse(ev.payload);
  if (!doc)
    return malformed(ev, "the payload is not JSON: " + describe(doc.error()));
  auto root = doc->root();
  auto pii = root.find(pii_member);
  if (!pii)
    return std::optional<envelope>{};
  envelope env{&ev, std::move(*doc), {}, {}, {}};
  auto v = pii->find("v");
  auto subject = pii->find("subject");
  auto key = pii->find("key");
  auto fields = pii->find("fields");
  if (!v || v->as_int64() != 1)
    return malformed(ev, "unknown $pii version");
  if (!subject || !subject->as_string() || subject->as_string()->empty() || !key
      || !key->as_string() || !fields || fields->type() != json::kind::object)
    return malformed(ev, "$pii lacks its subject, key or fields");
  env.subject = std::string{*subject->as_string()};
  env.key_id = std::string{*key->as_string()};
  for (size_t i = 0; i < fields->size(); ++i) {
    auto name = fields->member_name(i);
    auto text = fields->member_value(i).as_string();
    if (!text)
      return malformed(ev, "sealed field " + std::string{name}
                             + " is not a string");
    auto bytes = shred_detail::from_base64(*text);
    if (!bytes)
      return malformed(ev,
                       "sealed field " + std::string{name} + " is not base64");
    if (!root.find(name))
      return malformed(ev, "sealed field " + std::string{name}
                             + " has no member in the payload");
    if (!env.fields.emplace(std::string{name}, std::move(*bytes)).second)
      return malformed(ev,
                       "sealed field " + std::string{name} + " appears twice");
  }
  return std::optional<envelope>{std::move(env)};
}

/// Rewrites the payload of `env.ev` with its fields opened by `key`, or
/// erased when `key` is null.
caf::error open_envelope(envelope& env, const subject_key* key) {
  auto& ev = *env.ev;
  std::map<std::string_view, json::document> opened;
  if (key != nullptr) {
    for (const auto& [name, box] : env.fields) {
      auto plain = shred_detail::open(
        key->bytes, box, associated_data(ev, env.subject, env.key_id, name));
      if (!plain)
        return make_shred_error(shred_errc::decryption_failed,
                                event_label(ev) + ": field " + name
                                  + " does not authenticate under the key "
                                    "of subject "
                                  + env.subject
                                  + " (changed in the database?)");
      auto doc = json::document::parse(*plain);
      shred_detail::wipe(plain->data(), plain->size());
      if (!doc)
        return malformed(ev, "field " + name + " opens to no JSON value");
      opened.emplace(name, std::move(*doc));
    }
  }
  auto root = env.doc.root();
  json::writer out;
  std::vector<std::string_view> erased;
  out.begin_object();
  for (size_t i = 0; i < root.size(); ++i) {
    auto name = root.member_name(i);
    if (name == pii_member)
      continue;
    auto value = root.member_value(i);
    out.key(name);
    if (env.fields.count(name) == 0) {
      value.write_to(out);
    } else if (auto j = opened.find(name); j != opened.end()) {
      j->second.root().write_to(out);
    } else {
      erased.push_back(name);
      if (value.type() == json::kind::string)
        out.string(erased_marker);
      else
        out.null();
    }
  }
  if (!erased.empty()) {
    out.key(erased_member);
    out.begin_array();
    for (auto name : erased)
      out.string(name);
    out.end_array();
  }
  out.end_object();
  ev.payload = out.str();
  return caf::none;
}

caf::error decrypt_all(key_store& keys,
                       const std::vector<event_data*>& events) {
  std::vector<envelope> envs;
  std::vector<std::string> subjects;
  for (auto* ev : events) {
    auto env = parse_envelope(*ev);
    if (!env)
      return std::move(env.error());
    if (!*env)
      continue;
    subjects.push_back((*env)->subject);
    envs.push_back(std::move(**env));
  }
  if (envs.empty())
    return caf::none;
  std::sort(subjects.begin(), subjects.end());
  subjects.erase(std::unique(subjects.begin(), subjects.end()), subjects.end());
  auto found = keys.get_keys(subjects);
  if (!found)
    return std::move(found.error());
  for (auto& env : envs) {
    const subject_key* key = nullptr;
    if (auto i = found->find(env.subject);
        i != found->end() && i->second.key_id == env.key_id)
      key = &i->second;
    if (auto err = open_envelope(env, key))
      return err;
  }
  return caf::none;
}

// -- the decorator ------------------------------------------------------------

class shredding_store final : public event_store {
public:
  shredding_store(event_store_ptr inner, key_store_ptr keys,
                  shredding_policy policy)
    : inner_(std::move(inner)), keys_(std::move(keys)),
      policy_(std::move(policy)) {
    // nop
  }

  std::string name() const override {
    return inner_->name();
  }

  bool blocking() const override {
    return inner_->blocking() || keys_->blocking();
  }

  caf::expected<append_result> append(const stream_id& stream,
                                      expected_version expected,
                                      event_batch events) override {
    auto sealed = events;
    if (auto err = encrypt_batch(stream, sealed))
      return err;
    auto res = inner_->append(stream, expected, sealed);
    if (!res && has_code(res.error(), store_errc::idempotency_conflict)
        && reuse_stored(events, sealed))
      return inner_->append(stream, expected, std::move(sealed));
    return res;
  }

  std::vector<caf::expected<append_result>>
  append_many(std::vector<append_request> requests) override {
    std::vector<caf::expected<append_result>> results(
      requests.size(), caf::expected<append_result>{append_result{}});
    std::vector<append_request> sealed;
    std::vector<size_t> index;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto req = requests[i];
      if (auto err = encrypt_batch(req.stream, req.events)) {
        results[i] = std::move(err);
        continue;
      }
      index.push_back(i);
      sealed.push_back(std::move(req));
    }
    if (sealed.empty())
      return results;
    auto copies = sealed;
    auto inner_results = inner_->append_many(std::move(sealed));
    for (size_t j = 0; j < inner_results.size() && j < index.size(); ++j) {
      auto i = index[j];
      auto& res = inner_results[j];
      if (!res && has_code(res.error(), store_errc::idempotency_conflict)
          && reuse_stored(requests[i].events, copies[j].events))
        res = inner_->append(copies[j].stream, copies[j].expected,
                             std::move(copies[j].events));
      results[i] = std::move(res);
    }
    return results;
  }

  caf::expected<std::vector<append_result>>
  append_atomic(std::vector<append_request> requests) override {
    auto sealed = requests;
    for (auto& req : sealed)
      if (auto err = encrypt_batch(req.stream, req.events))
        return err;
    auto copies = sealed;
    auto res = inner_->append_atomic(std::move(sealed));
    if (res || !has_code(res.error(), store_errc::idempotency_conflict))
      return res;
    // A re-sent call: send the stored ciphertext of what is stored already.
    bool changed = false;
    for (size_t i = 0; i < requests.size(); ++i)
      changed = reuse_stored(requests[i].events, copies[i].events) || changed;
    if (!changed)
      return res;
    return inner_->append_atomic(std::move(copies));
  }

  caf::expected<all_slice>
  read_correlated(const uuid& correlation_id,
                  const read_all_options& options) override {
    auto res = inner_->read_correlated(correlation_id, options);
    if (res)
      if (auto err = decrypt(res->events))
        return err;
    return res;
  }

  caf::expected<stream_slice>
  read_stream(const stream_id& stream,
              const read_stream_options& options) override {
    auto res = inner_->read_stream(stream, options);
    if (res)
      if (auto err = decrypt(res->events))
        return err;
    return res;
  }

  caf::expected<all_slice> read_all(const read_all_options& options) override {
    auto res = inner_->read_all(options);
    if (res)
      if (auto err = decrypt(res->events))
        return err;
    return res;
  }

  caf::expected<int64_t> stream_version(const stream_id& stream) override {
    return inner_->stream_version(stream);
  }

  caf::expected<std::optional<recorded_event>>
  find_event(const uuid& event_id) override {
    auto res = inner_->find_event(event_id);
    if (res && *res) {
      recorded_events one{std::move(**res)};
      if (auto err = decrypt(one))
        return err;
      return std::optional<recorded_event>{std::move(one.front())};
    }
    return res;
  }

  caf::expected<bool> event_exists(const uuid& event_id) override {
    return inner_->event_exists(event_id);
  }

  caf::expected<int64_t> head_position() override {
    return inner_->head_position();
  }

  store_metrics metrics() const override {
    return inner_->metrics();
  }

  store_health check_health() override {
    return inner_->check_health();
  }

  const store_limits& limits() const override {
    return inner_->limits();
  }

private:
  /// Encrypts every event of one append and records its stream with the
  /// subjects it holds data of. On error nothing was appended.
  caf::error encrypt_batch(const stream_id& stream, event_batch& events) {
    std::vector<sealed_for> used;
    for (auto& ev : events) {
      auto res = encrypt_event(policy_, *keys_, stream, ev);
      if (!res)
        return std::move(res.error());
      if (*res)
        used.push_back(std::move(**res));
    }
    for (const auto& s : used)
      if (auto err = record_stream(s, stream))
        return err;
    return caf::none;
  }

  /// Records (subject, stream) once per key: a subject forgotten and
  /// written again gets a new key id, so its stream is recorded again.
  caf::error record_stream(const sealed_for& s, const stream_id& stream) {
    auto entry = std::make_tuple(s.subject, s.key_id, stream);
    {
      std::lock_guard guard{mtx_};
      if (recorded_.count(entry) > 0)
        return caf::none;
    }
    if (auto err = keys_->add_stream(s.subject, stream))
      return err;
    std::lock_guard guard{mtx_};
    if (recorded_.size() >= max_recorded)
      recorded_.clear();
    recorded_.insert(std::move(entry));
    return caf::none;
  }

  /// After an `idempotency_conflict`: when every event of `plain` that is
  /// stored already has the same plaintext, puts the stored ciphertext into
  /// `sealed`, so that sending it again is answered as a replay. Returns
  /// whether it changed anything.
  bool reuse_stored(const event_batch& plain, event_batch& sealed) {
    bool changed = false;
    for (size_t i = 0; i < plain.size(); ++i) {
      auto found = inner_->find_event(plain[i].event_id);
      if (!found)
        return false;
      if (!*found)
        continue;
      auto stored = **found;
      if (auto err = decrypt_all(*keys_, {&stored}))
        return false;
      auto want = normalized(plain[i].payload);
      auto have = normalized(stored.payload);
      if (!want || !have || *want != *have)
        return false;
      if (sealed[i].payload != (*found)->payload) {
        sealed[i].payload = (*found)->payload;
        changed = true;
      }
    }
    return changed;
  }

  caf::error decrypt(recorded_events& events) {
    std::vector<event_data*> ptrs;
    ptrs.reserve(events.size());
    for (auto& ev : events)
      ptrs.push_back(&ev);
    return decrypt_all(*keys_, ptrs);
  }

  static constexpr size_t max_recorded = 100'000;

  event_store_ptr inner_;
  key_store_ptr keys_;
  shredding_policy policy_;
  std::mutex mtx_;
  std::set<std::tuple<std::string, std::string, stream_id>> recorded_;
};

} // namespace

caf::expected<event_store_ptr> make_shredding_store(event_store_ptr inner,
                                                    key_store_ptr keys,
                                                    shredding_policy policy) {
  if (!inner || !keys)
    return make_store_error(store_errc::invalid_argument,
                            "a shredding store needs an event store and a key "
                            "store");
  if (auto err = shred_detail::ensure_sodium())
    return err;
  return std::make_shared<shredding_store>(std::move(inner), std::move(keys),
                                           std::move(policy));
}

caf::error decrypt_events(key_store& keys, std::vector<event_data*> events) {
  if (auto err = shred_detail::ensure_sodium())
    return err;
  return decrypt_all(keys, events);
}

std::vector<std::string> erased_fields(const event_data& ev) {
  std::vector<std::string> result;
  if (!may_have_member(ev.payload, erased_member))
    return result;
  auto doc = json::document::parse(ev.payload);
  if (!doc)
    return result;
  auto list = doc->root().find(erased_member);
  if (!list || list->type() != json::kind::array)
    return result;
  for (size_t i = 0; i < list->size(); ++i)
    if (auto name = list->at(i).as_string())
      result.emplace_back(*name);
  return result;
}

caf::expected<subject_forgotten> forget_subject(key_store& keys,
                                                const std::string& subject,
                                                snapshot_store* snapshots) {
  subject_forgotten result;
  if (snapshots != nullptr) {
    auto streams = keys.streams(subject);
    if (!streams)
      return std::move(streams.error());
    for (const auto& s : *streams) {
      auto removed = snapshots->remove(s);
      if (!removed)
        return std::move(removed.error());
      if (*removed)
        result.snapshots_deleted.push_back(s);
    }
  }
  auto forgotten = keys.forget(subject);
  if (!forgotten)
    return std::move(forgotten.error());
  result.key_deleted = forgotten->key_deleted;
  result.streams = std::move(forgotten->streams);
  return result;
}

} // namespace es
