// src/core/engine.cpp: the pool engine (see engine.hpp for the locking rules).
#include "core/engine.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "core/background.hpp"
#include "core/options_check.hpp"
#include "reservoir/error.hpp"

namespace reservoir::core {

namespace {

std::atomic<std::uint64_t> g_next_engine_id{1};

// Each thread remembers the last slot it used per pool, so that in the common case an acquire
// touches one slot that this thread's cache already holds. Entries of pools that are gone are
// never dereferenced: ids are not reused.
struct CacheEntry {
  std::uint64_t engine_id = 0;
  Slot* slot = nullptr;
};
thread_local std::array<CacheEntry, 4> t_cache{};
thread_local std::uint32_t t_cache_next = 0;

Slot* cached_slot(std::uint64_t id) noexcept {
  for (const auto& e : t_cache)
    if (e.engine_id == id) return e.slot;
  return nullptr;
}

void remember_slot(std::uint64_t id, Slot* slot) noexcept {
  for (auto& e : t_cache) {
    if (e.engine_id == id) {
      e.slot = slot;
      return;
    }
  }
  t_cache[t_cache_next++ % t_cache.size()] = CacheEntry{id, slot};
}

// Where this thread starts scanning, so that threads spread over the slots.
std::uint32_t scan_start() noexcept {
  thread_local const std::uint32_t start =
      static_cast<std::uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  return start;
}

void wait_not_releasing(const Slot& s) noexcept {
  while (s.releasing.load(std::memory_order_acquire)) std::this_thread::yield();
}

}  // namespace

struct Engine::Waiter {
  std::condition_variable cv;
  Clock::time_point since;
  Slot* handed = nullptr;  // set by a releaser that handed this waiter a connection
  bool signalled = false;  // a wake-up is on its way; don't spend another on this waiter
  Waiter* prev = nullptr;
  Waiter* next = nullptr;
};

void Engine::Retirer::operator()(Engine* e) const noexcept { e->retire(); }

Engine::Engine(const PoolOptions& o, Dsn dsn, std::shared_ptr<Driver> driver)
    : id_(g_next_engine_id.fetch_add(1)),
      dsn_(std::move(dsn)),
      driver_(std::move(driver)),
      name_(o.name.empty() ? dsn_.redacted() : o.name),
      connect_timeout_(o.connect_timeout),
      fail_fast_(o.fail_fast),
      dsn_text_(o.dsn),
      min_(o.min),
      max_(o.max),
      increment_(o.increment),
      get_mode_(o.get_mode),
      wait_timeout_ms_(o.wait_timeout.count()) {}

Engine::~Engine() = default;

std::shared_ptr<Engine> Engine::create(const PoolOptions& options) {
  Dsn dsn = check_options(options);
  auto driver = resolve_driver(options, dsn);
  std::shared_ptr<Engine> e(new Engine(options, std::move(dsn), std::move(driver)), Retirer{});
  for (std::uint32_t i = 0; i < options.min; ++i) {
    Slot* slot;
    {
      std::lock_guard lk(e->mutex_);
      slot = e->reserve_slot(false);
    }
    try {
      auto conn = e->driver_->connect(e->dsn_, e->connect_timeout_);
      if (!conn) throw Error(ErrorCode::internal, "driver returned no connection");
      slot->conn = std::move(conn);
      std::lock_guard lk(e->mutex_);
      e->move(*slot, SlotState::connecting, SlotState::idle);
    } catch (const Error& err) {
      std::lock_guard lk(e->mutex_);
      e->move(*slot, SlotState::connecting, SlotState::empty);
      e->record_connect_error(err.what());
      if (options.fail_fast) throw;  // e's deleter retires the engine
      e->schedule_min_retry();
      break;
    }
  }
  return e;
}

bool Engine::move(Slot& slot, SlotState from, SlotState to) noexcept {
  SlotState expected = from;
  if (!slot.state.compare_exchange_strong(expected, to, std::memory_order_seq_cst)) return false;
  // A connection exists from the moment a slot leaves `connecting` for anything but `empty`,
  // and until it goes from `closing` to `empty`. Count it before uncounting the attempt, so
  // opened + connecting never reads low (it caps growth).
  if (from == SlotState::connecting && to != SlotState::empty) {
    opened_.fetch_add(1, std::memory_order_relaxed);
    creates_.fetch_add(1, std::memory_order_relaxed);
  }
  if (from == SlotState::connecting) connecting_.fetch_sub(1, std::memory_order_relaxed);
  if (to == SlotState::connecting) connecting_.fetch_add(1, std::memory_order_relaxed);
  if (from == SlotState::closing && to == SlotState::empty)
    opened_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

// ---- acquire ---------------------------------------------------------------------------------

Slot* Engine::try_take_idle() noexcept {
  if (Slot* c = cached_slot(id_)) {
    SlotState expected = SlotState::idle;
    if (c->state.compare_exchange_strong(expected, SlotState::in_use)) return c;
  }
  const std::uint32_t n = slots_.size();
  if (n == 0) return nullptr;
  const std::uint32_t start = scan_start() % n;
  for (std::uint32_t i = 0, k = start; i < n; ++i, k = (k + 1 == n ? 0 : k + 1)) {
    Slot& s = slots_.at(k);
    // seq_cst loads: a waiter's scan must see a releaser's publication (see engine.hpp).
    if (s.state.load() != SlotState::idle) continue;
    SlotState expected = SlotState::idle;
    if (s.state.compare_exchange_strong(expected, SlotState::in_use)) {
      remember_slot(id_, &s);
      return &s;
    }
  }
  return nullptr;
}

Lease Engine::acquire(const AcquireOptions& options) {
  if (!closed_.load(std::memory_order_relaxed)) {
    if (Slot* s = try_take_idle()) {
      s->count_hit();
      return Lease(this, s);
    }
  }
  const GetMode mode = options.get_mode.value_or(get_mode_.load(std::memory_order_relaxed));
  const auto timeout = options.wait_timeout.value_or(
      std::chrono::milliseconds(wait_timeout_ms_.load(std::memory_order_relaxed)));
  if (timeout.count() < 0)
    throw Error(ErrorCode::invalid_argument, "acquire: wait_timeout must not be negative");
  return acquire_slow(mode, timeout);
}

bool Engine::has_room() const noexcept {
  return opened_.load(std::memory_order_relaxed) + connecting_.load(std::memory_order_relaxed) <
         max_.load(std::memory_order_relaxed);
}

Slot* Engine::reserve_slot(bool extra) {
  Slot* slot = nullptr;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n && slot == nullptr; ++i) {
    Slot& s = slots_.at(i);
    if (s.state.load() == SlotState::empty && !s.releasing.load(std::memory_order_acquire) &&
        move(s, SlotState::empty, SlotState::connecting))
      slot = &s;
  }
  if (slot == nullptr) {
    slot = slots_.append();
    if (slot == nullptr) return nullptr;
    move(*slot, SlotState::empty, SlotState::connecting);
  }
  slot->extra = extra;
  return slot;
}

Lease Engine::acquire_slow(GetMode mode, std::chrono::milliseconds wait_timeout) {
  std::unique_lock lk(mutex_);
  const auto start = Clock::now();
  const auto deadline =
      mode == GetMode::wait ? Clock::time_point::max() : start + wait_timeout;

  auto grow = [&]() -> Slot* {
    if (!has_room()) return nullptr;
    Slot* s = reserve_slot(false);
    if (s != nullptr) open_in_background(increment_.load(std::memory_order_relaxed) - 1);
    return s;
  };

  if (closed_.load()) {
    acquire_errors_.fetch_add(1, std::memory_order_relaxed);
    throw Error(ErrorCode::pool_closed, "pool '" + name_ + "' is closed");
  }
  if (Slot* s = try_take_idle()) {
    lk.unlock();
    s->count_hit();
    return Lease(this, s);
  }
  if (Slot* s = grow()) {
    lk.unlock();
    return connect_reserved(s, deadline);
  }
  if (mode == GetMode::no_wait) {
    exhausted_.fetch_add(1, std::memory_order_relaxed);
    throw Error(ErrorCode::pool_exhausted, "pool '" + name_ +
                                               "': no connection free and the pool is at max "
                                               "(get mode no_wait; " +
                                               counters_text() + ")");
  }
  if (mode == GetMode::force_get) {
    Slot* s = reserve_slot(true);
    if (s == nullptr) {
      exhausted_.fetch_add(1, std::memory_order_relaxed);
      throw Error(ErrorCode::pool_exhausted,
                  "pool '" + name_ + "': force_get cannot exceed " +
                      std::to_string(SlotTable::kCapacity) + " connections");
    }
    lk.unlock();
    return connect_reserved(s, deadline);
  }

  // wait / timed_wait: join the queue.
  waits_.fetch_add(1, std::memory_order_relaxed);
  Waiter w;
  w.since = start;
  enqueue(w);
  bool first_look = true;
  for (;;) {
    if (w.handed != nullptr) {  // the releaser dequeued us
      lk.unlock();
      w.handed->count_hit();
      remember_slot(id_, w.handed);
      return Lease(this, w.handed);
    }
    if (closed_.load()) {
      dequeue(w);
      acquire_errors_.fetch_add(1, std::memory_order_relaxed);
      throw Error(ErrorCode::pool_closed,
                  "pool '" + name_ + "' was closed while waiting for a connection");
    }
    // A waiter competes for idle connections when it was woken for one (or on its first look,
    // which a release that happened before it counted itself may have been meant for), not on
    // a spurious wake-up: that would overtake older waiters.
    if (first_look || w.signalled) {
      if (Slot* s = try_take_idle()) {
        dequeue(w);
        lk.unlock();
        s->count_hit();
        return Lease(this, s);
      }
    }
    first_look = false;
    if (Slot* s = grow()) {
      dequeue(w);
      lk.unlock();
      return connect_reserved(s, deadline);
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      dequeue(w);
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      throw_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(now - start));
    }
    w.signalled = false;
    if (mode == GetMode::wait) {
      w.cv.wait(lk);
    } else {
      w.cv.wait_until(lk, deadline);
    }
  }
}

Lease Engine::connect_reserved(Slot* slot, Clock::time_point deadline) {
  auto timeout = connect_timeout_;
  if (deadline != Clock::time_point::max()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    left = std::max(left, std::chrono::milliseconds(1));
    if (timeout.count() == 0 || left < timeout) timeout = left;
  }
  std::unique_ptr<Connection> conn;
  try {
    conn = driver_->connect(dsn_, timeout);
    if (!conn) throw Error(ErrorCode::internal, "driver returned no connection");
  } catch (const std::exception& e) {
    std::lock_guard lk(mutex_);
    move(*slot, SlotState::connecting, SlotState::empty);
    create_failures_.fetch_add(1, std::memory_order_relaxed);
    acquire_errors_.fetch_add(1, std::memory_order_relaxed);
    record_connect_error(e.what());
    ++connect_failures_in_row_;
    wake_one();  // the attempt's room is free again
    if (dynamic_cast<const Error*>(&e) != nullptr) throw;
    throw Error(ErrorCode::connect_failed, "pool '" + name_ + "': " + e.what());
  }
  slot->conn = std::move(conn);
  {
    std::unique_lock lk(mutex_);
    if (closed_.load()) {
      move(*slot, SlotState::connecting, SlotState::closing);
      acquire_errors_.fetch_add(1, std::memory_order_relaxed);
      lk.unlock();
      close_slot(*slot, false);
      throw Error(ErrorCode::pool_closed, "pool '" + name_ + "' was closed while connecting");
    }
    connect_failures_in_row_ = 0;
    move(*slot, SlotState::connecting, SlotState::in_use);
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  remember_slot(id_, slot);
  return Lease(this, slot);
}

// ---- background opening -------------------------------------------------------------------

void Engine::open_in_background(std::uint32_t count) {
  if (closed_.load()) return;
  std::weak_ptr<Engine> weak = weak_from_this();
  for (std::uint32_t i = 0; i < count && has_room(); ++i) {
    Slot* s = reserve_slot(false);
    if (s == nullptr) return;
    Background::instance().post([weak, s] {
      if (auto e = weak.lock()) e->finish_background_open(s);
    });
  }
}

void Engine::finish_background_open(Slot* slot) noexcept {
  std::unique_ptr<Connection> conn;
  std::string error;
  try {
    conn = driver_->connect(dsn_, connect_timeout_);
    if (!conn) error = "driver returned no connection";
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::unique_lock lk(mutex_);
  if (!error.empty()) {
    move(*slot, SlotState::connecting, SlotState::empty);
    create_failures_.fetch_add(1, std::memory_order_relaxed);
    record_connect_error(error);
    ++connect_failures_in_row_;
    schedule_min_retry();
    wake_one();  // a waiter may try a connect of its own within its deadline
    return;
  }
  slot->conn = std::move(conn);
  if (closed_.load()) {
    move(*slot, SlotState::connecting, SlotState::closing);
    lk.unlock();
    close_slot(*slot, false);
    return;
  }
  connect_failures_in_row_ = 0;
  move(*slot, SlotState::connecting, SlotState::idle);
  hand_off_or_wake_locked(*slot);
}

void Engine::ensure_min() noexcept {
  std::lock_guard lk(mutex_);
  ensure_min_locked();
}

void Engine::ensure_min_locked() noexcept {
  if (closed_.load()) return;
  const std::uint32_t have = opened_.load() + connecting_.load();
  const std::uint32_t min = min_.load();
  if (have < min) open_in_background(min - have);
}

void Engine::schedule_min_retry() noexcept {
  if (min_retry_scheduled_ || closed_.load()) return;
  if (opened_.load() + connecting_.load() >= min_.load()) return;
  min_retry_scheduled_ = true;
  // Exponential backoff with jitter: 100 ms, 200 ms, ... up to 10 s.
  const std::uint32_t step = std::min<std::uint32_t>(connect_failures_in_row_, 7);
  auto delay = std::chrono::milliseconds(100) * (1u << step);
  delay = std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10));
  thread_local std::minstd_rand rng(std::random_device{}());
  delay += std::chrono::milliseconds(rng() % (delay.count() / 4 + 1));
  std::weak_ptr<Engine> weak = weak_from_this();
  Background::instance().post_at(Clock::now() + delay, [weak] {
    if (auto e = weak.lock()) {
      std::lock_guard lk(e->mutex_);
      e->min_retry_scheduled_ = false;
      e->ensure_min_locked();
    }
  });
}

// ---- release -------------------------------------------------------------------------------

bool Engine::must_discard(Slot& slot) noexcept {
  Connection* c = slot.conn.get();
  if (c->broken()) return true;
  if (c->in_transaction()) {
    try {
      c->rollback();
    } catch (...) {
      return true;
    }
    if (c->in_transaction() || c->broken()) return true;
  }
  // Over max: a force_get extra, or the pool was shrunk by reconfigure().
  return opened_.load(std::memory_order_relaxed) > max_.load(std::memory_order_relaxed);
}

void Engine::release(Slot* slot, bool drop) noexcept {
  slot->releasing.store(true, std::memory_order_relaxed);
  bool checked = false, discard = false;
  for (;;) {
    const SlotState s = slot->state.load(std::memory_order_acquire);
    switch (s) {
      case SlotState::orphaned:
      case SlotState::orphaned_revoked:
        // The pool is gone; only this lease still touches the engine's memory.
        slot->conn.reset();
        slot->state.store(SlotState::empty, std::memory_order_release);
        slot->releasing.store(false, std::memory_order_release);
        drop_retire_ref();
        return;
      case SlotState::revoked:
        if (!move(*slot, SlotState::revoked, SlotState::closing)) continue;
        close_slot(*slot, false);
        slot->releasing.store(false, std::memory_order_release);
        return;
      case SlotState::in_use:
        if (!checked) {
          discard = drop || must_discard(*slot);
          checked = true;
        }
        if (discard) {
          if (!move(*slot, SlotState::in_use, SlotState::closing)) continue;
          close_slot(*slot, true);
        } else {
          if (!move(*slot, SlotState::in_use, SlotState::idle)) continue;
          remember_slot(id_, slot);
          if (waiters_.load() != 0) hand_off_or_wake(*slot);
        }
        slot->releasing.store(false, std::memory_order_release);
        return;
      default:
        assert(false && "a lease held a slot in a state no lease holds");
        slot->releasing.store(false, std::memory_order_release);
        return;
    }
  }
}

void Engine::hand_off_or_wake(Slot& slot) noexcept {
  std::lock_guard lk(mutex_);
  hand_off_or_wake_locked(slot);
}

void Engine::hand_off_or_wake_locked(Slot& slot) noexcept {
  Waiter* front = head_;
  if (front == nullptr) return;
  if (Clock::now() - front->since >= kStarvationBound) {
    SlotState expected = SlotState::idle;
    if (slot.state.compare_exchange_strong(expected, SlotState::in_use)) {
      dequeue(*front);
      front->handed = &slot;
      front->signalled = true;
      front->cv.notify_one();
      return;
    }
  }
  wake_one();
}

void Engine::close_slot(Slot& slot, bool count_drop) noexcept {
  slot.conn.reset();
  slot.extra = false;
  move(slot, SlotState::closing, SlotState::empty);
  if (count_drop) drops_.fetch_add(1, std::memory_order_relaxed);
  on_capacity_freed();
}

void Engine::on_capacity_freed() noexcept {
  std::lock_guard lk(mutex_);
  if (closed_.load()) return;
  wake_one();
  ensure_min_locked();
}

// ---- the wait queue --------------------------------------------------------------------------

void Engine::enqueue(Waiter& w) noexcept {
  w.prev = tail_;
  w.next = nullptr;
  if (tail_ != nullptr) tail_->next = &w; else head_ = &w;
  tail_ = &w;
  const std::uint32_t n = waiters_.fetch_add(1) + 1;  // seq_cst: see engine.hpp
  max_waiting_ = std::max(max_waiting_, n);
}

void Engine::dequeue(Waiter& w) noexcept {
  if (w.prev != nullptr) w.prev->next = w.next; else head_ = w.next;
  if (w.next != nullptr) w.next->prev = w.prev; else tail_ = w.prev;
  w.prev = w.next = nullptr;
  waiters_.fetch_sub(1);
}

void Engine::wake_one() noexcept {
  for (Waiter* w = head_; w != nullptr; w = w->next) {
    if (!w->signalled) {
      w->signalled = true;
      w->cv.notify_one();
      return;
    }
  }
}

void Engine::wake_all() noexcept {
  for (Waiter* w = head_; w != nullptr; w = w->next) {
    w->signalled = true;
    w->cv.notify_one();
  }
}

// ---- close and retire --------------------------------------------------------------------------

void Engine::close(bool force) {
  std::vector<Slot*> claimed;
  {
    std::lock_guard lk(mutex_);
    if (closed_.load()) return;
    closed_.store(true);
    std::uint32_t busy = 0;
    const std::uint32_t n = slots_.size();
    for (std::uint32_t i = 0; i < n; ++i) {
      Slot& s = slots_.at(i);
      for (;;) {
        const SlotState st = s.state.load();
        if (st == SlotState::idle) {
          if (!move(s, SlotState::idle, SlotState::closing)) continue;
          claimed.push_back(&s);
        } else if (st == SlotState::in_use && force) {
          if (!move(s, SlotState::in_use, SlotState::revoked)) continue;
        } else if (is_leased(st) || st == SlotState::connecting) {
          ++busy;
        }
        break;
      }
    }
    if (!force && busy != 0) {
      for (Slot* s : claimed) move(*s, SlotState::closing, SlotState::idle);
      closed_.store(false);
      throw Error(ErrorCode::pool_busy,
                  "pool '" + name_ + "': " + std::to_string(busy) +
                      " connection(s) still leased or opening; release them first or "
                      "close(force=true)");
    }
    wake_all();
  }
  for (Slot* s : claimed) close_slot(*s, false);
}

void Engine::retire() noexcept {
  {
    std::lock_guard lk(mutex_);
    closed_.store(true);
    retired_ = true;
    wake_all();
  }
  retire_refs_.store(1);
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) {
    Slot& s = slots_.at(i);
    for (;;) {
      const SlotState st = s.state.load();
      if (st == SlotState::idle) {
        if (!move(s, SlotState::idle, SlotState::closing)) continue;
        wait_not_releasing(s);
        s.conn.reset();
        move(s, SlotState::closing, SlotState::empty);
      } else if (st == SlotState::in_use || st == SlotState::revoked) {
        retire_refs_.fetch_add(1);
        SlotState expected = st;
        const SlotState to =
            st == SlotState::in_use ? SlotState::orphaned : SlotState::orphaned_revoked;
        if (!s.state.compare_exchange_strong(expected, to)) {
          retire_refs_.fetch_sub(1);
          continue;
        }
      } else if (st == SlotState::closing) {
        std::this_thread::yield();  // a lease is closing it; it will be empty shortly
        continue;
      } else {
        wait_not_releasing(s);
      }
      break;
    }
  }
  drop_retire_ref();
}

void Engine::drop_retire_ref() noexcept {
  if (retire_refs_.fetch_sub(1) == 1) delete this;
}

Connection& Engine::connection(Slot* slot) {
  const SlotState s = slot->state.load(std::memory_order_acquire);
  if (s == SlotState::in_use || s == SlotState::orphaned) return *slot->conn;
  if (s == SlotState::revoked || s == SlotState::orphaned_revoked)
    throw Error(ErrorCode::pool_closed,
                "this lease was revoked: its pool was closed with force while it was out");
  throw Error(ErrorCode::internal, std::string("lease on a slot in state ") + to_string(s));
}

// ---- observation and settings ---------------------------------------------------------------

std::uint32_t Engine::busy() const noexcept {
  std::uint32_t busy = 0;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) busy += is_leased(slots_.at(i).state.load()) ? 1 : 0;
  return busy;
}

std::uint32_t Engine::idle() const noexcept {
  std::uint32_t idle = 0;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i)
    idle += slots_.at(i).state.load() == SlotState::idle ? 1 : 0;
  return idle;
}

std::string Engine::counters_text() const {
  return "opened=" + std::to_string(opened()) + " busy=" + std::to_string(busy()) +
         " idle=" + std::to_string(idle()) + " connecting=" + std::to_string(connecting_.load()) +
         " waiting=" + std::to_string(waiting()) + " max=" + std::to_string(max_.load());
}

void Engine::throw_timeout(std::chrono::milliseconds waited) {
  std::string msg = "pool '" + name_ + "': no connection became free within " +
                    std::to_string(waited.count()) + " ms (" + counters_text() + ")";
  if (!last_connect_error_.empty() && connect_failures_in_row_ > 0)
    msg += "; connects are failing, last error: " + last_connect_error_;
  throw Error(ErrorCode::pool_timeout, msg);
}

void Engine::record_connect_error(const std::string& message) { last_connect_error_ = message; }

PoolStats Engine::stats() const {
  PoolStats st;
  std::uint64_t hits = 0;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) {
    const Slot& s = slots_.at(i);
    hits += s.hits.load(std::memory_order_relaxed);
    const SlotState state = s.state.load();
    st.busy += is_leased(state) ? 1 : 0;
    st.idle += state == SlotState::idle ? 1 : 0;
  }
  st.opened = opened_.load();
  st.connecting = connecting_.load();
  st.waiting = waiters_.load();
  st.hits = hits;
  st.misses = misses_.load();
  st.waits = waits_.load();
  st.timeouts = timeouts_.load();
  st.exhausted = exhausted_.load();
  st.creates = creates_.load();
  st.create_failures = create_failures_.load();
  st.drops = drops_.load();
  st.acquires = st.hits + st.misses + st.timeouts + st.exhausted + acquire_errors_.load();
  std::lock_guard lk(mutex_);
  st.max_waiting = max_waiting_;
  st.last_connect_error = last_connect_error_;
  return st;
}

PoolOptions Engine::options() const {
  PoolOptions o;
  o.name = name_;
  o.min = min_.load();
  o.max = max_.load();
  o.increment = increment_.load();
  o.get_mode = get_mode_.load();
  o.wait_timeout = std::chrono::milliseconds(wait_timeout_ms_.load());
  o.connect_timeout = connect_timeout_;
  o.fail_fast = fail_fast_;
  o.driver = driver_;
  o.dsn = dsn_text_;
  return o;
}

void Engine::reconfigure(const PoolSettings& s) {
  std::vector<Slot*> claimed;
  {
    std::lock_guard lk(mutex_);
    check_settings(s, min_.load(), max_.load());
    if (s.min) min_.store(*s.min);
    if (s.max) max_.store(*s.max);
    if (s.increment) increment_.store(*s.increment);
    if (s.get_mode) get_mode_.store(*s.get_mode);
    if (s.wait_timeout) wait_timeout_ms_.store(s.wait_timeout->count());
    // Shrink: close idle connections above the new max now; busy ones go when released.
    const std::uint32_t max = max_.load();
    std::uint32_t opened = opened_.load();
    const std::uint32_t n = slots_.size();
    for (std::uint32_t i = 0; i < n && opened > max; ++i) {
      Slot& s = slots_.at(i);
      if (move(s, SlotState::idle, SlotState::closing)) {
        claimed.push_back(&s);
        --opened;
      }
    }
    ensure_min_locked();
    wake_all();  // a larger max or another get mode may let waiters proceed
  }
  for (Slot* s : claimed) close_slot(*s, true);
}

}  // namespace reservoir::core
