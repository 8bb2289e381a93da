// src/core/engine.hpp: the pool engine. Sizing, the wait queue, get modes, close and the
// accounting of every connection; it knows databases only through reservoir::Driver.
//
// Locking: the fast path (an idle connection is there) takes no lock: it swaps a slot from idle
// to in_use. Everything else (reserving slots, the wait queue, close) holds mutex_. A releasing
// lease publishes its slot as idle and only then checks waiters_, while a waiter counts itself in
// waiters_ and only then scans for idle slots: with both sequentially consistent, one of them
// always sees the other, so no wake-up is lost.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/slot.hpp"
#include "reservoir/driver.hpp"
#include "reservoir/lease.hpp"
#include "reservoir/options.hpp"
#include "reservoir/stats.hpp"

namespace reservoir::core {

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  using Clock = std::chrono::steady_clock;

  // A waiter older than this gets released connections handed to it directly; younger ones
  // compete with newcomers (Go's sync.Mutex starvation rule).
  static constexpr auto kStarvationBound = std::chrono::milliseconds(1);

  // Checks options, opens min connections, returns the engine. The returned pointer's deleter
  // retires the engine (see retire()).
  static std::shared_ptr<Engine> create(const PoolOptions& options);

  Lease acquire(const AcquireOptions& options);

  // Called by Lease. release() never throws.
  void release(Slot* slot, bool drop) noexcept;
  static Connection& connection(Slot* slot);

  std::uint32_t opened() const noexcept { return opened_.load(std::memory_order_relaxed); }
  std::uint32_t busy() const noexcept;
  std::uint32_t idle() const noexcept;
  std::uint32_t waiting() const noexcept { return waiters_.load(std::memory_order_relaxed); }
  PoolStats stats() const;
  void reconfigure(const PoolSettings& settings);
  PoolOptions options() const;
  void close(bool force);
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

 private:
  struct Waiter;
  struct Retirer {
    void operator()(Engine* e) const noexcept;
  };

  Engine(const PoolOptions& options, Dsn dsn, std::shared_ptr<Driver> driver);
  ~Engine();

  // Moves slot from `from` to `to` if it is in `from`, keeping the counters in step.
  bool move(Slot& slot, SlotState from, SlotState to) noexcept;

  Slot* try_take_idle() noexcept;
  Lease acquire_slow(GetMode mode, std::chrono::milliseconds wait_timeout);
  bool has_room() const noexcept;  // REQUIRES(mutex_)
  Slot* reserve_slot(bool extra);  // REQUIRES(mutex_); empty -> connecting
  // Opens the connection for a slot this thread reserved; on success the slot is in_use.
  Lease connect_reserved(Slot* slot, Clock::time_point deadline);
  void open_in_background(std::uint32_t count);  // REQUIRES(mutex_)
  void finish_background_open(Slot* slot) noexcept;
  void ensure_min() noexcept;
  void ensure_min_locked() noexcept;   // REQUIRES(mutex_)
  void schedule_min_retry() noexcept;  // REQUIRES(mutex_)
  // Whether a released connection must be closed instead of kept (rolls back an open
  // transaction first). Called by the slot's owner.
  bool must_discard(Slot& slot) noexcept;
  // Closes the connection of a slot this thread moved to closing, then empties it.
  void close_slot(Slot& slot, bool count_drop) noexcept;
  void wake_one() noexcept;          // REQUIRES(mutex_)
  void wake_all() noexcept;          // REQUIRES(mutex_)
  void on_capacity_freed() noexcept;  // takes mutex_
  // After slot became idle: hand it to the oldest waiter if that one waited past the starvation
  // bound, else wake a waiter to compete for it.
  void hand_off_or_wake(Slot& slot) noexcept;         // takes mutex_
  void hand_off_or_wake_locked(Slot& slot) noexcept;  // REQUIRES(mutex_)
  void enqueue(Waiter& w) noexcept;  // REQUIRES(mutex_)
  void dequeue(Waiter& w) noexcept;  // REQUIRES(mutex_)
  void retire() noexcept;
  void drop_retire_ref() noexcept;
  void record_connect_error(const std::string& message);  // REQUIRES(mutex_)
  [[noreturn]] void throw_timeout(std::chrono::milliseconds waited);  // REQUIRES(mutex_)
  std::string counters_text() const;

  // --- Constant after construction ---------------------------------------------------------
  const std::uint64_t id_;  // unique per engine in the process, for thread-local slot caches
  const Dsn dsn_;
  const std::shared_ptr<Driver> driver_;
  const std::string name_;
  const std::chrono::milliseconds connect_timeout_;
  const bool fail_fast_;
  const std::string dsn_text_;  // as given, for options()

  // --- Settings (reconfigure() writes them under mutex_; readers load them lock-free) ---------
  std::atomic<std::uint32_t> min_;
  std::atomic<std::uint32_t> max_;
  std::atomic<std::uint32_t> increment_;
  std::atomic<GetMode> get_mode_;
  std::atomic<std::int64_t> wait_timeout_ms_;

  // --- Lock-free state ----------------------------------------------------------------------
  SlotTable slots_;
  std::atomic<bool> closed_{false};
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::uint32_t> opened_{0};
  std::atomic<std::uint32_t> connecting_{0};
  std::atomic<std::uint64_t> misses_{0}, waits_{0}, timeouts_{0}, exhausted_{0},
      acquire_errors_{0}, creates_{0}, create_failures_{0}, drops_{0};
  std::atomic<std::int32_t> retire_refs_{0};

  // --- Protected by mutex_ ------------------------------------------------------------------
  mutable std::mutex mutex_;
  Waiter* head_ = nullptr;  // the wait queue, oldest first
  Waiter* tail_ = nullptr;
  std::uint32_t max_waiting_ = 0;
  std::string last_connect_error_;
  std::uint32_t connect_failures_in_row_ = 0;
  bool min_retry_scheduled_ = false;
  bool retired_ = false;
};

}  // namespace reservoir::core
