#include "reply.hpp"

#include "es/redis/redis.hpp"

namespace es::detail::redis {

reply reply::make_status(std::string text) {
  reply result;
  result.kind_ = kind::status;
  result.str_ = std::move(text);
  return result;
}

reply reply::make_error(std::string message) {
  reply result;
  result.kind_ = kind::error;
  result.str_ = std::move(message);
  return result;
}

reply reply::make_integer(int64_t x) {
  reply result;
  result.kind_ = kind::integer;
  result.integer_ = x;
  return result;
}

reply reply::make_string(std::string bytes) {
  reply result;
  result.kind_ = kind::string;
  result.str_ = std::move(bytes);
  return result;
}

reply reply::make_array(std::vector<reply> elements) {
  reply result;
  result.kind_ = kind::array;
  result.elements_ = std::move(elements);
  return result;
}

const char* to_string(reply::kind x) {
  switch (x) {
    case reply::kind::nil: return "nil";
    case reply::kind::status: return "status";
    case reply::kind::error: return "error";
    case reply::kind::integer: return "integer";
    case reply::kind::string: return "string";
    case reply::kind::array: return "array";
  }
  return "unknown";
}

namespace {

void render(const reply& x, std::string& out) {
  static constexpr char digits[] = "0123456789abcdef";
  switch (x.type()) {
    case reply::kind::nil: out += "nil"; return;
    case reply::kind::status:
      out += '+';
      out += x.str();
      return;
    case reply::kind::error:
      out += '-';
      out += x.str();
      return;
    case reply::kind::integer:
      out += ':';
      out += std::to_string(x.integer());
      return;
    case reply::kind::string:
      out += '"';
      for (char c : x.str()) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
          out += '\\';
          out += c;
        } else if (u < 0x20 || u == 0x7F) {
          out += "\\x";
          out += digits[u >> 4];
          out += digits[u & 0x0F];
        } else {
          out += c; // UTF-8 sequences stay readable
        }
      }
      out += '"';
      return;
    case reply::kind::array:
      out += '[';
      for (size_t i = 0; i < x.size(); ++i) {
        if (i > 0)
          out += ", ";
        render(x[i], out);
      }
      out += ']';
      return;
  }
}

} // namespace

std::string to_string(const reply& x) {
  std::string out;
  render(x, out);
  return out;
}

caf::error to_error(const reply& x, std::string_view what) {
  if (!x.is_error())
    return caf::none;
  auto starts = [&](std::string_view prefix) {
    return x.str().compare(0, prefix.size(), prefix) == 0;
  };
  auto code = starts("NOAUTH") || starts("WRONGPASS")
                ? redis_errc::authentication_failed
                : redis_errc::server_error;
  std::string msg{what};
  msg += ": ";
  msg += x.str();
  return make_redis_error(code, std::move(msg));
}

} // namespace es::detail::redis
