// src/core/class_table.cpp: open addressing over a fixed array; inserts under a mutex,
// lookups lock-free.
#include "core/class_table.hpp"

namespace reservoir::core {

std::uint64_t hash_name(std::string_view s) noexcept {
  if (s.empty()) return 0;
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h == 0 ? 1 : h;
}

ClassTable::Entry& ClassTable::entry(std::string_view name, std::uint64_t hash) {
  const std::size_t start = hash % kCapacity;
  for (std::size_t i = 0; i < kCapacity; ++i) {
    Entry& e = entries_[(start + i) % kCapacity];
    const std::uint64_t h = e.hash.load(std::memory_order_acquire);
    if (h == hash) return e;
    if (h != 0) continue;
    std::lock_guard lk(insert_mutex_);
    const std::uint64_t again = e.hash.load(std::memory_order_acquire);
    if (again == hash) return e;
    if (again != 0) continue;
    e.name = std::string(name);
    e.hash.store(hash, std::memory_order_release);
    return e;
  }
  Entry& other = entries_[kCapacity];
  std::lock_guard lk(insert_mutex_);
  if (other.hash.load(std::memory_order_acquire) == 0) {
    other.name = "(other)";
    other.hash.store(1, std::memory_order_release);
  }
  return other;
}

void ClassTable::snapshot(std::map<std::string, ClassStats>& out) const {
  for (const Entry& e : entries_) {
    if (e.hash.load(std::memory_order_acquire) == 0) continue;
    ClassStats& c = out[e.name];
    c.requests += e.requests.load(std::memory_order_relaxed);
    c.hits += e.hits.load(std::memory_order_relaxed);
    c.misses += e.misses.load(std::memory_order_relaxed);
    c.waits += e.waits.load(std::memory_order_relaxed);
  }
}

}  // namespace reservoir::core
