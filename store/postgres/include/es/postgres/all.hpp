// Every public header of the PostgreSQL adapters (one header holds them
// all).
#pragma once

#include "es/postgres/fwd.hpp"
#include "es/postgres/postgres.hpp"
