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

const std::string& Lease::tag() const {
  if (slot_ == nullptr)
    throw Error(ErrorCode::lease_invalid,
                "this lease holds no connection (moved from, released or dropped)");
  return core::Engine::tag(slot_);
}

void Lease::end(bool drop, const std::string_view* tag) noexcept {
  if (slot_ == nullptr) return;
  core::Engine* e = engine_;
  core::Slot* s = slot_;
  engine_ = nullptr;
  slot_ = nullptr;
  e->release(s, drop, tag);
}

void Lease::release() noexcept { end(false, nullptr); }
void Lease::release(std::string_view tag) noexcept { end(false, &tag); }
void Lease::drop() noexcept { end(true, nullptr); }

}  // namespace reservoir
