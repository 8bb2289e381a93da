// src/core/slot.cpp: slot state names and the append-only slot table.
#include "core/slot.hpp"

namespace reservoir::core {

const char* to_string(SlotState state) noexcept {
  switch (state) {
    case SlotState::empty: return "empty";
    case SlotState::connecting: return "connecting";
    case SlotState::idle: return "idle";
    case SlotState::in_use: return "in_use";
    case SlotState::revoked: return "revoked";
    case SlotState::orphaned: return "orphaned";
    case SlotState::orphaned_revoked: return "orphaned_revoked";
    case SlotState::closing: return "closing";
  }
  return "?";
}

SlotTable::~SlotTable() {
  for (auto& c : chunks_) delete c.load(std::memory_order_relaxed);
}

Slot* SlotTable::append() {
  std::uint32_t n = size_.load(std::memory_order_relaxed);
  if (n >= kCapacity) return nullptr;
  auto& chunk = chunks_[n / kChunkSize];
  if (chunk.load(std::memory_order_relaxed) == nullptr) chunk.store(new Chunk, std::memory_order_release);
  Slot& s = at(n);
  s.index = n;
  size_.store(n + 1, std::memory_order_release);
  return &s;
}

}  // namespace reservoir::core
