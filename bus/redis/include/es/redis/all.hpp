// Every public header of the Redis module.
#pragma once

#include "es/redis/fwd.hpp"
#include "es/redis/redis.hpp"
