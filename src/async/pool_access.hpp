// src/async/pool_access.hpp: how the async front end reaches a Pool's engine (Pool befriends it).
#pragma once

#include <memory>

#include "core/engine.hpp"
#include "reservoir/pool.hpp"

namespace reservoir {

struct PoolAccess {
  static const std::shared_ptr<core::Engine>& engine(const Pool& pool) noexcept {
    return pool.engine_;
  }
};

}  // namespace reservoir
