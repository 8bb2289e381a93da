// src/core/slot.hpp: one place in a pool for one connection, the states it moves through, and
// the table of slots that fast-path acquirers scan without a lock.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <source_location>
#include <string>

#include "core/histogram.hpp"
#include "reservoir/connection.hpp"

namespace reservoir::core {

// Each state names who owns the slot (and so may touch its connection). Moves between states
// are compare-and-swaps, made by Engine::move() alone, which keeps the counters in step.
enum class SlotState : std::uint8_t {
  empty,             // no connection; the pool may reserve it (owner: the pool, under its mutex)
  connecting,        // reserved while a connection is opened; counts toward max (owner: opener)
  idle,              // open and ready; whoever swaps it to in_use owns it
  in_use,            // leased to a caller (owner: the lease)
  revoked,           // leased, but close(force) ran: using the lease throws (owner: the lease)
  orphaned,          // leased, and the pool is gone: the lease works, its end closes it
  orphaned_revoked,  // revoked, and then the pool went away
  closing,           // being closed by whoever swapped it here
};
const char* to_string(SlotState state) noexcept;

// True for the states in which a lease holds the slot.
constexpr bool is_leased(SlotState s) noexcept {
  return s == SlotState::in_use || s == SlotState::revoked || s == SlotState::orphaned ||
         s == SlotState::orphaned_revoked;
}

// Times are nanoseconds on the pool's clock, kept in atomics because maintenance reads them
// for slots it does not own.
struct alignas(64) Slot {
  std::atomic<SlotState> state{SlotState::empty};

  // Hints that scanners read without owning the slot, written by its owner; the acquirer checks
  // the real values once it owns the slot.
  std::atomic<std::uint64_t> user_hash{0};   // heterogeneous pools: hash of user and password
  std::atomic<std::uint64_t> class_hash{0};  // connection class of the last use (0: default)
  std::atomic<std::uint64_t> tag_hash{0};    // 0: untagged
  std::atomic<std::uint64_t> label{0};       // Engine::label_of the three above

  std::atomic<std::int64_t> idle_since_ns{0};   // when it was last released
  std::atomic<std::int64_t> expires_at_ns{0};   // max_lifetime (with jitter); 0 = never
  std::atomic<std::int64_t> acquired_at_ns{0};  // when the current lease began
  std::atomic<std::source_location> acquired_where{};
  std::atomic<bool> leak_reported{false};

  // Acquires served from this slot. Written only by the slot's owner (no read-modify-write, no
  // shared cache line on the fast path); read by stats().
  std::atomic<std::uint64_t> hits{0};
  LatencyHistogram hold_time;  // written only by the owner (record_owned)

  // Touched only by the state's owner.
  std::unique_ptr<Connection> conn;
  std::string tag;
  std::string user, password;  // heterogeneous pools: the credentials it was opened with
  bool dirty = false;          // used since it was opened or last reset
  bool fresh = false;          // opened and not yet handed out: the session callback must run
  bool extra = false;          // opened by force_get beyond max
  bool for_acquirer = false;   // connecting for a waiting acquirer (written under the pool mutex)
  std::uint32_t index = 0;

  void count_hit() noexcept {
    hits.store(hits.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

// Slots live in fixed chunks that are never moved or freed before the table, so a pointer to a
// slot stays valid and readers need no lock: they load size() and index below it.
class SlotTable {
 public:
  static constexpr std::uint32_t kChunkSize = 32;
  static constexpr std::uint32_t kMaxChunks = 128;
  static constexpr std::uint32_t kCapacity = kChunkSize * kMaxChunks;  // 4096 slots

  SlotTable() = default;
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  std::uint32_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  Slot& at(std::uint32_t i) const noexcept {
    return chunks_[i / kChunkSize].load(std::memory_order_acquire)->slots[i % kChunkSize];
  }

  // Appends a slot. The caller serialises calls (the engine's mutex). Returns nullptr when the
  // table is full.
  Slot* append();

 private:
  struct Chunk {
    std::array<Slot, kChunkSize> slots;
  };
  std::array<std::atomic<Chunk*>, kMaxChunks> chunks_{};
  std::atomic<std::uint32_t> size_{0};
};

}  // namespace reservoir::core
