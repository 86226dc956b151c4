#include "es/store/sql.hpp"

#include <charconv>

namespace es {

sql_transaction::~sql_transaction() {
  // nop
}

read_model_db::~read_model_db() {
  // nop
}

std::optional<int64_t> sql_int(const sql_value& v) {
  if (auto* i = std::get_if<int64_t>(&v))
    return *i;
  if (auto* d = std::get_if<double>(&v))
    return static_cast<int64_t>(*d);
  if (auto* s = std::get_if<std::string>(&v)) {
    int64_t result = 0;
    auto res = std::from_chars(s->data(), s->data() + s->size(), result);
    if (res.ec == std::errc{} && res.ptr == s->data() + s->size())
      return result;
  }
  return std::nullopt;
}

std::string sql_text(const sql_value& v) {
  if (auto* s = std::get_if<std::string>(&v))
    return *s;
  if (auto* i = std::get_if<int64_t>(&v))
    return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v))
    return std::to_string(*d);
  return {};
}

} // namespace es
