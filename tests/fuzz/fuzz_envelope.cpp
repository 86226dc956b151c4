// Feeds arbitrary bytes to `decode_envelope`, as a broker would hand over
// a message another program wrote. Checks: errors are `malformed_payload`
// or `payload_too_large`; a decoded event encodes again, and the encoded
// envelope decodes to the same event and encodes to the same text (the
// envelope is a fixed point after one round).
#include "es/bus/envelope.hpp"
#include "es/store/errors.hpp"

#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace es;
  std::string_view body{reinterpret_cast<const char*>(data), size};
  auto ev = decode_envelope(body);
  if (!ev) {
    fuzz::check_code(
      ev.error(),
      {store_errc::malformed_payload, store_errc::payload_too_large},
      "decode_envelope");
    return 0;
  }
  auto text = encode_envelope(*ev);
  fuzz::check(static_cast<bool>(text),
              "a decoded envelope does not encode again");
  auto again = decode_envelope(*text);
  fuzz::check(static_cast<bool>(again), "an encoded envelope does not decode");
  fuzz::check(*again == *ev, "an envelope changed in a round trip");
  auto text2 = encode_envelope(*again);
  fuzz::check(static_cast<bool>(text2) && *text2 == *text,
              "an envelope's text changed in a second round");
  return 0;
}
