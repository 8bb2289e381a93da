// src/core/pool.cpp: the public Pool, a handle on the engine.
#include "reservoir/pool.hpp"

#include "core/engine.hpp"

namespace reservoir {

std::shared_ptr<Pool> Pool::create(const PoolOptions& options) {
  return std::shared_ptr<Pool>(new Pool(core::Engine::create(options)));
}

Pool::Pool(std::shared_ptr<core::Engine> engine) noexcept : engine_(std::move(engine)) {}
Pool::~Pool() = default;

Lease Pool::acquire(const AcquireOptions& options) { return engine_->acquire(options); }
std::uint32_t Pool::opened() const noexcept { return engine_->opened(); }
std::uint32_t Pool::busy() const noexcept { return engine_->busy(); }
std::uint32_t Pool::idle() const noexcept { return engine_->idle(); }
std::uint32_t Pool::waiting() const noexcept { return engine_->waiting(); }
PoolStats Pool::stats() const { return engine_->stats(); }
void Pool::reconfigure(const PoolSettings& settings) { engine_->reconfigure(settings); }
PoolOptions Pool::options() const { return engine_->options(); }
void Pool::close(bool force) { engine_->close(force); }
bool Pool::closed() const noexcept { return engine_->closed(); }

}  // namespace reservoir
