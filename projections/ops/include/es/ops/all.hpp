// Everything of es::ops: the operations endpoints and the metrics page.
#pragma once

#include "es/ops/endpoints.hpp"
#include "es/ops/metrics.hpp"
#include "es/ops/otlp_exporter.hpp"
