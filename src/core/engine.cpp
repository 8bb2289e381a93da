// src/core/engine.cpp: the pool engine (see engine.hpp for the locking rules).
#include "core/engine.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <functional>
#include <random>
#include <thread>

#include "core/background.hpp"
#include "core/hazard.hpp"
#include "core/options_check.hpp"
#include "core/ticker.hpp"
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
      if (e.slot != slot) e.slot = slot;  // usually the same: no store, nothing to drain
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

std::uint64_t credentials_hash(const std::string& user, const std::string& password) {
  std::string key = user;
  key.push_back('\0');
  key += password;
  return hash_name(key);
}

std::int64_t random_below(std::int64_t bound) {
  if (bound <= 0) return 0;
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_int_distribution<std::int64_t>(0, bound - 1)(rng);
}

std::string ms_text(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

void Engine::Retirer::operator()(Engine* e) const noexcept { e->retire(); }

Engine::Engine(const PoolOptions& o, Dsn dsn, std::shared_ptr<Driver> driver)
    : id_(g_next_engine_id.fetch_add(1)),
      options_(o),
      dsn_(std::move(dsn)),
      driver_(std::move(driver)),
      clock_(o.clock),
      name_(o.name.empty() ? dsn_.redacted() : o.name),
      leak_threshold_ns_(std::chrono::nanoseconds(o.leak_threshold).count()),
      default_user_hash_(o.homogeneous ? 0 : credentials_hash(dsn_.user, dsn_.password)),
      has_callback_(static_cast<bool>(o.session_callback)),
      plain_(o.homogeneous && !o.session_callback),
      min_(o.min),
      max_(o.max),
      increment_(o.increment),
      get_mode_(o.get_mode),
      wait_timeout_ms_(o.wait_timeout.count()),
      ping_interval_ns_(
          o.ping_interval.count() < 0 ? -1 : std::chrono::nanoseconds(o.ping_interval).count()),
      idle_timeout_ns_(std::chrono::nanoseconds(o.idle_timeout).count()),
      max_lifetime_ns_(std::chrono::nanoseconds(o.max_lifetime).count()),
      backoff_(o.backoff_initial, o.backoff_max) {}

Engine::~Engine() = default;

Engine::time_point Engine::now() const noexcept { return clock_ ? clock_->now() : ticker_now(); }

void Engine::log(LogLevel level, const std::string& message) const noexcept {
  if (!options_.log) return;
  try {
    options_.log(level, message);
  } catch (...) {
    // A log hook must not break the pool.
  }
}

std::shared_ptr<Engine> Engine::create(const PoolOptions& options) {
  Dsn dsn = check_options(options);
  auto driver = resolve_driver(options, dsn);
  if (!options.clock) ticker_start();
  std::shared_ptr<Engine> e(new Engine(options, std::move(dsn), std::move(driver)), Retirer{});
  Request defaults{};
  defaults.user_hash = e->default_user_hash_;
  AcquireOptions none;
  defaults.options = &none;
  for (std::uint32_t i = 0; i < options.min; ++i) {
    Slot* slot;
    {
      std::lock_guard lk(e->mutex_);
      slot = e->reserve_slot(false);
    }
    try {
      e->connect_reserved(*slot, defaults, RealClock::time_point::max(), SlotState::idle);
    } catch (const Error& err) {
      if (options.fail_fast) throw;  // e's deleter retires the engine
      std::lock_guard lk(e->mutex_);
      e->schedule_retry_locked();
      break;
    }
  }
  e->log(LogLevel::info, "pool '" + e->name_ + "' created: " + e->counters_text());
  e->schedule_maintenance();
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

// ---- requests and fit --------------------------------------------------------------------------

[[gnu::always_inline]] inline Engine::Request Engine::make_request(const AcquireOptions& o,
                                                                   std::source_location where) {
  Request r;
  r.options = &o;
  r.where = where;
  if (o.user.empty() && o.password.empty() && o.cclass.empty() && o.tag.empty() &&
      options_.homogeneous && o.purity == Purity::self) {
    r.plain = !has_callback_;  // the common case: nothing to resolve
    return r;
  }
  if (options_.homogeneous) {
    if (!o.user.empty() || !o.password.empty())
      throw Error(ErrorCode::invalid_argument,
                  "acquire: user and password are for heterogeneous pools (homogeneous = false)");
  } else {
    r.user_hash = o.user.empty() ? default_user_hash_ : credentials_hash(o.user, o.password);
  }
  if (!o.cclass.empty()) {
    r.class_hash = hash_name(o.cclass);
    r.cls = &classes_.entry(o.cclass, r.class_hash);
    r.cls->requests.fetch_add(1, std::memory_order_relaxed);
  }
  if (!o.tag.empty()) r.tag_hash = hash_name(o.tag);
  r.label = label_of(r.user_hash, r.class_hash, r.tag_hash);
  return r;
}

[[gnu::always_inline]] inline Engine::Fit Engine::fit(const Slot& s,
                                                      const Request& r) const noexcept {
  if (s.user_hash.load(std::memory_order_relaxed) != r.user_hash) return Fit::none;
  const std::uint64_t tag = s.tag_hash.load(std::memory_order_relaxed);
  const bool class_ok = r.options->purity == Purity::new_ ||
                        s.class_hash.load(std::memory_order_relaxed) == r.class_hash;
  if (tag == r.tag_hash && class_ok) return Fit::exact;
  if (tag == 0) return Fit::untagged;
  return Fit::other_tag;
}

Slot* Engine::try_take_idle(const Request& r, Fit worst) noexcept {
  if (Slot* c = cached_slot(id_)) {
    SlotState expected = SlotState::idle;
    if (c->state.load() == SlotState::idle && fit(*c, r) == Fit::exact &&
        c->state.compare_exchange_strong(expected, SlotState::in_use))
      return c;
  }
  const std::uint32_t n = slots_.size();
  if (n == 0) return nullptr;
  Slot* candidate = nullptr;
  Fit best = Fit::none;
  const std::uint32_t start = scan_start() % n;
  for (std::uint32_t i = 0, k = start; i < n; ++i, k = (k + 1 == n ? 0 : k + 1)) {
    Slot& s = slots_.at(k);
    // seq_cst loads: a waiter's scan must see a releaser's publication (see engine.hpp).
    if (s.state.load() != SlotState::idle) continue;
    const Fit f = fit(s, r);
    if (f > worst) continue;
    if (f == Fit::exact) {
      SlotState expected = SlotState::idle;
      if (s.state.compare_exchange_strong(expected, SlotState::in_use)) {
        remember_slot(id_, &s);
        return &s;
      }
    } else if (f < best) {
      best = f;
      candidate = &s;
    }
  }
  if (candidate != nullptr) {
    SlotState expected = SlotState::idle;
    if (candidate->state.compare_exchange_strong(expected, SlotState::in_use)) {
      remember_slot(id_, candidate);
      return candidate;
    }
  }
  return nullptr;
}

// ---- acquire ---------------------------------------------------------------------------------

// A plain request (no user, class or tag; no session callback) on a slot whose label is 0 needs
// only the lifetime and ping checks.
[[gnu::always_inline]] inline bool Engine::fresh_enough(const Slot& slot,
                                                        time_point t) const noexcept {
  const std::int64_t t_ns = ns(t);
  const std::int64_t expires = slot.expires_at_ns.load(std::memory_order_relaxed);
  const std::int64_t ping = ping_interval_ns_.load(std::memory_order_relaxed);
  return slot.label.load(std::memory_order_relaxed) == 0 && (expires == 0 || t_ns < expires) &&
         (ping < 0 || t_ns - slot.idle_since_ns.load(std::memory_order_relaxed) < ping);
}

// The common case of prepare(): nothing to check or change. Inline, no calls.
[[gnu::always_inline]] inline bool Engine::ready_as_is(const Slot& slot, const Request& r,
                                                       time_point t) const noexcept {
  const std::int64_t t_ns = ns(t);
  const std::int64_t expires = slot.expires_at_ns.load(std::memory_order_relaxed);
  const std::int64_t ping = ping_interval_ns_.load(std::memory_order_relaxed);
  return r.user_hash == 0 && r.cls == nullptr && (expires == 0 || t_ns < expires) &&
         (ping < 0 || t_ns - slot.idle_since_ns.load(std::memory_order_relaxed) < ping) &&
         slot.class_hash.load(std::memory_order_relaxed) == r.class_hash &&
         (!slot.dirty || r.options->purity == Purity::self) &&
         (!options_.session_callback ||
          (!slot.fresh && slot.tag_hash.load(std::memory_order_relaxed) == r.tag_hash &&
           (r.tag_hash == 0 || slot.tag == r.options->tag)));
}

bool Engine::ready_without_io(const Slot& slot, const Request& r, time_point t) const noexcept {
  return ready_as_is(slot, r, t);
}

bool Engine::prepare(Slot& slot, const Request& r, time_point t, bool fresh) {
  if (!fresh && ready_as_is(slot, r, t)) return true;
  Connection& c = *slot.conn;
  const AcquireOptions& o = *r.options;
  if (!fresh) {
    if (r.user_hash != 0) {
      // The hash picked it; the credentials decide. A collision must never cross users.
      const std::string& user = o.user.empty() ? dsn_.user : o.user;
      const std::string& password = o.user.empty() ? dsn_.password : o.password;
      if (slot.user != user || slot.password != password) {
        slot.idle_since_ns.store(ns(t), std::memory_order_relaxed);
        if (move(slot, SlotState::in_use, SlotState::idle)) {
          hand_off_or_wake(slot);
        } else if (move(slot, SlotState::revoked, SlotState::closing)) {
          close_slot(slot, CloseReason::pool_closed);  // close(true) ran meanwhile
        }
        return false;
      }
    }
    const std::int64_t expires = slot.expires_at_ns.load(std::memory_order_relaxed);
    if (expires != 0 && ns(t) >= expires) {
      take_for_close(slot);
      close_slot(slot, CloseReason::lifetime);
      return false;
    }
    const std::int64_t ping = ping_interval_ns_.load(std::memory_order_relaxed);
    if (ping >= 0 && ns(t) - slot.idle_since_ns.load(std::memory_order_relaxed) >= ping) {
      try {
        c.ping(options_.ping_timeout);
      } catch (...) {
        ping_failures_.fetch_add(1, std::memory_order_relaxed);
        take_for_close(slot);
        close_slot(slot, CloseReason::validation_failed);
        return false;
      }
    }
  }
  // DRCP purity: a session used since its last reset goes to another class, or to a purity
  // `new` request, only after a reset.
  const bool same_class = slot.class_hash.load(std::memory_order_relaxed) == r.class_hash;
  if (slot.dirty && (o.purity == Purity::new_ || !same_class)) {
    try {
      c.reset();
    } catch (...) {
      take_for_close(slot);
      close_slot(slot, CloseReason::reset_failed);
      return false;
    }
    slot.dirty = false;
    slot.tag.clear();
    slot.tag_hash.store(0, std::memory_order_relaxed);
    update_label(slot);
  }
  // Connections opened ahead (min, increment) are as new as one this acquirer opened.
  fresh = fresh || slot.fresh;
  slot.fresh = false;
  if (r.cls != nullptr) {
    (same_class && !fresh ? r.cls->hits : r.cls->misses).fetch_add(1, std::memory_order_relaxed);
  }
  slot.class_hash.store(r.class_hash, std::memory_order_relaxed);
  update_label(slot);
  if (options_.session_callback && (fresh || slot.tag != o.tag)) {
    try {
      options_.session_callback(c, o.tag);
    } catch (...) {
      take_for_close(slot);
      close_slot(slot, CloseReason::session_callback);
      throw;
    }
    slot.tag = o.tag;
    slot.tag_hash.store(r.tag_hash, std::memory_order_relaxed);
    update_label(slot);
  }
  return true;
}

[[gnu::always_inline]] inline Lease Engine::hand_out(Slot& slot, std::source_location where,
                                                     time_point t) noexcept {
  // Every store here must drain before the release's compare-and-swap: store only what is used.
  // The clock ticks once a millisecond, so most cycles find the same value already there.
  if (!slot.dirty) slot.dirty = true;
  if (slot.acquired_at_ns.load(std::memory_order_relaxed) != ns(t))
    slot.acquired_at_ns.store(ns(t), std::memory_order_relaxed);
  if (leak_threshold_ns_ > 0) {
    slot.acquired_where.store(where, std::memory_order_relaxed);
    slot.leak_reported.store(false, std::memory_order_relaxed);
  }
  return Lease(this, &slot);
}

[[gnu::always_inline]] inline Lease Engine::acquire_begin_inline(
    const AcquireOptions& options, std::source_location where, Request& r, GetMode& mode,
    std::chrono::milliseconds& timeout) {
  try {
    if (Lease lease = try_idle(options, where, r); lease) return lease;
    if (r.options == nullptr) r = make_request(options, where);
  } catch (...) {
    // Failures of the checks on the way (a session callback that threw, an invalid request);
    // the slow path counts its own.
    acquire_errors_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  mode = options.get_mode.value_or(get_mode_.load(std::memory_order_relaxed));
  timeout = options.wait_timeout.value_or(
      std::chrono::milliseconds(wait_timeout_ms_.load(std::memory_order_relaxed)));
  if (timeout.count() < 0) {
    acquire_errors_.fetch_add(1, std::memory_order_relaxed);
    throw Error(ErrorCode::invalid_argument, "acquire: wait_timeout must not be negative");
  }
  return Lease();
}

Lease Engine::acquire_begin(const AcquireOptions& options, std::source_location where, Request& r,
                            GetMode& mode, std::chrono::milliseconds& timeout) {
  return acquire_begin_inline(options, where, r, mode, timeout);
}

Lease Engine::acquire(const AcquireOptions& options, std::source_location where) {
  Request r;
  GetMode mode = GetMode::wait;
  std::chrono::milliseconds timeout{0};
  if (Lease lease = acquire_begin_inline(options, where, r, mode, timeout); lease) return lease;
  return acquire_slow(r, mode, timeout);
}

[[gnu::always_inline]] inline Lease Engine::try_idle(const AcquireOptions& options,
                                                     std::source_location where, Request& r) {
  if (closed_.load(std::memory_order_relaxed)) return Lease();
  // The common case, without building a Request: no user, class or tag, purity self, no
  // session callback; the slot this thread used last is idle, carries none either, and needs
  // no ping and has not expired. One compare-and-swap, no lock, no allocation, one clock read.
  const bool plain = plain_ && options.tag.empty() && options.cclass.empty() &&
                     options.user.empty() && options.password.empty() &&
                     options.purity == Purity::self;
  if (plain) {
    Slot* s = cached_slot(id_);
    SlotState expected = SlotState::idle;
    if (s != nullptr && s->state.load() == SlotState::idle &&
        s->label.load(std::memory_order_relaxed) == 0 &&
        s->state.compare_exchange_strong(expected, SlotState::in_use)) {
      const time_point t = now();
      if (fresh_enough(*s, t)) {
        s->count_hit();
        return hand_out(*s, where, t);
      }
      r = make_request(options, where);
      if (prepare(*s, r, t, false)) {
        s->count_hit();
        return hand_out(*s, where, t);
      }
    }
  }
  if (r.options == nullptr) r = make_request(options, where);
  const Fit worst = r.tag_hash == 0 || options.match_any_tag ? Fit::other_tag : Fit::untagged;
  const time_point t = now();
  for (Slot* s = try_take_idle(r, worst); s != nullptr; s = try_take_idle(r, worst)) {
    if ((r.plain && fresh_enough(*s, t)) || prepare(*s, r, t, false)) {
      s->count_hit();
      return hand_out(*s, where, t);
    }
  }
  return Lease();
}

bool Engine::has_room() const noexcept {
  return opened_.load(std::memory_order_relaxed) + connecting_.load(std::memory_order_relaxed) <
         max_.load(std::memory_order_relaxed);
}

bool Engine::may_connect(time_point) const noexcept {
  return has_room() && connecting_.load(std::memory_order_relaxed) < options_.max_connecting &&
         backoff_.allows(RealClock::now());
}

Slot* Engine::reserve_slot(bool extra) {
  Slot* slot = nullptr;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n && slot == nullptr; ++i) {
    Slot& s = slots_.at(i);
    if (s.state.load() == SlotState::empty && move(s, SlotState::empty, SlotState::connecting))
      slot = &s;
  }
  if (slot == nullptr) {
    slot = slots_.append();
    if (slot == nullptr) return nullptr;
    move(*slot, SlotState::empty, SlotState::connecting);
  }
  slot->extra = extra;
  slot->for_acquirer = false;
  return slot;
}

// ---- the slow path: one state machine for the sync and the async front ends -------------------

void Engine::begin_run(AcquireRun& run, const Request& r, GetMode mode,
                       std::chrono::milliseconds wait_timeout) noexcept {
  run.r = r;
  run.mode = mode;
  run.start = RealClock::now();
  run.deadline = mode == GetMode::wait ? RealClock::time_point::max() : run.start + wait_timeout;
  run.w.user_hash = r.user_hash;
  run.normal_worst = r.tag_hash == 0 || r.options->match_any_tag ? Fit::other_tag : Fit::untagged;
}

Engine::Step Engine::next_step(AcquireRun& run) {
  Waiter& w = run.w;
  const Request& r = run.r;
  for (;;) {
    if (Slot* s = run.opened) {
      run.opened = nullptr;
      w.preparing = true;
      return Step{StepKind::check, s, true, false, {}};
    }
    if (Slot* s = w.handed) {
      w.handed = nullptr;
      w.preparing = true;
      return Step{StepKind::check, s, false, true, {}};
    }
    if (closed_.load()) {
      dequeue(w);
      acquire_errors_.fetch_add(1, std::memory_order_relaxed);
      throw Error(ErrorCode::pool_closed, "pool '" + name_ + "' is closed");
    }
    // Look at idle connections on the first pass, right after counting ourselves as a waiter,
    // and when woken for one; not on a spurious wake-up (that would overtake older waiters).
    if (run.look || w.signalled) {
      run.look = false;
      // At the cap a connection with another tag beats waiting: the callback can fix it.
      const Fit worst = has_room() ? run.normal_worst : Fit::other_tag;
      if (Slot* s = try_take_idle(r, worst)) {
        w.preparing = true;
        return Step{StepKind::check, s, false, true, {}};
      }
    }
    const bool forced = run.mode == GetMode::force_get && !has_room();
    if (w.queued && RealClock::now() >= run.deadline) {
      dequeue(w);
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      throw_timeout(
          std::chrono::duration_cast<std::chrono::milliseconds>(RealClock::now() - run.start),
          false);
    }
    if (may_connect(now()) || forced) {
      Slot* s = reserve_slot(forced);
      if (s == nullptr) {
        dequeue(w);
        exhausted_.fetch_add(1, std::memory_order_relaxed);
        throw Error(ErrorCode::pool_exhausted, "pool '" + name_ + "': cannot exceed " +
                                                   std::to_string(SlotTable::kCapacity) +
                                                   " connections");
      }
      s->for_acquirer = true;
      if (options_.homogeneous && !forced)
        open_in_background(increment_.load(std::memory_order_relaxed) - 1);
      w.preparing = true;
      return Step{StepKind::connect, s, true, false, {}};
    }
    if (!options_.homogeneous && !has_room()) {
      if (Slot* victim = evict_other_user_locked(r.user_hash))
        return Step{StepKind::evict, victim, false, false, {}};
    }
    if (run.mode == GetMode::no_wait) {
      dequeue(w);
      exhausted_.fetch_add(1, std::memory_order_relaxed);
      std::string msg = "pool '" + name_ + "': no connection free now (get mode no_wait; " +
                        counters_text() + ")";
      if (!last_connect_error_.empty() && backoff_.failures() > 0)
        msg += "; connects are failing, last error: " + last_connect_error_;
      throw Error(ErrorCode::pool_exhausted, msg);
    }
    if (!w.queued) {
      enqueue(w, run.start, run.deadline);
      waits_.fetch_add(1, std::memory_order_relaxed);
      if (r.cls != nullptr) r.cls->waits.fetch_add(1, std::memory_order_relaxed);
      run.look = true;  // a release may have come before we counted ourselves
      continue;
    }
    const auto real_now = RealClock::now();
    // Connects are failing and backing off: wake for the next attempt. If that attempt comes
    // after the deadline and no open connection could be released to us, give up now.
    auto wake_at = run.deadline;
    if (has_room() && !backoff_.allows(real_now)) {
      wake_at = std::min(run.deadline, backoff_.next_attempt());
      if (backoff_.next_attempt() >= run.deadline && opened_.load() == 0 &&
          connecting_.load() == 0) {
        dequeue(w);
        timeouts_.fetch_add(1, std::memory_order_relaxed);
        throw_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(real_now - run.start),
                      true);
      }
    }
    if (real_now >= run.deadline) {
      dequeue(w);
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      throw_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(real_now - run.start),
                    false);
    }
    w.signalled = false;
    return Step{StepKind::wait, nullptr, false, false, wake_at};
  }
}

bool Engine::end_check(AcquireRun& run, bool ok) noexcept {
  run.w.preparing = false;
  if (ok) dequeue(run.w);
  // While it was busy, wake-ups passed it by: it looks again.
  run.look = true;
  return ok;
}

void Engine::fail_step(AcquireRun& run) noexcept {
  run.w.preparing = false;
  dequeue(run.w);
  acquire_errors_.fetch_add(1, std::memory_order_relaxed);
}

void Engine::connect_failed(AcquireRun& run, const Error& e) {
  run.w.preparing = false;
  // A refusal that will not change (wrong password, no such database), or a caller that will
  // not wait, gets the database's error now. Otherwise wait for the next attempt.
  if (!e.retryable() || run.mode == GetMode::no_wait || run.mode == GetMode::force_get ||
      RealClock::now() >= run.deadline) {
    dequeue(run.w);
    acquire_errors_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  run.look = true;  // a release may have passed this waiter by while it was connecting
}

void Engine::cancel_reserved(Slot& slot) noexcept {
  std::lock_guard lk(mutex_);
  move(slot, SlotState::connecting, SlotState::empty);
  queue_.wake_one(0, true);  // the attempt's room is free again
  start_pending_locked();
}

Lease Engine::finish_run(AcquireRun& run, Slot& s, bool hit) noexcept {
  const auto waited = RealClock::now() - run.start;
  wait_time_.record_shared(waited);
  slow_acquires_.fetch_add(1, std::memory_order_relaxed);
  if (hit)
    s.count_hit();
  else
    misses_.fetch_add(1, std::memory_order_relaxed);
  return hand_out(s, run.r.where, now());
}

void Engine::abandon_run(AcquireRun& run, Slot* owned) noexcept {
  cancelled_.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock lk(mutex_);
  Slot* handed = run.w.handed;
  run.w.handed = nullptr;
  run.w.preparing = false;
  dequeue(run.w);
  lk.unlock();
  for (Slot* s : {handed, owned}) {
    if (s == nullptr) continue;
    // A connection handed to (or taken by) an acquirer that gave up goes back as it was.
    s->idle_since_ns.store(ns(now()), std::memory_order_relaxed);
    if (move(*s, SlotState::in_use, SlotState::idle)) {
      hand_off_or_wake(*s);
    } else if (move(*s, SlotState::revoked, SlotState::closing)) {
      close_slot(*s, CloseReason::pool_closed);
    }
  }
}

Lease Engine::acquire_slow(const Request& r, GetMode mode, std::chrono::milliseconds wait_timeout) {
  AcquireRun run;
  begin_run(run, r, mode, wait_timeout);
  std::unique_lock lk(mutex_);
  // Whatever leaves this function, the waiter on this stack frame leaves the queue.
  struct Leave {
    Engine* e;
    Waiter& w;
    std::unique_lock<std::mutex>& lk;
    ~Leave() {
      if (!w.queued) return;
      if (!lk.owns_lock()) lk.lock();
      e->dequeue(w);
    }
  } leave{this, run.w, lk};
  for (;;) {
    const Step step = next_step(run);
    switch (step.kind) {
      case StepKind::check: {
        lk.unlock();
        bool ok;
        try {
          ok = prepare(*step.slot, r, now(), step.fresh);
        } catch (...) {
          lk.lock();
          fail_step(run);
          throw;
        }
        lk.lock();
        if (end_check(run, ok)) {
          lk.unlock();
          return finish_run(run, *step.slot, step.hit);
        }
        break;
      }
      case StepKind::connect:
        lk.unlock();
        try {
          connect_reserved(*step.slot, r, run.deadline, SlotState::in_use);
        } catch (const Error& e) {
          lk.lock();
          connect_failed(run, e);
          break;
        }
        lk.lock();
        run.opened = step.slot;
        break;
      case StepKind::evict:
        lk.unlock();
        close_slot(*step.slot, CloseReason::shrink, /*refill=*/false);  // the room is ours
        lk.lock();
        break;
      case StepKind::wait:
        if (step.wake_at == RealClock::time_point::max()) {
          run.w.cv.wait(lk);
        } else {
          run.w.cv.wait_until(lk, step.wake_at);
        }
        break;
    }
  }
}

Dsn Engine::dsn_for(const Request& r) const {
  Dsn d = dsn_;
  if (r.user_hash != 0 && !r.options->user.empty()) {
    d.user = r.options->user;
    d.password = r.options->password;
  }
  return d;
}

std::chrono::milliseconds Engine::connect_timeout(RealClock::time_point deadline) const noexcept {
  auto timeout = options_.connect_timeout;
  if (deadline != RealClock::time_point::max()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - RealClock::now());
    left = std::max(left, std::chrono::milliseconds(1));
    if (timeout.count() == 0 || left < timeout) timeout = left;
  }
  return timeout;
}

void Engine::connect_reserved(Slot& slot, const Request& r, RealClock::time_point deadline,
                              SlotState target) {
  const auto timeout = connect_timeout(deadline);
  std::unique_ptr<Connection> conn;
  std::exception_ptr error;
  try {
    conn = custom_user(r) ? driver_->connect(dsn_for(r), timeout) : driver_->connect(dsn_, timeout);
  } catch (...) {
    error = std::current_exception();
  }
  adopt_connection(slot, r, std::move(conn), error, target);
}

void Engine::adopt_connection(Slot& slot, const Request& r, std::unique_ptr<Connection> conn,
                              std::exception_ptr error, SlotState target) {
  std::string failure;
  if (!error && !conn)
    error = std::make_exception_ptr(Error(ErrorCode::internal, "driver returned no connection"));
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      failure = e.what();
    } catch (const std::exception& e) {
      failure = e.what();
      error = std::make_exception_ptr(
          Error(ErrorCode::connect_failed, "pool '" + name_ + "': " + e.what()));
    } catch (...) {
      // A driver must throw reservoir::Error; whatever else it throws still frees the slot.
      failure = "the driver threw something that is not a std::exception";
      error = std::make_exception_ptr(
          Error(ErrorCode::connect_failed, "pool '" + name_ + "': " + failure));
    }
  }
  if (error) {
    {
      std::lock_guard lk(mutex_);
      move(slot, SlotState::connecting, SlotState::empty);
      create_failures_.fetch_add(1, std::memory_order_relaxed);
      record_connect_failure_locked(failure);
      queue_.wake_one(0, true);  // the attempt's room is free again
      if (pending_opens_ > 0) schedule_retry_locked();
    }
    if (!closed_.load()) log(LogLevel::warning, "pool '" + name_ + "': connect failed: " + failure);
    std::rethrow_exception(error);
  }
  const bool custom = custom_user(r);
  const time_point t = now();
  slot.conn = std::move(conn);
  slot.user = custom ? r.options->user : dsn_.user;
  slot.password = custom ? r.options->password : dsn_.password;
  slot.user_hash.store(r.user_hash, std::memory_order_relaxed);
  slot.class_hash.store(0, std::memory_order_relaxed);
  slot.tag.clear();
  slot.tag_hash.store(0, std::memory_order_relaxed);
  update_label(slot);
  slot.dirty = false;
  slot.fresh = true;
  const auto life = max_lifetime_ns_.load(std::memory_order_relaxed);
  const auto jitter = std::chrono::nanoseconds(options_.lifetime_jitter).count();
  slot.expires_at_ns.store(life > 0 ? ns(t) + life - random_below(jitter) : 0,
                           std::memory_order_relaxed);
  slot.idle_since_ns.store(ns(t), std::memory_order_relaxed);
  {
    std::unique_lock lk(mutex_);
    if (closed_.load()) {
      move(slot, SlotState::connecting, SlotState::closing);
      lk.unlock();
      close_slot(slot, CloseReason::pool_closed);
      throw Error(ErrorCode::pool_closed, "pool '" + name_ + "' was closed while connecting");
    }
    backoff_.succeeded();
    // Under the lock that checked closed_: close(true) cannot slip in between.
    move(slot, SlotState::connecting, target);
    if (target == SlotState::idle) {
      hand_off_or_wake_locked(slot);
    } else if (!queue_.empty()) {
      queue_.wake_one(0, true);  // a max_connecting place is free: a waiter may connect now
    }
    start_pending_locked();
  }
  if (target == SlotState::in_use) remember_slot(id_, &slot);
}

// ---- background opening -------------------------------------------------------------------

void Engine::open_in_background(std::uint32_t count) {
  if (closed_.load()) return;
  // Ask for up to `count` more (within max), then start as many as max_connecting and the
  // backoff allow; the rest start as attempts finish (start_pending_locked).
  const std::uint32_t in_flight = opened_.load() + connecting_.load() + pending_opens_;
  const std::uint32_t max = max_.load();
  const std::uint32_t room = in_flight < max ? max - in_flight : 0;
  pending_opens_ += std::min(count, room);
  start_pending_locked();
}

void Engine::start_pending_locked() noexcept {
  if (closed_.load()) {
    pending_opens_ = 0;
    return;
  }
  std::weak_ptr<Engine> weak = weak_from_this();
  while (pending_opens_ > 0) {
    if (!has_room()) {
      pending_opens_ = 0;  // max was reached (or lowered) meanwhile
      return;
    }
    if (!backoff_.allows(RealClock::now())) {
      schedule_retry_locked();
      return;
    }
    // At max_connecting: the attempt that finishes next starts the rest.
    if (connecting_.load() >= options_.max_connecting) return;
    Slot* s = reserve_slot(false);
    if (s == nullptr) {
      pending_opens_ = 0;
      return;
    }
    --pending_opens_;
    Background::instance().post([weak, s] {
      if (auto e = weak.lock()) e->finish_background_open(s);
    });
  }
}

void Engine::finish_background_open(Slot* slot) noexcept {
  Request defaults{};
  AcquireOptions none;
  defaults.options = &none;
  defaults.user_hash = default_user_hash_;
  try {
    connect_reserved(*slot, defaults, RealClock::time_point::max(), SlotState::idle);
  } catch (...) {
    // connect_reserved freed the slot (or closed it, the pool being closed), recorded and
    // logged the failure; try again after the backoff (the attempt stays asked for).
    std::lock_guard lk(mutex_);
    if (!closed_.load()) {
      ++pending_opens_;
      schedule_retry_locked();
    }
  }
}

void Engine::ensure_min_locked() noexcept {
  if (closed_.load()) return;
  const std::uint32_t have = opened_.load() + connecting_.load() + pending_opens_;
  const std::uint32_t min = min_.load();
  if (have < min) open_in_background(min - have);
  start_pending_locked();
}

void Engine::schedule_retry_locked() noexcept {
  if (retry_scheduled_ || closed_.load()) return;
  retry_scheduled_ = true;
  const auto at =
      std::max(backoff_.next_attempt(), RealClock::now() + std::chrono::milliseconds(1));
  std::weak_ptr<Engine> weak = weak_from_this();
  Background::instance().post_at(at, [weak] {
    if (auto e = weak.lock()) {
      std::lock_guard lk(e->mutex_);
      e->retry_scheduled_ = false;
      e->start_pending_locked();
      e->ensure_min_locked();
      e->queue_.wake_one(0, true);  // a waiter may attempt a connect of its own now
    }
  });
}

void Engine::record_connect_failure_locked(const std::string& message) noexcept {
  last_connect_error_ = message;
  backoff_.failed(RealClock::now());
}

// ---- release -------------------------------------------------------------------------------

[[gnu::always_inline]] inline bool Engine::must_discard(Slot& slot, time_point t,
                                                        CloseReason& why) noexcept {
  Connection* c = slot.conn.get();
  if (c->broken()) {
    why = CloseReason::broken;
    return true;
  }
  if (options_.reset_on_release) {
    try {
      c->reset();
    } catch (...) {
      why = c->broken() ? CloseReason::broken : CloseReason::reset_failed;
      return true;
    }
    slot.dirty = false;
    slot.tag.clear();
    slot.tag_hash.store(0, std::memory_order_relaxed);
    update_label(slot);
  } else if (c->in_transaction()) {
    try {
      c->rollback();
    } catch (...) {
      why = c->broken() ? CloseReason::broken : CloseReason::reset_failed;
      return true;
    }
    if (c->in_transaction() || c->broken()) {
      why = CloseReason::reset_failed;
      return true;
    }
  }
  // Over max: a force_get extra, or the pool was shrunk by reconfigure().
  if (opened_.load(std::memory_order_relaxed) > max_.load(std::memory_order_relaxed)) {
    why = CloseReason::shrink;
    return true;
  }
  const std::int64_t expires = slot.expires_at_ns.load(std::memory_order_relaxed);
  if (expires != 0 && ns(t) >= expires) {
    why = CloseReason::lifetime;
    return true;
  }
  return false;
}

void Engine::release(Slot* slot, bool drop, const std::string_view* new_tag) noexcept {
  // Marks this thread as inside a release of this engine until the last access below: once the
  // slot is idle it may change hands, and a new holder may let the pool be destroyed (retire()
  // waits for the mark to go).
  HazardRecord& hazard = my_hazard();
  hazard.engine.store(this, std::memory_order_relaxed);
  const time_point t = now();
  bool checked = false, discard = false;
  CloseReason why = CloseReason::dropped;
  for (;;) {
    const SlotState s = slot->state.load(std::memory_order_acquire);
    switch (s) {
      case SlotState::orphaned:
      case SlotState::orphaned_revoked:
        // The pool is gone; only this lease still touches the engine's memory.
        slot->conn.reset();
        slot->state.store(SlotState::empty, std::memory_order_release);
        hazard.engine.store(nullptr, std::memory_order_release);
        drop_retire_ref();
        return;
      case SlotState::revoked:
        if (!move(*slot, SlotState::revoked, SlotState::closing)) continue;
        close_slot(*slot, CloseReason::pool_closed);
        hazard.engine.store(nullptr, std::memory_order_release);
        return;
      case SlotState::in_use:
        if (!checked) {
          checked = true;
          // Holds shorter than a clock tick read as 0; stats() counts those as the releases
          // not recorded, which spares the common short hold a store.
          const std::int64_t held = ns(t) - slot->acquired_at_ns.load(std::memory_order_relaxed);
          if (held != 0) slot->hold_time.record_owned(std::chrono::nanoseconds(held));
          discard = drop || must_discard(*slot, t, why);
          if (!discard && new_tag != nullptr && !options_.reset_on_release &&
              slot->tag != *new_tag) {
            slot->tag.assign(*new_tag);  // reuses the string's capacity
            slot->tag_hash.store(hash_name(*new_tag), std::memory_order_relaxed);
            update_label(*slot);
          }
        }
        if (discard) {
          if (!move(*slot, SlotState::in_use, SlotState::closing)) continue;
          close_slot(*slot, why);
        } else {
          if (slot->idle_since_ns.load(std::memory_order_relaxed) != ns(t))
            slot->idle_since_ns.store(ns(t), std::memory_order_relaxed);
          if (!move(*slot, SlotState::in_use, SlotState::idle)) continue;
          remember_slot(id_, slot);
          if (waiters_.load() != 0) hand_off_or_wake(*slot);
        }
        hazard.engine.store(nullptr, std::memory_order_release);
        return;
      default:
        assert(false && "a lease held a slot in a state no lease holds");
        hazard.engine.store(nullptr, std::memory_order_release);
        return;
    }
  }
}

void Engine::hand_off_or_wake(Slot& slot) noexcept {
  Waiter* later = nullptr;
  {
    std::lock_guard lk(mutex_);
    hand_off_or_wake_locked(slot, &later);
  }
  if (later != nullptr) later->notify_pinned();
}

void Engine::hand_off_or_wake_locked(Slot& slot, Waiter** later) noexcept {
  if (queue_.empty()) return;
  const auto t = RealClock::now();
  // The time between releases while acquirers wait, averaged over the last few (1/8 weight);
  // a gap of over a second (the pool went quiet) is left out.
  const std::int64_t gap = (t - last_contended_release_).count();
  last_contended_release_ = t;
  if (gap > 0 && gap < 1'000'000'000) {
    release_gap_ns_ = release_gap_ns_ == 0 ? gap : release_gap_ns_ + (gap - release_gap_ns_) / 8;
  }
  const std::uint64_t user = slot.user_hash.load(std::memory_order_relaxed);
  Waiter* front = queue_.first_ready_for(user);
  if (front != nullptr && t >= front->handoff_at) {
    SlotState expected = SlotState::idle;
    if (slot.state.compare_exchange_strong(expected, SlotState::in_use)) {
      front->handed = &slot;
      front->signalled = true;
      front->wake(later);
      return;
    }
  }
  // Wake a waiter of this connection's user; in a heterogeneous pool at the cap, any waiter
  // (it may evict this connection to make room for its own user).
  if (front != nullptr) {
    queue_.wake_one(user, false, later);
  } else {
    queue_.wake_one(0, true, later);
  }
}

void Engine::close_slot(Slot& slot, CloseReason why, bool refill) noexcept {
  slot.conn.reset();
  slot.extra = false;
  slot.tag.clear();
  slot.user.clear();
  slot.password.clear();
  slot.dirty = false;
  slot.user_hash.store(0, std::memory_order_relaxed);
  slot.class_hash.store(0, std::memory_order_relaxed);
  slot.tag_hash.store(0, std::memory_order_relaxed);
  update_label(slot);
  slot.expires_at_ns.store(0, std::memory_order_relaxed);
  move(slot, SlotState::closing, SlotState::empty);
  closed_by_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
  if (why != CloseReason::pool_closed) {
    log(LogLevel::debug, "pool '" + name_ + "': closed a connection (" + to_string(why) + ")");
    on_capacity_freed(refill);
  }
}

void Engine::close_all(const std::vector<PendingClose>& closes) noexcept {
  for (const PendingClose& c : closes) close_slot(*c.slot, c.reason);
}

void Engine::on_capacity_freed(bool refill) noexcept {
  std::lock_guard lk(mutex_);
  if (closed_.load()) return;
  queue_.wake_one(0, true);
  if (refill) ensure_min_locked();
}

Slot* Engine::evict_other_user_locked(std::uint64_t user_hash) noexcept {
  Slot* victim = nullptr;
  std::int64_t oldest = 0;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) {
    Slot& s = slots_.at(i);
    if (s.state.load() != SlotState::idle) continue;
    if (s.user_hash.load(std::memory_order_relaxed) == user_hash) continue;
    const std::int64_t since = s.idle_since_ns.load(std::memory_order_relaxed);
    if (victim == nullptr || since < oldest) {
      victim = &s;
      oldest = since;
    }
  }
  if (victim != nullptr && move(*victim, SlotState::idle, SlotState::closing)) return victim;
  return nullptr;
}

// ---- the wait queue --------------------------------------------------------------------------

std::chrono::nanoseconds Engine::starvation_bound(std::uint32_t ahead,
                                                 std::chrono::nanoseconds release_gap) noexcept {
  const std::chrono::nanoseconds fair = release_gap * (static_cast<std::int64_t>(ahead) + 1);
  return std::clamp<std::chrono::nanoseconds>(fair * kFairShareFactor, kStarvationBound,
                                              kStarvationBoundMax);
}

Engine::RealClock::time_point Engine::handoff_time(RealClock::time_point since,
                                                   RealClock::time_point deadline,
                                                   std::uint32_t ahead,
                                                   std::chrono::nanoseconds release_gap) noexcept {
  const RealClock::time_point at = since + starvation_bound(ahead, release_gap);
  // A waiter with a short wait_timeout is handed connections from half of it on at the latest,
  // so that newcomers cannot take every release until it times out.
  if (deadline == RealClock::time_point::max()) return at;
  return std::min(at, since + (deadline - since) / 2);
}

void Engine::enqueue(Waiter& w, RealClock::time_point since,
                     RealClock::time_point deadline) noexcept {
  w.handoff_at =
      handoff_time(since, deadline, queue_.size(), std::chrono::nanoseconds(release_gap_ns_));
  queue_.push(w);
  const std::uint32_t n = waiters_.fetch_add(1) + 1;  // seq_cst: see engine.hpp
  max_waiting_ = std::max(max_waiting_, n);
}

void Engine::dequeue(Waiter& w) noexcept {
  if (!w.queued) return;
  const bool woken = w.signalled;
  queue_.remove(w);
  waiters_.fetch_sub(1);
  // It held the one wake-up in flight (WaitQueue::wake_one): pass it on while the next waiter
  // could get a connection, idle or newly opened.
  if (woken && !queue_.empty() && (has_room() || any_idle())) queue_.wake_one(0, true);
}

bool Engine::any_idle() const noexcept {
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i)
    if (slots_.at(i).state.load() == SlotState::idle) return true;
  return false;
}

// ---- maintenance ---------------------------------------------------------------------------

void Engine::schedule_maintenance() noexcept {
  if (!options_.background_maintenance) return;
  {
    // Under the lock: close(false) sets closed_ for a moment even when it then fails.
    std::lock_guard lk(mutex_);
    if (closed_.load()) return;
  }
  std::weak_ptr<Engine> weak = weak_from_this();
  Background::instance().post_at(RealClock::now() + options_.maintenance_interval, [weak] {
    if (auto e = weak.lock()) {
      e->run_maintenance();
      e->schedule_maintenance();
    }
  });
}

void Engine::run_maintenance() {
  std::vector<PendingClose> closes;
  std::vector<std::string> reports;
  {
    std::lock_guard lk(mutex_);
    if (closed_.load()) return;
    const time_point t = now();
    const std::int64_t t_ns = ns(t);
    std::uint32_t opened = opened_.load();
    const std::uint32_t min = min_.load();
    const std::int64_t idle_timeout = idle_timeout_ns_.load();
    const std::uint32_t n = slots_.size();
    for (std::uint32_t i = 0; i < n; ++i) {
      Slot& s = slots_.at(i);
      const SlotState st = s.state.load();
      if (st == SlotState::in_use && leak_threshold_ns_ > 0) {
        const std::int64_t held = t_ns - s.acquired_at_ns.load(std::memory_order_relaxed);
        if (held >= leak_threshold_ns_ && !s.leak_reported.exchange(true)) {
          const std::source_location where = s.acquired_where.load(std::memory_order_relaxed);
          leaks_.fetch_add(1, std::memory_order_relaxed);
          reports.push_back("pool '" + name_ + "': a connection acquired at " + where.file_name() +
                            ":" + std::to_string(where.line()) + " has been held for " +
                            ms_text(std::chrono::nanoseconds(held)) + " (leak_threshold " +
                            ms_text(options_.leak_threshold) + ")");
        }
        continue;
      }
      if (st != SlotState::idle) continue;
      auto due = [&](CloseReason& why) {
        const std::int64_t expires = s.expires_at_ns.load(std::memory_order_relaxed);
        if (expires != 0 && t_ns >= expires) {
          why = CloseReason::lifetime;
          return true;
        }
        if (idle_timeout > 0 && opened > min &&
            t_ns - s.idle_since_ns.load(std::memory_order_relaxed) >= idle_timeout) {
          why = CloseReason::idle_timeout;
          return true;
        }
        return false;
      };
      CloseReason why;
      if (!due(why) || !move(s, SlotState::idle, SlotState::closing)) continue;
      // Owned now: look again, the slot may have been used in between.
      if (!due(why)) {
        move(s, SlotState::closing, SlotState::idle);
        hand_off_or_wake_locked(s);
        continue;
      }
      closes.push_back({&s, why});
      --opened;
    }
    ensure_min_locked();
  }
  close_all(closes);
  for (const std::string& r : reports) log(LogLevel::warning, r);
}

// ---- close and retire --------------------------------------------------------------------------

void Engine::close(bool force) {
  std::vector<PendingClose> claimed;
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
          claimed.push_back({&s, CloseReason::pool_closed});
        } else if (st == SlotState::in_use && force) {
          if (!move(s, SlotState::in_use, SlotState::revoked)) continue;
        } else if (is_leased(st) || (st == SlotState::connecting && s.for_acquirer)) {
          // Background attempts do not hold close() up: they close what they open.
          ++busy;
        }
        break;
      }
    }
    if (!force && busy != 0) {
      for (const PendingClose& c : claimed) move(*c.slot, SlotState::closing, SlotState::idle);
      closed_.store(false);
      throw Error(ErrorCode::pool_busy,
                  "pool '" + name_ + "': " + std::to_string(busy) +
                      " connection(s) still leased or opening; release them first or "
                      "close(force=true)");
    }
    queue_.wake_all();
  }
  close_all(claimed);
  log(LogLevel::info, "pool '" + name_ + "' closed" + (force ? " (force)" : ""));
}

void Engine::retire() noexcept {
  {
    std::lock_guard lk(mutex_);
    closed_.store(true);
    queue_.wake_all();
  }
  retire_refs_.store(1);
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) {
    Slot& s = slots_.at(i);
    for (;;) {
      const SlotState st = s.state.load();
      if (st == SlotState::idle) {
        if (!move(s, SlotState::idle, SlotState::closing)) continue;
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
      }
      break;
    }
  }
  // Releases that made their slot idle may still be reading this engine (see release()).
  wait_until_no_hazard(this);
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

const std::string& Engine::tag(Slot* slot) {
  (void)connection(slot);  // the same validity rules
  return slot->tag;
}

// ---- observation and settings ---------------------------------------------------------------

std::uint32_t Engine::count_slots(bool (*pred)(SlotState)) const noexcept {
  std::uint32_t count = 0;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) count += pred(slots_.at(i).state.load()) ? 1 : 0;
  return count;
}

std::uint32_t Engine::busy() const noexcept { return count_slots(is_leased); }

std::uint32_t Engine::idle() const noexcept {
  return count_slots([](SlotState s) { return s == SlotState::idle; });
}

std::string Engine::counters_text() const {
  return "opened=" + std::to_string(opened()) + " busy=" + std::to_string(busy()) +
         " idle=" + std::to_string(idle()) + " connecting=" + std::to_string(connecting_.load()) +
         " waiting=" + std::to_string(waiting()) + " max=" + std::to_string(max_.load());
}

void Engine::throw_timeout(std::chrono::milliseconds waited, bool fail_fast) {
  std::string msg = "pool '" + name_ + "': ";
  if (fail_fast) {
    msg +=
        "no connection can be had before the deadline (the database is unreachable and the "
        "next connect attempt is due after it; " +
        counters_text() + ")";
  } else {
    msg += "no connection became free within " + std::to_string(waited.count()) + " ms (" +
           counters_text() + ")";
  }
  if (!last_connect_error_.empty() && backoff_.failures() > 0)
    msg += "; connects are failing, last error: " + last_connect_error_;
  throw Error(ErrorCode::pool_timeout, msg);
}

PoolStats Engine::stats() const {
  PoolStats st;
  std::uint64_t hits = 0;
  HistogramSnapshot hold, wait;
  const std::uint32_t n = slots_.size();
  for (std::uint32_t i = 0; i < n; ++i) {
    const Slot& s = slots_.at(i);
    hits += s.hits.load(std::memory_order_relaxed);
    s.hold_time.add_to(hold);
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
  st.cancelled = cancelled_.load();
  st.creates = creates_.load();
  st.create_failures = create_failures_.load();
  st.ping_failures = ping_failures_.load();
  st.leaks = leaks_.load();
  for (std::size_t i = 0; i < kCloseReasons; ++i) {
    st.closed[i] = closed_by_[i].load();
    if (i != static_cast<std::size_t>(CloseReason::pool_closed)) st.drops += st.closed[i];
  }
  st.acquires =
      st.hits + st.misses + st.timeouts + st.exhausted + st.cancelled + acquire_errors_.load();
  wait_time_.add_to(wait);
  const std::uint64_t served = st.hits + st.misses, slow = slow_acquires_.load();
  wait.zeros = served > slow ? served - slow : 0;
  st.wait_time = wait.summary();
  // Every lease that ended was either recorded or held for less than a tick (see release()).
  const std::uint64_t ended = served > st.busy ? served - st.busy : 0;
  const std::uint64_t recorded = hold.count();
  hold.zeros = ended > recorded ? ended - recorded : 0;
  st.hold_time = hold.summary();
  classes_.snapshot(st.classes);
  std::lock_guard lk(mutex_);
  st.max_waiting = max_waiting_;
  st.last_connect_error = last_connect_error_;
  return st;
}

PoolOptions Engine::options() const {
  PoolOptions o = options_;
  o.min = min_.load();
  o.max = max_.load();
  o.increment = increment_.load();
  o.get_mode = get_mode_.load();
  o.wait_timeout = std::chrono::milliseconds(wait_timeout_ms_.load());
  const std::int64_t ping = ping_interval_ns_.load();
  o.ping_interval =
      ping < 0
          ? std::chrono::milliseconds(-1)
          : std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(ping));
  o.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(idle_timeout_ns_.load()));
  o.max_lifetime = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(max_lifetime_ns_.load()));
  o.driver = driver_;
  return o;
}

void Engine::reconfigure(const PoolSettings& s) {
  std::vector<PendingClose> claimed;
  {
    std::lock_guard lk(mutex_);
    check_settings(s, min_.load(), max_.load());
    if (s.min) min_.store(*s.min);
    if (s.max) max_.store(*s.max);
    if (s.increment) increment_.store(*s.increment);
    if (s.get_mode) get_mode_.store(*s.get_mode);
    if (s.wait_timeout) wait_timeout_ms_.store(s.wait_timeout->count());
    if (s.ping_interval)
      ping_interval_ns_.store(
          s.ping_interval->count() < 0 ? -1 : std::chrono::nanoseconds(*s.ping_interval).count());
    if (s.idle_timeout) idle_timeout_ns_.store(std::chrono::nanoseconds(*s.idle_timeout).count());
    if (s.max_lifetime) max_lifetime_ns_.store(std::chrono::nanoseconds(*s.max_lifetime).count());
    // Shrink: close idle connections above the new max now; busy ones go when released.
    const std::uint32_t max = max_.load();
    std::uint32_t opened = opened_.load();
    const std::uint32_t n = slots_.size();
    for (std::uint32_t i = 0; i < n && opened > max; ++i) {
      Slot& slot = slots_.at(i);
      if (move(slot, SlotState::idle, SlotState::closing)) {
        claimed.push_back({&slot, CloseReason::shrink});
        --opened;
      }
    }
    ensure_min_locked();
    queue_.wake_all();  // a larger max or another get mode may let waiters proceed
  }
  close_all(claimed);
}

}  // namespace reservoir::core
