// src/core/pool.cpp: the public Pool, a handle on the engine.
#include "reservoir/pool.hpp"

#include "core/engine.hpp"
#include "core/prometheus.hpp"
#include "core/registry_hooks.hpp"

namespace reservoir {

std::shared_ptr<Pool> Pool::create(const PoolOptions& options) {
  auto pool = std::shared_ptr<Pool>(new Pool(core::Engine::create(options)));
  if (!options.name.empty()) {
    try {
      core::register_named_pool(pool);
    } catch (...) {
      pool->close(true);
      throw;
    }
  }
  return pool;
}

Pool::Pool(std::shared_ptr<core::Engine> engine) noexcept : engine_(std::move(engine)) {}
Pool::~Pool() = default;

Lease Pool::acquire(const AcquireOptions& options, std::source_location where) {
  return engine_->acquire(options, where);
}

Lease Pool::acquire(std::source_location where) {
  static const AcquireOptions defaults;
  return engine_->acquire(defaults, where);
}
std::uint32_t Pool::opened() const noexcept { return engine_->opened(); }
std::uint32_t Pool::busy() const noexcept { return engine_->busy(); }
std::uint32_t Pool::idle() const noexcept { return engine_->idle(); }
std::uint32_t Pool::waiting() const noexcept { return engine_->waiting(); }
PoolStats Pool::stats() const { return engine_->stats(); }
std::string Pool::to_prometheus() const { return core::to_prometheus(stats(), name()); }
void Pool::run_maintenance() { engine_->run_maintenance(); }
void Pool::reconfigure(const PoolSettings& settings) { engine_->reconfigure(settings); }
PoolOptions Pool::options() const { return engine_->options(); }
const std::string& Pool::name() const noexcept { return engine_->name(); }

void Pool::close(bool force) {
  engine_->close(force);
  core::unregister_named_pool(*this);
}

bool Pool::closed() const noexcept { return engine_->closed(); }

}  // namespace reservoir
