// An event store decorator that lets "another writer" append first.
#pragma once

#include "es/store/event.hpp"
#include "es/store/event_store.hpp"

namespace es::testing {

/// Returns a store that forwards every call to `inner`, except that just
/// before the first append that touches `stream` it appends `events` to
/// that stream itself (with `expected_version::any()`), as a concurrent
/// writer would between a load and a save. The intercepted append then
/// meets the new version: with an exact expected version it fails with
/// `wrong_expected_version`, which is what an aggregate actor's conflict
/// retry is for. Later appends pass through unchanged.
///
/// Thread-safe as far as `inner` is. If appending `events` fails, the
/// intercepted append fails with that error.
event_store_ptr make_concurrent_writer_store(event_store_ptr inner,
                                             stream_id stream,
                                             event_batch events);

} // namespace es::testing
