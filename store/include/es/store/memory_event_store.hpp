// The in-memory event store: the reference adapter and the test oracle.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"

#include <memory>

namespace es {

/// Configuration of `make_memory_event_store`.
struct memory_store_config {
  store_limits limits;
  /// When set, appends are checked against the registry: unknown types are
  /// refused with `unknown_event_type`, undecodable payloads with
  /// `malformed_payload`.
  std::shared_ptr<const event_registry> registry;
};

/// Creates an in-memory event store. Thread-safe; nothing survives the
/// object. It implements the port's contract exactly and is the oracle the
/// other adapters are compared with.
event_store_ptr make_memory_event_store(memory_store_config config = {});

} // namespace es
