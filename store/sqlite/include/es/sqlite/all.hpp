// Every public header of the SQLite adapters (one header holds them all).
#pragma once

#include "es/sqlite/fwd.hpp"
#include "es/sqlite/sqlite.hpp"
