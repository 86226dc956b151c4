// State-table statements shared by the SQLite state stores and the SQLite
// read-model database (which runs them inside a read model's transaction).
#pragma once

#include "es/store/state_stores.hpp"

#include "connection.hpp"

namespace es::detail::sqlite {

caf::expected<std::optional<checkpoint>>
load_checkpoint(connection& conn, const std::string& projection);

caf::expected<checkpoint> save_checkpoint(connection& conn,
                                          const checkpoint& cp);

/// Stores `cp` if the stored position is `expected_position` (see
/// `checkpoint_store::save_if`). Runs inside the caller's write
/// transaction, which makes the compare and the set one step.
caf::expected<checkpoint> save_checkpoint_if(connection& conn,
                                             const checkpoint& cp,
                                             int64_t expected_position);

caf::expected<int64_t> add_dead_letter(connection& conn, const dead_letter& e);

caf::expected<bool> mark_processed(connection& conn,
                                   const std::string& projection,
                                   const uuid& event_id);

} // namespace es::detail::sqlite
