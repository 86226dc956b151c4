// State-table statements shared by the PostgreSQL state stores and the
// PostgreSQL read-model database.
#pragma once

#include "es/store/state_stores.hpp"

#include "connection.hpp"

namespace es::detail::pg {

caf::expected<checkpoint> save_checkpoint(connection& conn,
                                          const checkpoint& cp);

/// Stores `cp` if the stored position is `expected_position` (see
/// `checkpoint_store::save_if`), alone or inside the caller's transaction.
caf::expected<checkpoint> save_checkpoint_if(connection& conn,
                                             const checkpoint& cp,
                                             int64_t expected_position);

caf::expected<int64_t> add_dead_letter(connection& conn, const dead_letter& e);

caf::expected<bool> mark_processed(connection& conn,
                                   const std::string& projection,
                                   const uuid& event_id);

} // namespace es::detail::pg
