// Every public header of the projections module. Each includes the CAF
// headers it needs and no more; including this one costs their sum.
#pragma once

#include "es/projections/coordinator.hpp"
#include "es/projections/errors.hpp"
#include "es/projections/fwd.hpp"
#include "es/projections/projection.hpp"
#include "es/projections/projection_actor.hpp"
#include "es/projections/subscription.hpp"
#include "es/projections/type_ids.hpp"
