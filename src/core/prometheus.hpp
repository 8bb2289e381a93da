// src/core/prometheus.hpp: PoolStats in the Prometheus text exposition format.
#pragma once

#include <string>
#include <string_view>

#include "reservoir/stats.hpp"

namespace reservoir::core {

// Every gauge and counter of st as reservoir_pool_* metrics labelled pool="<pool_name>" (label
// values escaped as the format requires), with # HELP and # TYPE lines.
std::string to_prometheus(const PoolStats& st, std::string_view pool_name);

}  // namespace reservoir::core
