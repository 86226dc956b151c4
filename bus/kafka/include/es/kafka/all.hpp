// Every public header of the Kafka module.
#pragma once

#include "es/kafka/fwd.hpp"
#include "es/kafka/kafka.hpp"
