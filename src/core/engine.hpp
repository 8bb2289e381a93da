// src/core/engine.hpp: the pool engine. Sizing, the wait queue, get modes, health and expiry,
// session state (reset, tags, classes, users), close, and the accounting of every connection.
// It knows databases only through reservoir::Driver and time only through the pool's clock
// (waits for a free connection use real time).
//
// Locking: the fast path (an idle connection is there) takes no lock: it swaps a slot from idle
// to in_use. Everything else (reserving slots, the wait queue, close, maintenance) holds mutex_.
// A releasing lease publishes its slot as idle and only then reads waiters_, while a waiter
// counts itself in waiters_ and only then scans for idle slots: with both sequentially
// consistent, one of them always sees the other, so no wake-up is lost.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/class_table.hpp"
#include "core/histogram.hpp"
#include "core/slot.hpp"
#include "core/wait_queue.hpp"
#include "reservoir/driver.hpp"
#include "reservoir/lease.hpp"
#include "reservoir/options.hpp"
#include "reservoir/stats.hpp"

namespace reservoir::core {

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  using RealClock = std::chrono::steady_clock;
  using time_point = std::chrono::steady_clock::time_point;

  // The starvation bound (docs/pool.md, "Waiting"): a waiter older than its bound gets released
  // connections handed to it directly; younger ones compete with newcomers (Go's sync.Mutex
  // rule). The bound is kFairShareFactor times the wait that strict first-come-first-served
  // would give it (the waiters ahead of it, and itself, times the recent time between
  // releases), and at least kStarvationBound, at most kStarvationBoundMax; for a waiter with a
  // deadline, at most half its wait (Engine::enqueue).
  static constexpr auto kStarvationBound = std::chrono::milliseconds(1);
  static constexpr auto kStarvationBoundMax = std::chrono::milliseconds(10);
  static constexpr std::int64_t kFairShareFactor = 4;
  // The bound for a waiter that finds `ahead` waiters queued, when releases come every
  // `release_gap` (0: not known yet). Pure; exposed for tests.
  static std::chrono::nanoseconds starvation_bound(std::uint32_t ahead,
                                                   std::chrono::nanoseconds release_gap) noexcept;
  // When a waiter that began at since, gives up at deadline (time_point::max(): never) and
  // found `ahead` waiters queued gets released connections handed to it. Pure; for tests.
  static RealClock::time_point handoff_time(RealClock::time_point since,
                                            RealClock::time_point deadline, std::uint32_t ahead,
                                            std::chrono::nanoseconds release_gap) noexcept;

  // Checks options, opens min connections, starts maintenance, returns the engine. The returned
  // pointer's deleter retires the engine (see retire()).
  static std::shared_ptr<Engine> create(const PoolOptions& options);

  Lease acquire(const AcquireOptions& options, std::source_location where);

  // Called by Lease. release() never throws. new_tag: nullptr keeps the tag.
  void release(Slot* slot, bool drop, const std::string_view* new_tag) noexcept;
  static Connection& connection(Slot* slot);
  static const std::string& tag(Slot* slot);

  std::uint32_t opened() const noexcept { return opened_.load(std::memory_order_relaxed); }
  std::uint32_t busy() const noexcept;
  std::uint32_t idle() const noexcept;
  std::uint32_t waiting() const noexcept { return waiters_.load(std::memory_order_relaxed); }
  PoolStats stats() const;
  void reconfigure(const PoolSettings& settings);
  PoolOptions options() const;
  const std::string& name() const noexcept { return name_; }
  void close(bool force);
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  void run_maintenance();

  // ---- For the front ends: an acquire that did not find an idle connection at once ----------
  // The synchronous acquire and the asynchronous one (src/async) drive the same state machine,
  // so both kinds of acquirer wait in one first-come-first-served queue under the same rules.
  // The front end calls next_step() under mutex_ and carries out the step outside it:
  //   check    prepare(slot) (ping, purity reset, session callback), then end_check() under
  //            mutex_; true: finish_run() hands the lease out; false: next_step() again.
  //   connect  open the reserved slot's connection (connect_reserved(), or the driver's
  //            non-blocking ConnectOp and then adopt_connection()); on Error, connect_failed()
  //            under mutex_ from the catch block (it rethrows or lets the acquirer go on); on
  //            success set run.opened = slot under mutex_.
  //   evict    close_slot(slot, CloseReason::shrink, false), then next_step().
  //   wait     until the waiter is woken (cv, or its notify hook) or wake_at, then next_step().
  // Any exception from the front end's own work: fail_step() under mutex_. A front end that
  // gives up (cancellation) calls abandon_run(run, slot it owns or nullptr) without the lock.
  struct Request {
    const AcquireOptions* options = nullptr;
    std::uint64_t user_hash = 0;   // 0 in homogeneous pools
    std::uint64_t class_hash = 0;  // 0: the default class
    std::uint64_t tag_hash = 0;    // 0: no tag
    std::uint64_t label = 0;       // label_of(user_hash, class_hash, tag_hash)
    bool plain = false;            // none of the above, purity self, no session callback
    ClassTable::Entry* cls = nullptr;
    std::source_location where;
  };
  // How well an idle slot fits a request; lower is better.
  enum class Fit : std::uint8_t { exact, untagged, other_tag, none };
  struct AcquireRun {
    Request r;
    GetMode mode = GetMode::wait;
    RealClock::time_point start{}, deadline{};
    Waiter w;
    Fit normal_worst = Fit::other_tag;
    bool look = true;        // look at idle connections on the next step
    Slot* opened = nullptr;  // a connection this acquirer opened, to check as fresh
  };
  enum class StepKind : std::uint8_t { check, connect, evict, wait };
  struct Step {
    StepKind kind;
    Slot* slot;
    bool fresh;                     // check: a connection this acquirer opened
    bool hit;                       // check: counts as a hit (an open connection was reused)
    RealClock::time_point wake_at;  // wait
  };
  // The lock-free part of acquire(): an idle connection that fits, or an empty Lease. Builds the
  // Request into r when it needs one (r.options stays null otherwise).
  Lease try_idle(const AcquireOptions& options, std::source_location where, Request& r);
  // What acquire() does before the slow path: try_idle(), then resolve the request, the get
  // mode and the wait timeout. An empty Lease: go on with begin_run(r, mode, timeout).
  // Throws (and counts) invalid requests and what a fast-path check threw.
  Lease acquire_begin(const AcquireOptions& options, std::source_location where, Request& r,
                      GetMode& mode, std::chrono::milliseconds& timeout);
  Request make_request(const AcquireOptions& options, std::source_location where);
  void begin_run(AcquireRun& run, const Request& r, GetMode mode,
                 std::chrono::milliseconds wait_timeout) noexcept;
  GetMode default_get_mode() const noexcept { return get_mode_.load(std::memory_order_relaxed); }
  std::chrono::milliseconds default_wait_timeout() const noexcept {
    return std::chrono::milliseconds(wait_timeout_ms_.load(std::memory_order_relaxed));
  }
  Step next_step(AcquireRun& run);                       // REQUIRES(mutex_); throws (dequeued)
  bool end_check(AcquireRun& run, bool ok) noexcept;     // REQUIRES(mutex_)
  void fail_step(AcquireRun& run) noexcept;              // REQUIRES(mutex_)
  void connect_failed(AcquireRun& run, const Error& e);  // REQUIRES(mutex_); in a catch block
  Lease finish_run(AcquireRun& run, Slot& s, bool hit) noexcept;
  void abandon_run(AcquireRun& run, Slot* owned) noexcept;  // takes mutex_
  // Gives back a slot reserved for a connect that the front end gave up (cancelled): no
  // failure is recorded, no backoff. Takes mutex_.
  void cancel_reserved(Slot& slot) noexcept;
  bool has_session_callback() const noexcept { return has_callback_; }
  // Makes a slot this thread just took ready for the caller: lifetime, ping, class purity,
  // session callback. Returns false if the connection was closed instead (the caller tries
  // again). Throws what the session callback threw.
  bool prepare(Slot& slot, const Request& r, time_point now, bool fresh);
  // Whether prepare() would have nothing to do (no I/O): the async front end runs it inline then.
  bool ready_without_io(const Slot& slot, const Request& r, time_point now) const noexcept;
  time_point now() const noexcept;
  std::mutex& mutex() noexcept { return mutex_; }
  Driver& driver() const noexcept { return *driver_; }
  const Dsn& dsn() const noexcept { return dsn_; }
  bool custom_user(const Request& r) const noexcept {
    return r.user_hash != 0 && !r.options->user.empty();
  }
  Dsn dsn_for(const Request& r) const;
  std::chrono::milliseconds connect_timeout(RealClock::time_point deadline) const noexcept;
  // Opens the connection for a slot this thread reserved. On success the slot is in_use.
  // Throws the driver's error (after freeing the slot and recording the failure).
  // target: in_use (this thread gets it) or idle (for the pool: handed to a waiter or kept).
  void connect_reserved(Slot& slot, const Request& r, RealClock::time_point deadline,
                        SlotState target);
  // The second half of connect_reserved(), for a connection the front end opened itself (or
  // the error it got): the same accounting, the same errors.
  void adopt_connection(Slot& slot, const Request& r, std::unique_ptr<Connection> conn,
                        std::exception_ptr error, SlotState target);
  // Closes the connection of a slot this thread moved to closing, then empties it.
  // refill = false: do not open replacements up to min (an eviction whose room is for the
  // evicting acquirer).
  void close_slot(Slot& slot, CloseReason why, bool refill = true) noexcept;
  std::uint64_t id() const noexcept { return id_; }

 private:
  struct Retirer {
    void operator()(Engine* e) const noexcept;
  };
  // One word that is 0 exactly when user, class and tag hashes are all 0, so that the fast
  // path compares one value.
  static std::uint64_t label_of(std::uint64_t user, std::uint64_t cls, std::uint64_t tag) noexcept {
    return user ^ std::rotl(cls, 21) ^ std::rotl(tag, 42);
  }
  static void update_label(Slot& s) noexcept {
    s.label.store(label_of(s.user_hash.load(std::memory_order_relaxed),
                           s.class_hash.load(std::memory_order_relaxed),
                           s.tag_hash.load(std::memory_order_relaxed)),
                  std::memory_order_relaxed);
  }
  struct PendingClose {
    Slot* slot;
    CloseReason reason;
  };

  Engine(const PoolOptions& options, Dsn dsn, std::shared_ptr<Driver> driver);
  ~Engine();

  static std::int64_t ns(time_point t) noexcept { return t.time_since_epoch().count(); }

  // Moves slot from `from` to `to` if it is in `from`, keeping the counters in step.
  bool move(Slot& slot, SlotState from, SlotState to) noexcept;

  Fit fit(const Slot& slot, const Request& r) const noexcept;
  // Takes the best-fitting idle slot no worse than `worst`, or nullptr.
  Slot* try_take_idle(const Request& r, Fit worst) noexcept;
  bool ready_as_is(const Slot& slot, const Request& r, time_point now) const noexcept;
  bool fresh_enough(const Slot& slot, time_point now) const noexcept;
  Lease hand_out(Slot& slot, std::source_location where, time_point now) noexcept;
  Lease acquire_begin_inline(const AcquireOptions& options, std::source_location where,
                             Request& r, GetMode& mode, std::chrono::milliseconds& timeout);
  Lease acquire_slow(const Request& r, GetMode mode, std::chrono::milliseconds wait_timeout);
  // Moves a slot this thread took (in_use, or revoked by close(true) meanwhile) to closing.
  bool take_for_close(Slot& slot) noexcept {
    return move(slot, SlotState::in_use, SlotState::closing) ||
           move(slot, SlotState::revoked, SlotState::closing);
  }

  bool has_room() const noexcept;                   // REQUIRES(mutex_)
  bool may_connect(time_point now) const noexcept;  // REQUIRES(mutex_)
  Slot* reserve_slot(bool extra);                   // REQUIRES(mutex_); empty -> connecting
  void open_in_background(std::uint32_t count);     // REQUIRES(mutex_)
  void start_pending_locked() noexcept;             // REQUIRES(mutex_)
  void finish_background_open(Slot* slot) noexcept;
  void ensure_min_locked() noexcept;      // REQUIRES(mutex_)
  void schedule_retry_locked() noexcept;  // REQUIRES(mutex_)
  void schedule_maintenance() noexcept;
  // Whether a released connection must be closed instead of kept, and why. Rolls back or
  // resets the session first. Called by the slot's owner.
  bool must_discard(Slot& slot, time_point now, CloseReason& why) noexcept;
  void close_all(const std::vector<PendingClose>& closes) noexcept;
  void on_capacity_freed(bool refill) noexcept;       // takes mutex_
  // After a release with waiters: hands the connection to the oldest waiter past its starvation
  // bound, or wakes one. hand_off_or_wake() notifies a synchronous waiter after leaving mutex_;
  // the _locked form notifies under it, or, given later, pins the waiter there for the caller
  // to notify (Waiter::notify_pinned) once it has left mutex_.
  void hand_off_or_wake(Slot& slot) noexcept;  // takes mutex_
  void hand_off_or_wake_locked(Slot& slot, Waiter** later = nullptr) noexcept;  // REQUIRES(mutex_)
  // Queues w for an acquire begun at since; its starvation bound ends at the latest half-way
  // to deadline.
  void enqueue(Waiter& w, RealClock::time_point since,
               RealClock::time_point deadline) noexcept;  // REQUIRES(mutex_)
  void dequeue(Waiter& w) noexcept;                   // REQUIRES(mutex_)
  bool any_idle() const noexcept;
  // Heterogeneous pools at max: closes the least recently used idle connection of another user.
  Slot* evict_other_user_locked(std::uint64_t user_hash) noexcept;  // REQUIRES(mutex_)
  void retire() noexcept;
  void drop_retire_ref() noexcept;
  void record_connect_failure_locked(const std::string& message) noexcept;  // REQUIRES(mutex_)
  [[noreturn]] void throw_timeout(std::chrono::milliseconds waited, bool fail_fast);
  std::string counters_text() const;
  std::uint32_t count_slots(bool (*pred)(SlotState)) const noexcept;
  void log(LogLevel level, const std::string& message) const noexcept;

  // --- Constant after construction ---------------------------------------------------------
  const std::uint64_t id_;     // unique per engine in the process, for thread-local slot caches
  const PoolOptions options_;  // as created; the adjustable fields live in the atomics below
  const Dsn dsn_;
  const std::shared_ptr<Driver> driver_;
  const std::shared_ptr<Clock> clock_;  // null: the process's coarse ticker
  const std::string name_;
  const std::int64_t leak_threshold_ns_;  // 0: off
  const std::uint64_t default_user_hash_;
  const bool has_callback_;
  const bool plain_;  // homogeneous and no session callback: the fast path applies

  // --- Settings (reconfigure() writes them under mutex_; readers load them lock-free) ---------
  std::atomic<std::uint32_t> min_;
  std::atomic<std::uint32_t> max_;
  std::atomic<std::uint32_t> increment_;
  std::atomic<GetMode> get_mode_;
  std::atomic<std::int64_t> wait_timeout_ms_;
  std::atomic<std::int64_t> ping_interval_ns_;  // < 0: never
  std::atomic<std::int64_t> idle_timeout_ns_;   // 0: never
  std::atomic<std::int64_t> max_lifetime_ns_;   // 0: never; applies to connections opened later

  // --- Lock-free state ----------------------------------------------------------------------
  SlotTable slots_;
  ClassTable classes_;
  LatencyHistogram wait_time_;  // acquires that did not find an idle connection at once
  std::atomic<bool> closed_{false};
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::uint32_t> opened_{0};
  std::atomic<std::uint32_t> connecting_{0};
  std::atomic<std::uint64_t> misses_{0}, waits_{0}, timeouts_{0}, exhausted_{0}, acquire_errors_{0},
      creates_{0}, create_failures_{0}, ping_failures_{0}, leaks_{0}, slow_acquires_{0},
      cancelled_{0};
  std::array<std::atomic<std::uint64_t>, kCloseReasons> closed_by_{};
  std::atomic<std::int32_t> retire_refs_{0};

  // --- Protected by mutex_ ------------------------------------------------------------------
  mutable std::mutex mutex_;
  WaitQueue queue_;
  // Releases that found waiters: when the last came, and a moving average of the time between
  // them (for the starvation bound; nanoseconds, 0 until known).
  RealClock::time_point last_contended_release_{};
  std::int64_t release_gap_ns_ = 0;
  Backoff backoff_;
  std::uint32_t max_waiting_ = 0;
  std::string last_connect_error_;
  bool retry_scheduled_ = false;
  std::uint32_t pending_opens_ = 0;  // background opens asked for and not yet started
};

}  // namespace reservoir::core
