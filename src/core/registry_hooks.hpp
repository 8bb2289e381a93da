// src/core/registry_hooks.hpp: how Pool tells the process-wide registry about named pools
// (internal; the public side is reservoir/registry.hpp).
#pragma once

#include <memory>

namespace reservoir {
class Pool;
}

namespace reservoir::core {

// Pool::create() calls this for a pool whose options name it. The registry keeps the pool until
// it is closed. Throws Error{invalid_argument} when the name is taken (the pool is then closed).
void register_named_pool(const std::shared_ptr<Pool>& pool);

// Pool::close() calls this once the pool is closed. Unknown pools are ignored.
void unregister_named_pool(const Pool& pool) noexcept;

}  // namespace reservoir::core
