// src/core/lease.cpp: Lease forwards to the engine that lent the connection.
#include "reservoir/lease.hpp"

#include "core/engine.hpp"

namespace reservoir {

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    engine_ = other.engine_;
    slot_ = other.slot_;
    other.engine_ = nullptr;
    other.slot_ = nullptr;
  }
  return *this;
}

Connection& Lease::connection() const {
  if (slot_ == nullptr)
    throw Error(ErrorCode::lease_invalid,
                "this lease holds no connection (moved from, released or dropped)");
  return core::Engine::connection(slot_);
}

void Lease::release() noexcept {
  if (slot_ == nullptr) return;
  core::Engine* e = engine_;
  core::Slot* s = slot_;
  engine_ = nullptr;
  slot_ = nullptr;
  e->release(s, false);
}

void Lease::drop() noexcept {
  if (slot_ == nullptr) return;
  core::Engine* e = engine_;
  core::Slot* s = slot_;
  engine_ = nullptr;
  slot_ = nullptr;
  e->release(s, true);
}

}  // namespace reservoir
