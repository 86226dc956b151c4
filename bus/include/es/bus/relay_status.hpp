// What an outbox relay reports (es/bus/outbox_relay.hpp).
#pragma once

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>

namespace es {

/// What a relay reports.
struct outbox_relay_status {
  std::string name;
  /// Rows this relay published, and publishes (of a batch) that failed.
  uint64_t published = 0;
  uint64_t publish_failures = 0;
  /// Rows this relay gave up after `max_retries` failed publishes.
  uint64_t given_up = 0;
  /// The outbox as a whole: rows pending and failed, and the age of the
  /// oldest row not published yet (0 when none).
  int64_t pending = 0;
  int64_t failed = 0;
  int64_t oldest_waiting_ms = 0;
  /// The last failure (publish, claim, read), empty when none yet.
  std::string last_error;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, outbox_relay_status& x) {
    return f(caf::meta::type_name("es.outbox_relay_status"), x.name,
             x.published, x.publish_failures, x.given_up, x.pending, x.failed,
             x.oldest_waiting_ms, x.last_error);
  }
};

} // namespace es
