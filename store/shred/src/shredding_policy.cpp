#include "es/shred/shredding_policy.hpp"

#include <algorithm>
#include <set>

namespace es {

namespace {

caf::error policy_error(std::string_view event_type, std::string what) {
  std::string text = "shredding policy of ";
  text += event_type;
  text += ": ";
  text += what;
  return make_shred_error(shred_errc::invalid_policy, std::move(text));
}

} // namespace

subject_function subject_from_aggregate_id() {
  return [](const event_data& ev) -> caf::expected<std::string> {
    if (ev.aggregate_id.is_nil())
      return make_shred_error(shred_errc::missing_subject,
                              "the event has no aggregate id");
    return ev.aggregate_id.to_string();
  };
}

caf::error shredding_policy::add(std::string event_type,
                                 std::vector<std::string> fields,
                                 std::string subject_field) {
  if (subject_field.empty())
    return policy_error(event_type, "the subject field has no name");
  rule r;
  r.fields = std::move(fields);
  r.subject_field = std::move(subject_field);
  return add_rule(std::move(event_type), std::move(r));
}

caf::error shredding_policy::add(std::string event_type,
                                 std::vector<std::string> fields,
                                 subject_function subject) {
  if (!subject)
    return policy_error(event_type, "no subject function");
  rule r;
  r.fields = std::move(fields);
  r.subject = std::move(subject);
  return add_rule(std::move(event_type), std::move(r));
}

caf::error shredding_policy::add_rule(std::string event_type, rule r) {
  if (event_type.empty())
    return policy_error(event_type, "the event type has no name");
  if (r.fields.empty())
    return policy_error(event_type, "no personal fields");
  std::set<std::string_view> seen;
  for (const auto& f : r.fields) {
    if (f.empty() || f.front() == '$')
      return policy_error(event_type, "a personal field name is empty or "
                                      "starts with '$': '"
                                        + f + "'");
    if (!seen.insert(f).second)
      return policy_error(event_type, "field " + f + " is named twice");
  }
  if (!r.subject_field.empty() && seen.count(r.subject_field) > 0)
    return policy_error(event_type, "the subject field " + r.subject_field
                                      + " cannot be personal: it selects "
                                        "the key");
  if (rules_.count(event_type) > 0)
    return policy_error(event_type, "the type is declared twice");
  rules_.emplace(std::move(event_type), std::move(r));
  return caf::none;
}

const shredding_policy::rule*
shredding_policy::find(std::string_view event_type) const {
  if (auto i = rules_.find(event_type); i != rules_.end())
    return &i->second;
  return nullptr;
}

caf::error shredding_policy::check_members(
  std::string_view event_type,
  const std::map<std::string, detail::shred_field_info, std::less<>>& members,
  const std::vector<std::string>& personal, const std::string* subject_field) {
  for (const auto& name : personal) {
    auto i = members.find(name);
    if (i == members.end())
      return policy_error(event_type, "the type has no field " + name);
    if (!i->second.is_string && !i->second.is_optional)
      return policy_error(event_type,
                          "field " + name
                            + " is neither a std::string nor a "
                              "std::optional: once erased it reads as null");
  }
  if (subject_field != nullptr && members.count(*subject_field) == 0)
    return policy_error(event_type, "the type has no field " + *subject_field
                                      + " for the subject id");
  return caf::none;
}

} // namespace es
