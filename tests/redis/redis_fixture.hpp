// Helpers of the tests against a real Redis server: its URL from
// ES_TEST_REDIS_URL (scripts/redis dsn), connections that FAIL with
// instructions when it is missing, and keys unique to a test, deleted after.
#pragma once

#include "es/redis/redis.hpp"
#include "es/store/errors.hpp"
#include "es/store/uuid.hpp"

#include "connection.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace es::test {

inline constexpr const char* redis_instructions
  = "start the test server with `scripts/redis start` and export "
    "ES_TEST_REDIS_URL=\"$(scripts/redis dsn)\" (scripts/test does both)";

/// The test server's URL; FAILs (never skips) when it is not set or bad.
inline redis_url test_redis_url() {
  const char* text = std::getenv("ES_TEST_REDIS_URL");
  if (text == nullptr || *text == '\0')
    FAIL("ES_TEST_REDIS_URL is not set: " << redis_instructions);
  auto url = parse_redis_url(text);
  if (!url)
    FAIL("ES_TEST_REDIS_URL is not a Redis URL ("
         << describe(url.error()) << "): " << redis_instructions);
  return *url;
}

/// A connection to the test server with short timeouts; FAILs with
/// instructions when the server cannot be reached.
inline detail::redis::connection
connect_test_redis(std::chrono::milliseconds command_timeout
                   = std::chrono::seconds{5}) {
  auto url = test_redis_url();
  auto conn = detail::redis::connection::open(url, std::chrono::seconds{2},
                                              command_timeout);
  if (!conn)
    FAIL("cannot use the Redis test server at "
         << to_string(url) << ": " << describe(conn.error()) << "; "
         << redis_instructions);
  return std::move(*conn);
}

/// Keys of one test: names under a random prefix, deleted (over a
/// connection of their own) when the test ends, whatever happened to the
/// test's connections.
class test_keys {
public:
  test_keys() : prefix_("es-test:" + uuid::random().to_string() + ":") {
    // nop
  }

  ~test_keys() {
    if (names_.empty())
      return;
    auto url = parse_redis_url(std::getenv("ES_TEST_REDIS_URL") != nullptr
                                 ? std::getenv("ES_TEST_REDIS_URL")
                                 : "");
    if (!url)
      return;
    auto conn = detail::redis::connection::open(*url, std::chrono::seconds{2},
                                                std::chrono::seconds{5});
    if (!conn)
      return;
    std::vector<std::string> del{"DEL"};
    del.insert(del.end(), names_.begin(), names_.end());
    static_cast<void>(conn->command(std::move(del)));
  }

  test_keys(const test_keys&) = delete;
  test_keys& operator=(const test_keys&) = delete;

  /// Returns a key unique to this test, for example "es-test:<uuid>:name".
  std::string operator()(const std::string& name) {
    names_.push_back(prefix_ + name);
    return names_.back();
  }

private:
  std::string prefix_;
  std::vector<std::string> names_;
};

/// Runs `args` and REQUIREs an answer (of any kind, errors included).
inline detail::redis::reply must(detail::redis::connection& conn,
                                 std::vector<std::string> args) {
  auto res = conn.command(std::move(args));
  if (!res)
    FAIL("Redis command failed: " << describe(res.error()));
  return std::move(*res);
}

} // namespace es::test
