// Every public header of the supervision module. Each includes the CAF
// headers it needs and no more; including this one costs their sum.
#pragma once

#include "es/supervision/actors.hpp"
#include "es/supervision/child.hpp"
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/error_handling.hpp"
#include "es/supervision/errors.hpp"
#include "es/supervision/fwd.hpp"
#include "es/supervision/retry.hpp"
#include "es/supervision/type_ids.hpp"
