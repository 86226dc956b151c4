// Forward declarations of the projections module's types, for headers that
// only pass them around. (The projection actor's handle, a typed actor, is
// declared in es/projections/projection_actor.hpp.)
#pragma once

#include <cstdint>
#include <memory>

namespace es {

class checkpoint_tracking_projection;
class declarative_projection;
class projection;
class projection_coordinator;
class transactional_projection;

struct partition_spec;
struct projection_status;
struct rebuild_progress;
struct subscription_config;

enum class checkpoint_mode : uint8_t;
enum class hole_policy : uint8_t;
enum class ownership : uint8_t;
enum class projection_state : uint8_t;
enum class projections_errc : uint8_t;
enum class start_from : uint8_t;

using projection_ptr = std::shared_ptr<projection>;

} // namespace es
