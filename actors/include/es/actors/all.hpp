// Every public header of the actors module. Each includes the CAF headers
// it needs and no more; including this one costs their sum.
#pragma once

#include "es/actors/aggregate.hpp"
#include "es/actors/aggregate_actor.hpp"
#include "es/actors/aggregate_region.hpp"
#include "es/actors/blocking.hpp"
#include "es/actors/command.hpp"
#include "es/actors/errors.hpp"
#include "es/actors/fwd.hpp"
#include "es/actors/joint_command.hpp"
#include "es/actors/repository.hpp"
#include "es/actors/store_actor.hpp"
#include "es/actors/type_ids.hpp"
