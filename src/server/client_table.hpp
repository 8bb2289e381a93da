// src/server/client_table.hpp: the daemon's table of logged-in clients by cancel key: an
// open-addressing hash set of pointers (linear probing, backward-shift deletion, no tombstones),
// about 11 to 21 bytes per client where a std::map node took 64.
//
//   PointerTable<ClientSlot, &slot_key> t;
//   t.insert(&slot);                      // false: the key is taken
//   if (ClientSlot* s = t.find(key)) ...
//   t.erase(key);
//
// The key is read from the element (key_of), so each element must keep its key while it is in
// the table. Thread safety: none; the daemon holds its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace reservoir::server {

template <class T, std::uint64_t (*KeyOf)(const T&)>
class PointerTable {
 public:
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

  // Adds p unless an element with its key is there. Returns whether it was added. Throws
  // std::bad_alloc (the table is unchanged).
  bool insert(T* p) {
    const std::uint64_t key = KeyOf(*p);
    if (find(key) != nullptr) return false;
    if ((size_ + 1) * 4 > capacity_ * 3) rehash(capacity_ == 0 ? kMinCapacity : capacity_ * 2);
    place(p);
    ++size_;
    return true;
  }

  T* find(std::uint64_t key) const noexcept {
    if (capacity_ == 0) return nullptr;
    for (std::size_t i = home(key);; i = next(i)) {
      T* p = slots_[i];
      if (p == nullptr) return nullptr;
      if (KeyOf(*p) == key) return p;
    }
  }

  // Removes the element with this key, if any. Returns whether one was removed.
  bool erase(std::uint64_t key) noexcept {
    if (capacity_ == 0) return false;
    std::size_t hole = home(key);
    while (true) {
      T* p = slots_[hole];
      if (p == nullptr) return false;
      if (KeyOf(*p) == key) break;
      hole = next(hole);
    }
    // Backward shift: each later element of the run that may live in the hole moves there.
    for (std::size_t j = next(hole);; j = next(j)) {
      T* p = slots_[j];
      if (p == nullptr) break;
      const std::size_t h = home(KeyOf(*p));
      // p stays when its home lies cyclically in (hole, j].
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        slots_[hole] = p;
        hole = j;
      }
    }
    slots_[hole] = nullptr;
    --size_;
    // Shrinks after a crowd has gone (not below kMinCapacity; never right back to growing).
    if (capacity_ > kMinCapacity && size_ * 8 < capacity_) {
      try {
        rehash(capacity_ / 2);
      } catch (...) {  // keeps the larger table
      }
    }
    return true;
  }

  // f(T&) for each element, in table order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < capacity_; ++i)
      if (slots_[i] != nullptr) f(*slots_[i]);
  }

 private:
  static constexpr std::size_t kMinCapacity = 16;

  std::size_t home(std::uint64_t key) const noexcept {
    // Fibonacci hashing: the top bits of key * 2^64/phi (the keys may differ only in low bits).
    return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> shift_);
  }
  std::size_t next(std::size_t i) const noexcept { return (i + 1) & (capacity_ - 1); }

  void place(T* p) noexcept {
    std::size_t i = home(KeyOf(*p));
    while (slots_[i] != nullptr) i = next(i);
    slots_[i] = p;
  }

  void rehash(std::size_t capacity) {  // capacity: a power of two
    auto old = std::move(slots_);
    const std::size_t old_capacity = capacity_;
    try {
      slots_ = std::make_unique<T*[]>(capacity);  // null pointers
    } catch (...) {
      slots_ = std::move(old);
      throw;
    }
    capacity_ = capacity;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c /= 2) --shift_;
    for (std::size_t i = 0; i < old_capacity; ++i)
      if (old[i] != nullptr) place(old[i]);
  }

  std::unique_ptr<T*[]> slots_;
  std::size_t capacity_ = 0;  // 0 or a power of two
  std::size_t size_ = 0;
  unsigned shift_ = 64;  // 64 - log2(capacity_)
};

}  // namespace reservoir::server
