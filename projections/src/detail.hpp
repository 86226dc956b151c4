// Internals shared by the projection sources.
#pragma once

#include "es/store/state_stores.hpp"
#include "es/supervision/classifier.hpp"

#include <caf/error.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace es::detail {

/// Calls a handler, turning exceptions into errors.
caf::error call_handler(const std::function<caf::error()>& fn);

/// The dead letter for `ev` failing with `err` after `attempts` attempts.
dead_letter make_dead_letter(const std::string& projection,
                             const recorded_event& ev, const caf::error& err,
                             const error_classification& c, uint32_t attempts);

/// Whether `type` is among `types` (an empty list takes everything).
bool wants(const std::vector<std::string>& types, std::string_view type);

} // namespace es::detail
