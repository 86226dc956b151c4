// Every public header of the RabbitMQ module.
#pragma once

#include "es/rabbitmq/fwd.hpp"
#include "es/rabbitmq/rabbitmq.hpp"
