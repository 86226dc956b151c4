// UUID parsing, formatting, generation and ordering.
#include "es/store/errors.hpp"
#include "es/store/uuid.hpp"

#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>
#include <unordered_set>

using namespace es;

TEST_CASE("UUIDs parse their canonical form in either case", "[uuid]") {
  auto x = uuid::parse("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
  REQUIRE(x);
  CHECK(x->to_string() == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  CHECK(x->bytes()[0] == 0x0F);
  CHECK(x->bytes()[15] == 0xF0);
  auto y = uuid::parse(x->to_string());
  REQUIRE(y);
  CHECK(*x == *y);
}

TEST_CASE("malformed UUID texts are refused with invalid_uuid", "[uuid]") {
  for (const char* text : {"", "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                           "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}",
                           "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
                           "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 ",
                           "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
                           "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0",
                           "'; DROP TABLE events;--'''''''''''''"}) {
    INFO(text);
    auto x = uuid::parse(text);
    REQUIRE_FALSE(x);
    CHECK(has_code(x.error(), store_errc::invalid_uuid));
  }
  // A NUL byte inside is not the end of the text.
  std::string with_nul = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  with_nul[10] = '\0';
  CHECK_FALSE(uuid::parse(with_nul));
}

TEST_CASE("the nil UUID", "[uuid]") {
  uuid nil;
  CHECK(nil.is_nil());
  CHECK(nil.to_string() == "00000000-0000-0000-0000-000000000000");
  auto parsed = uuid::parse("00000000-0000-0000-0000-000000000000");
  REQUIRE(parsed);
  CHECK(parsed->is_nil());
  CHECK_FALSE(uuid::random().is_nil());
}

TEST_CASE("random UUIDs are version 4 and distinct", "[uuid]") {
  std::unordered_set<uuid> seen;
  for (int i = 0; i < 10000; ++i) {
    auto x = uuid::random();
    CHECK(x.version() == 4);
    CHECK((x.bytes()[8] & 0xC0) == 0x80);
    CHECK(seen.insert(x).second);
  }
}

TEST_CASE("time-ordered UUIDs are version 7 and sort by time", "[uuid]") {
  auto a = uuid::time_ordered();
  CHECK(a.version() == 7);
  CHECK((a.bytes()[8] & 0xC0) == 0x80);
  // Ids made in a later millisecond sort after earlier ones.
  auto ms = [](const uuid& x) {
    uint64_t result = 0;
    for (int i = 0; i < 6; ++i)
      result = (result << 8) | x.bytes()[i];
    return result;
  };
  auto b = a;
  while (ms(b) == ms(a))
    b = uuid::time_ordered();
  CHECK(a < b);
  auto now_ms = static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch())
      .count());
  CHECK(ms(b) <= now_ms);
  CHECK(ms(b) + 1000 > now_ms);
}

TEST_CASE("UUID hashing and ordering agree with equality", "[uuid]") {
  auto a = uuid::random();
  auto b = a;
  CHECK(a == b);
  CHECK(a.hash() == b.hash());
  b.bytes()[15] ^= 1;
  CHECK(a != b);
  CHECK(a.hash() != b.hash());
  std::set<uuid> ordered{a, b};
  CHECK(ordered.size() == 2);
}

TEST_CASE("a forked child does not repeat its parent's ids", "[uuid]") {
  // Draw once so the parent's per-thread random buffer is filled.
  static_cast<void>(uuid::time_ordered());
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  auto pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto child = uuid::time_ordered();
    auto child_random = uuid::random();
    auto written = write(fds[1], child.bytes().data(), 16)
                   + write(fds[1], child_random.bytes().data(), 16);
    _exit(written == 32 ? 0 : 1);
  }
  auto parent = uuid::time_ordered();
  auto parent_random = uuid::random();
  uuid child;
  uuid child_random;
  REQUIRE(read(fds[0], child.bytes().data(), 16) == 16);
  REQUIRE(read(fds[0], child_random.bytes().data(), 16) == 16);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  close(fds[1]);
  CHECK(WIFEXITED(status));
  // Same millisecond is likely; the random tails must differ.
  CHECK(std::memcmp(parent.bytes().data() + 6, child.bytes().data() + 6, 10)
        != 0);
  CHECK(parent_random != child_random);
  CHECK(child_random.version() == 4);
}
