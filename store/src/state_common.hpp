// What the state store adapters (memory, SQLite, PostgreSQL) share.
#pragma once

#include <caf/error.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace es::detail {

/// The `checkpoint_conflict` of a compare-and-set checkpoint write that
/// expected `expected_position` and found `found_position` (nullopt: no
/// checkpoint).
caf::error make_checkpoint_conflict(const std::string& projection,
                                    int64_t expected_position,
                                    std::optional<int64_t> found_position);

/// Checks that `name` can stand in SQL text as is (a table, a schema or a
/// file tag of a shadow read model): 1 to `max_size` letters, digits and
/// underscores. Returns `invalid_argument` otherwise.
caf::error check_plain_sql_name(const std::string& name, size_t max_size);

} // namespace es::detail
