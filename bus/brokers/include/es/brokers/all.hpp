// Every public header of the brokers module.
#pragma once

#include "es/brokers/brokers.hpp"
#include "es/brokers/fwd.hpp"
