// Parsing and printing of Redis URLs (redis://, rediss://).
#include "es/redis/redis.hpp"

#include <cctype>
#include <charconv>
#include <limits>
#include <optional>

namespace es {

namespace {

caf::error bad_url(std::string why) {
  return make_redis_error(redis_errc::invalid_url,
                          "invalid Redis URL: " + std::move(why));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// Decodes %XX escapes; returns nothing for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size())
      return std::nullopt;
    int hi = hex_value(text[i + 1]);
    int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

/// Encodes everything but unreserved characters (RFC 3986).
std::string percent_encode(std::string_view text) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += digits[u >> 4];
      out += digits[u & 0x0F];
    }
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string out{text};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// Parses a decimal number without sign in [lo, hi].
std::optional<long> parse_number(std::string_view text, long lo, long hi) {
  long x = 0;
  auto* first = text.data();
  auto* last = text.data() + text.size();
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return std::nullopt;
  auto [ptr, ec] = std::from_chars(first, last, x);
  if (ec != std::errc{} || ptr != last || x < lo || x > hi)
    return std::nullopt;
  return x;
}

bool valid_host_name(std::string_view host) {
  for (char c : host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.'
        && c != '_')
      return false;
  return true;
}

bool valid_ipv6(std::string_view host) {
  for (char c : host)
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
      return false;
  return host.find(':') != std::string_view::npos;
}

} // namespace

caf::expected<redis_url> parse_redis_url(std::string_view text) {
  redis_url out;
  auto sep = text.find("://");
  if (sep == std::string_view::npos)
    return bad_url("expected redis:// or rediss://");
  auto scheme = lower(text.substr(0, sep));
  if (scheme == "rediss")
    out.tls = true;
  else if (scheme != "redis")
    return bad_url("unsupported scheme '" + scheme
                   + "' (expected redis:// or rediss://)");
  auto rest = text.substr(sep + 3);
  // User info ends at the last '@': a password with an unescaped '@', '/'
  // or '?' still parses (host, port and database cannot hold them).
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto info = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto colon = info.find(':');
    auto user = percent_decode(info.substr(0, colon));
    if (!user)
      return bad_url("malformed percent escape in the user name");
    out.username = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decode(info.substr(colon + 1));
      if (!password)
        return bad_url("malformed percent escape in the password");
      out.password = std::move(*password);
    }
  }
  if (rest.find_first_of("?#") != std::string_view::npos)
    return bad_url("query strings and fragments are not supported");
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  auto path = slash == std::string_view::npos ? std::string_view{}
                                              : rest.substr(slash + 1);
  // Host, then an optional port.
  std::string_view host;
  std::optional<std::string_view> port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad_url("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    if (!valid_ipv6(host))
      return bad_url("invalid IPv6 address '" + std::string{host} + "'");
    auto tail = authority.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':')
        return bad_url("unexpected '" + std::string{tail}
                       + "' after the IPv6 address");
      port = tail.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos)
      port = authority.substr(colon + 1);
    if (!valid_host_name(host))
      return bad_url("invalid host '" + std::string{host}
                     + "' (write IPv6 addresses in brackets)");
  }
  if (!host.empty())
    out.host = std::string{host};
  if (port) {
    auto n = parse_number(*port, 1, 65535);
    if (!n)
      return bad_url("invalid port '" + std::string{*port} + "'");
    out.port = static_cast<uint16_t>(*n);
  }
  if (!path.empty()) {
    auto n = parse_number(path, 0, std::numeric_limits<int>::max());
    if (!n)
      return bad_url("invalid database number '" + std::string{path} + "'");
    out.db = static_cast<int>(*n);
  }
  return out;
}

std::string to_string(const redis_url& x) {
  std::string out = x.tls ? "rediss://" : "redis://";
  if (!x.username.empty() || !x.password.empty()) {
    out += percent_encode(x.username);
    if (!x.password.empty())
      out += ":***";
    out += '@';
  }
  if (x.host.find(':') != std::string::npos)
    out += '[' + x.host + ']';
  else
    out += x.host;
  out += ':';
  out += std::to_string(x.port);
  out += '/';
  out += std::to_string(x.db);
  return out;
}

} // namespace es
